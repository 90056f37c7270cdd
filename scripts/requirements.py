"""Print the pinned requirements from pyproject.toml (with the extras named on the command line)."""
import sys
import tomllib
from pathlib import Path

project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
requirements = list(project["dependencies"])
for extra in sys.argv[1:]:
    requirements += project.get("optional-dependencies", {}).get(extra, [])
print("\n".join(requirements))

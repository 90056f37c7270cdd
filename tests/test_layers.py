"""The one-way layers (docs/architecture.md), as import-linter checks them from the
contracts in pyproject.toml: the tree keeps them, every module is in a layer, and a
planted upward import or cycle, even one inside a function, breaks the contracts."""
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
PACKAGES = CONFIG["root_packages"]


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tree, capture_output=True, text=True,
                          env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}, timeout=120)


def layered_modules(contract_id: str) -> set[str]:
    contract = next(c for c in CONFIG["contracts"] if c["id"] == contract_id)
    return {module.strip() for layer in contract["layers"] for module in layer.replace("|", ":").split(":")}


def app_modules() -> set[str]:
    """Every module and package of the platform's packages, tests and migrations aside."""
    found = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if "migrations" in parts:
                continue
            found.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


def test_the_tree_keeps_its_layers():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


@pytest.mark.parametrize("contract_id", ["platform", "gateway"])
def test_every_module_belongs_to_a_layer(contract_id):
    """A module in no layer would escape the layers contract: the gateway's modules must be
    in its own contract, every other module in the platform's."""
    layered = layered_modules(contract_id)
    modules = {m for m in app_modules() - set(PACKAGES) if m.startswith("gateway.") == (contract_id == "gateway")}
    # A module is in a layer when it or a package above it is listed.
    unplaced = sorted(m for m in modules if not any(m == layer or m.startswith(layer + ".") for layer in layered))
    assert unplaced == [], f"modules in no layer of the {contract_id!r} contract (pyproject.toml): {unplaced}"


@pytest.fixture
def tree_copy(tmp_path):
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


@pytest.mark.parametrize(("module", "planted", "broken"), [
    # An upward import hidden inside a function: the tenants core reaching the portal.
    ("tenants/models.py", "def _planted():\n    from portal.views import dashboard\n", "tenants.models -> portal"),
    # The data plane reaching Django-aware code.
    ("gateway/signature.py", "def _planted():\n    import tenants.directory\n", "gateway.signature -> tenants"),
    # A cycle between two siblings of one layer: the contract module importing the gateway.
    ("gateway/contract/keys.py", "def _planted():\n    from gateway import admission\n",
     ".contract -> .admission"),
])
def test_a_planted_upward_import_breaks_the_contracts(tree_copy, module, planted, broken):
    path = tree_copy / module
    path.write_text(path.read_text() + "\n\n" + planted)
    result = lint_imports(tree_copy)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout or "broken" in result.stdout
    assert broken in result.stdout, result.stdout[-4000:]

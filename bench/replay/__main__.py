"""`python -m bench.replay`: the live trace replay (bench/replay/__init__.py)."""
import sys

from bench.replay.run import main

if __name__ == "__main__":
    sys.exit(main())

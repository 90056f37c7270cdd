"""`python -m bench.isolation`: the noisy-neighbour benchmark (bench/isolation/__init__.py)."""
import sys

from bench.isolation.run import main

if __name__ == "__main__":
    sys.exit(main())

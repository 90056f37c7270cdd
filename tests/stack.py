"""The platform's real processes for integration tests: bench/stack.py's, under the names
the tests import. The fixtures that run them are in tests/conftest.py (`platform_stack`
once per session, `stack` per test, which waits for the stack to be quiet afterwards: a
stack still busy after the wait's timeout errors that test, with what was busy)."""
from bench.stack import (
    HOLD_TIMEOUT_S,
    PYTHON,
    ROOT,
    PlatformStack,
    database_url,
    free_port,
    wait,
    wait_http,
)

__all__ = ["HOLD_TIMEOUT_S", "PYTHON", "ROOT", "PlatformStack", "database_url", "free_port", "wait", "wait_http"]

"""Settings for the test suite: the same platform, pointed at its own Redis database and
scratch directories so that tests never touch a running `make run`."""
import os
from pathlib import Path

from portal.settings import *  # noqa: F403


def _test_slot() -> int:
    """Test runs on one machine at once each take a slot of their own: its test database,
    Redis database and scratch directory. The slot is held by a lock for the life of the
    process; processes it starts inherit it (TEST_SLOT). Slot 0 is the defaults; slot N
    uses Redis database 15 - N (the benchmarks use 6 to 8, `make run` 0)."""
    if "TEST_SLOT" in os.environ:
        return int(os.environ["TEST_SLOT"])
    import fcntl

    for slot in range(7):
        handle = open(f"/tmp/inference-platform-test-slot-{slot}.lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        globals()["_slot_lock"] = handle  # held until this process ends
        os.environ["TEST_SLOT"] = str(slot)
        return slot
    raise RuntimeError("Seven test runs already hold this machine's test slots.")


_SLOT = _test_slot()
_suffix = f"-{_SLOT}" if _SLOT else ""
DATABASES["default"]["TEST"] = {"NAME": os.environ.get(  # noqa: F405
    "TEST_DB_NAME", f"test_{DATABASES['default']['NAME']}" + (f"_{_SLOT}" if _SLOT else ""))}  # noqa: F405
REDIS_URL = os.environ.get("TEST_REDIS_URL", f"redis://127.0.0.1:6379/{15 - _SLOT}")
CELERY_BROKER_URL = REDIS_URL
CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}}
_scratch = Path(os.environ.get("TEST_VAR_DIR", f"/tmp/inference-platform-test{_suffix}"))
MODEL_STORAGE_DIR = _scratch / "models"
TRITON_VAR_DIR = _scratch / "triton"
STATIC_ROOT = _scratch / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
WHITENOISE_USE_FINDERS = True

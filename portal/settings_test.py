"""Settings for the test suite: the same platform, pointed at its own Redis database and
scratch directories so that tests never touch a running `make run`."""
import os
from pathlib import Path

from portal.settings import *  # noqa: F403

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
CELERY_BROKER_URL = REDIS_URL
CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}}
_scratch = Path(os.environ.get("TEST_VAR_DIR", "/tmp/inference-platform-test"))
MODEL_STORAGE_DIR = _scratch / "models"
TRITON_VAR_DIR = _scratch / "triton"
STATIC_ROOT = _scratch / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
WHITENOISE_USE_FINDERS = True

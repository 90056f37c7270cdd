"""The gateway's settings, read once from the environment.

The gateway process never loads Django settings: its request path runs without Django."""
import os

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
# How long a key or route lookup (found or not) is trusted: a revoked key or a changed
# route takes effect within this time.
CACHE_TTL_S = float(os.environ.get("GATEWAY_CACHE_TTL_S", "1.0"))
UPSTREAM_TIMEOUT_S = float(os.environ.get("GATEWAY_UPSTREAM_TIMEOUT_S", "60"))
UPSTREAM_CONNECT_TIMEOUT_S = float(os.environ.get("GATEWAY_UPSTREAM_CONNECT_TIMEOUT_S", "2"))
MAX_BODY_BYTES = int(os.environ.get("GATEWAY_MAX_BODY_BYTES", str(64 * 1024 * 1024)))
RETRY_AFTER_S = os.environ.get("GATEWAY_RETRY_AFTER_S", "2")

"""The gateway's settings, read once from the environment.

The gateway process never loads Django settings: its request path runs without Django."""
import os

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
REDIS_CONNECT_TIMEOUT_S = float(os.environ.get("GATEWAY_REDIS_CONNECT_TIMEOUT_S", "0.5"))
# Admission and completion give up (503, Retry-After) when Redis does not answer in time.
REDIS_COMMAND_TIMEOUT_S = float(os.environ.get("GATEWAY_REDIS_COMMAND_TIMEOUT_S", "2"))
# Concurrency leases of a gateway that died expire after this; live gateways renew theirs.
LEASE_TTL_S = float(os.environ.get("GATEWAY_LEASE_TTL_S", "15"))
UPSTREAM_TIMEOUT_S = float(os.environ.get("GATEWAY_UPSTREAM_TIMEOUT_S", "60"))
UPSTREAM_CONNECT_TIMEOUT_S = float(os.environ.get("GATEWAY_UPSTREAM_CONNECT_TIMEOUT_S", "2"))
# The platform-wide cap on a request body; plans, tenants, deployments and keys can set lower ones.
MAX_BODY_BYTES = int(os.environ.get("GATEWAY_MAX_BODY_BYTES", str(64 * 1024 * 1024)))
RETRY_AFTER_S = os.environ.get("GATEWAY_RETRY_AFTER_S", "2")
# A call to a deployment that is scaled to zero is held this long while it loads, then 503.
COLD_START_TIMEOUT_S = float(os.environ.get("GATEWAY_COLD_START_TIMEOUT_S", "30"))
# A keep-alive connection with nothing in progress is closed after this many seconds.
IDLE_TIMEOUT_S = float(os.environ.get("GATEWAY_IDLE_TIMEOUT_S", "30"))
# KServe v2 gRPC, served by every worker process on the same port (SO_REUSEPORT); 0: off.
GRPC_HOST = os.environ.get("GATEWAY_GRPC_HOST", "127.0.0.1")
GRPC_PORT = int(os.environ.get("GATEWAY_GRPC_PORT", "0"))

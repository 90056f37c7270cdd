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
# Limits on a request's head, as mature servers set them; past one the request is refused
# (414, 431, or 408 for a head still arriving) and the connection closes.
# Apache LimitRequestLine; nginx's 8k buffer less CRLF. Method, target and version, without CRLF.
MAX_REQUEST_LINE_BYTES = int(os.environ.get("GATEWAY_MAX_REQUEST_LINE_BYTES", "8190"))
# Node.js --max-http-header-size: all header fields together, or any one of them.
MAX_HEADER_BYTES = int(os.environ.get("GATEWAY_MAX_HEADER_BYTES", str(16 * 1024)))
MAX_HEADERS = int(os.environ.get("GATEWAY_MAX_HEADERS", "100"))  # Apache LimitRequestFields
# From a request's first byte to the end of its headers (Apache mod_reqtimeout header=20);
# a keep-alive connection waiting for its next request is governed by GATEWAY_IDLE_TIMEOUT_S.
HEADER_TIMEOUT_S = float(os.environ.get("GATEWAY_HEADER_TIMEOUT_S", "20"))

"""The gateway's errors: the platform's one error type (gateway/contract/errors.py), answered
over HTTP in KServe's shape, `{"error": "<message>", "code": "<code>"}` (every Triton/KServe
client parses it; tritonclient fails to format anything but a string in `error`), and over
gRPC as a status with the same message.

KINDS is the one mapping from an error's code to what each protocol answers: the HTTP
status (the one metering records for either protocol), the gRPC status, and the
Retry-After a caller is told to wait, if any. Retry hints beyond it (a refusal's
x-ratelimit-* fields, x-should-retry) travel with the error as HTTP headers; gRPC sends
them as trailing metadata."""
import json

from gateway import config
from gateway.contract.errors import PlatformError


class Kind:
    """How callers are answered for one error code. `grpc` names a grpc.StatusCode."""

    __slots__ = ("status", "grpc", "retry_after")

    def __init__(self, status: int, grpc: str, retry_after: str | None = None):
        self.status, self.grpc, self.retry_after = status, grpc, retry_after


RETRY = config.RETRY_AFTER_S
KINDS = {
    # The request itself (the HTTP server's limits on a request's head are HTTP-only).
    "invalid_request": Kind(400, "INVALID_ARGUMENT"),
    "invalid_input": Kind(400, "INVALID_ARGUMENT"),
    "method_not_allowed": Kind(405, "UNIMPLEMENTED"),
    "header_timeout": Kind(408, "DEADLINE_EXCEEDED"),
    "request_line_too_long": Kind(414, "INVALID_ARGUMENT"),
    "header_fields_too_large": Kind(431, "RESOURCE_EXHAUSTED"),
    "too_many_headers": Kind(431, "RESOURCE_EXHAUSTED"),
    "client_closed": Kind(499, "CANCELLED"),
    # Admission (admit.lua's refusals and Redis being out of reach).
    "unauthenticated": Kind(401, "UNAUTHENTICATED"),
    "permission_denied": Kind(403, "PERMISSION_DENIED"),
    "not_found": Kind(404, "NOT_FOUND"),
    "payload_too_large": Kind(413, "RESOURCE_EXHAUSTED"),  # what gRPC itself answers over its size limit
    # Past due beyond the grace: only paying the invoice helps, so not a retryable status.
    "payment_required": Kind(402, "FAILED_PRECONDITION"),
    "insufficient_quota": Kind(429, "RESOURCE_EXHAUSTED"),
    "rate_limited": Kind(429, "RESOURCE_EXHAUSTED"),
    "concurrency_limit": Kind(429, "RESOURCE_EXHAUSTED"),
    "unavailable": Kind(503, "UNAVAILABLE", "1"),
    # The deployment and its servers.
    "not_ready": Kind(503, "UNAVAILABLE", RETRY),
    "cold_start_timeout": Kind(503, "UNAVAILABLE", RETRY),
    # Retrying does not load a deployment that failed to load: not UNAVAILABLE.
    "deployment_failed": Kind(503, "FAILED_PRECONDITION"),
    "server_unavailable": Kind(503, "UNAVAILABLE", RETRY),
    "runner_restarting": Kind(503, "UNAVAILABLE", RETRY),
    "no_grpc_endpoint": Kind(502, "FAILED_PRECONDITION"),
    "upstream_error": Kind(502, "UNAVAILABLE"),
    "internal_error": Kind(500, "INTERNAL"),
}


class GatewayError(PlatformError):
    """A request the gateway answers with an error. The status, the gRPC status and the
    Retry-After come from the code's Kind unless given (Triton's own 4xx status or gRPC
    status, say); `headers` are (name, value) byte pairs."""

    def __init__(self, message: str, *, code: str, status: int | None = None, grpc: str | None = None,
                 retry_after: str | None = None, headers: list | tuple = ()):
        kind = KINDS[code]
        super().__init__(message, code=code, status=status or kind.status)
        self.grpc = grpc or kind.grpc
        self.retry_after = retry_after or kind.retry_after
        self.headers = headers


class Unreached(Exception):
    """A replica could not be connected to: nothing was sent, so another one may be tried
    (gateway.core.Core.send)."""


def kserve_body(exc: PlatformError) -> bytes:
    """The error as KServe v2 answers it over HTTP."""
    return json.dumps({"error": exc.message, "code": exc.code}).encode()


def refusal(status: int, code: str, message: str, limit: str = "", wait_ms: str = "") -> GatewayError:
    """A request admit.lua did not admit (its reply), answered with when, or whether, to retry."""
    headers = []
    retry_after = None
    if limit in ("budget", "payment"):
        headers.append((b"x-should-retry", b"false"))
    elif limit in ("rate", "concurrency"):
        wait_s = int(wait_ms or "1000") / 1000
        retry_after = str(max(1, int(-(-wait_s // 1))))
        headers += [(b"x-ratelimit-remaining-requests", b"0"),
                    (b"x-ratelimit-reset-requests", f"{wait_s:.3f}s".encode())]
    return GatewayError(message, code=code, status=status, retry_after=retry_after, headers=headers)


def unavailable(reason: str) -> GatewayError:
    """Redis cannot decide: the request is refused (fail closed), the caller retries."""
    return GatewayError(f"The platform cannot admit requests right now ({reason}); retry shortly.", code="unavailable")


def unrecorded() -> GatewayError:
    """The usage of an answered request cannot be written: the answer is withheld rather
    than given unmetered."""
    return unavailable("Redis is unreachable")


def not_ready(message: str) -> GatewayError:
    return GatewayError(message, code="not_ready")


def internal_error(message: str = "The gateway failed on this request; retry it.") -> GatewayError:
    return GatewayError(message, code="internal_error")

"""The gateway's KServe v2 (Triton) HTTP protocol: `process` answers one request.

It parses the path and the headers, forwards the request to the deployment's Triton over
a pooled HTTP/1.1 client (gateway/upstream.py) under Triton's name for the model, and
gives back the answer in the caller's names; everything else (admission, the signature
check, cold starts, replica choice, Triton's errors, completion) is gateway/core.py's.
An admitted request's answer carries its completion, which the server writes to Redis
before the answer leaves (gateway/server.py; gateway/asgi.py on any ASGI server). Django
is deliberately absent from this process: its request cycle costs 5x here.
`make bench-gateway` measures this path against Triton direct.

When Redis cannot be reached every request fails closed (503 with Retry-After): keys,
routes and limits live there, and without it no usage could be recorded. The gateway
reconnects by itself when Redis is back.

Errors are KServe's `{"error": "<message>", "code": "<code>"}` (gateway/errors.py)."""
import json
import logging
import time

from gateway import config, cors
from gateway.admission import Admitted, Completion
from gateway.core import SERVER_METADATA, core
from gateway.errors import GatewayError, internal_error, kserve_body, unrecorded
from gateway.signature import Signature
from gateway.upstream import CONTENT_TYPE, HEADER_LENGTH, UpstreamError, UpstreamPool

log = logging.getLogger("gateway")
JSON_TYPE = b"application/json"
MODELS_PREFIX = "/v2/models/"
# Triton answers 500 to a request it cannot parse; these messages mark the caller's fault.
TRITON_PARSE_ERRORS = ("failed to parse the request JSON buffer", "Unable to parse ")
# In an error answer of Triton's: it no longer has the model the route named.
UNLOADED_MARKERS = (b"unknown model", b"unavailable model", b"is not ready", b"not found")
SERVER = json.dumps(SERVER_METADATA).encode()
# This process's connections to the Triton servers.
triton = UpstreamPool(timeout=config.UPSTREAM_TIMEOUT_S, connect_timeout=config.UPSTREAM_CONNECT_TIMEOUT_S)


class Answer:
    """A response, and for an admitted request what `finish` must record before it leaves."""

    __slots__ = ("status", "headers", "body", "completion")

    def __init__(self, status: int, headers: list, body: bytes, completion: Completion | None = None):
        self.status, self.headers, self.body, self.completion = status, headers, body, completion


def error_response(exc: GatewayError, request_id: bytes) -> tuple[int, bytes, list]:
    """Status, body and headers of an error; the request id header comes first."""
    headers = [(b"x-request-id", request_id), (b"content-type", JSON_TYPE), *exc.headers]
    if exc.retry_after:
        headers.append((b"retry-after", exc.retry_after.encode()))
    return exc.status, kserve_body(exc), headers


def error_answer(exc: GatewayError, request_id: bytes) -> Answer:
    status, body, headers = error_response(exc, request_id)
    return Answer(status, headers, body)


def unrecorded_answer(request_id: bytes) -> Answer:
    """The usage of an answered request cannot be written: the answer is withheld rather
    than given unmetered."""
    return error_answer(unrecorded(), request_id)


def parse_model_path(path: str):
    """/v2/models/{name}[/versions/{v}][/ready|/infer] -> (name, version, endpoint) or None."""
    parts = path[len(MODELS_PREFIX):].split("/")
    name, rest, version = parts[0], parts[1:], ""
    if not name:
        return None
    if len(rest) >= 2 and rest[0] == "versions" and rest[1]:
        version, rest = rest[1], rest[2:]
    if not rest:
        return name, version, "metadata"
    if len(rest) == 1 and rest[0] in ("ready", "infer"):
        return name, version, rest[0]
    return None


def request_headers(headers) -> tuple[str, bytes, bytes | None]:
    """The API key, and the two headers passed to Triton, from (lower-case name, value) pairs."""
    authorization, content_type, header_length = None, None, None
    for name, value in headers:
        if name == b"authorization":
            authorization = value
        elif name == b"content-type":
            content_type = value
        elif name == HEADER_LENGTH:
            header_length = value
    if authorization is None:
        raise GatewayError("Missing API key: send 'Authorization: Bearer <api key>'.", code="unauthenticated")
    scheme, _, token = authorization.decode("latin-1").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise GatewayError("Malformed Authorization header: use 'Bearer <api key>'.", code="unauthenticated")
    return token, content_type, header_length


def rename_model(payload: bytes, header_length: int | None, field: bytes, internal: str, public: str):
    """Replace the namespaced Triton model name by the tenant's name in the JSON header
    (the whole body, or its first `header_length` bytes when binary tensors follow)."""
    old = b'"' + field + b'":"' + internal.encode() + b'"'
    new = b'"' + field + b'":"' + public.encode() + b'"'
    if header_length is None:
        return payload.replace(old, new, 1), None
    header = payload[:header_length].replace(old, new, 1)
    return header + payload[header_length:], len(header)


async def process(method: str, path: str, headers, body: bytes, request_id: bytes) -> Answer:
    """One gateway request, whatever server carries it; headers are (lower-case name,
    value) pairs. A page on an allowed origin may read the answer (gateway/cors.py)."""
    try:
        if method == "OPTIONS":
            return preflight(path, headers, request_id)
        answer = await route(method, path, headers, body, request_id)
    except GatewayError as exc:
        answer = error_answer(exc, request_id)
    if cors.ANSWER:
        allowed = cors.for_answer(headers)
        if allowed is not None:
            answer.headers += allowed
    return answer


async def route(method: str, path: str, headers, body: bytes, request_id: bytes) -> Answer:
    if path.startswith(MODELS_PREFIX):
        return await process_model(method, path, headers, body, request_id)
    plain = [(b"x-request-id", request_id), (b"content-type", JSON_TYPE)]
    if path == "/v2/health/live":
        return Answer(200, plain, b"")
    if path == "/v2/health/ready":
        await core.admission.ping()
        return Answer(200, plain, b"")
    if path == "/v2":
        return Answer(200, plain, SERVER)
    raise GatewayError(f"No such endpoint: {path}", code="not_found")


def preflight(path: str, headers, request_id: bytes) -> Answer:
    """A browser asks whether a page on its origin may call: answered before authentication."""
    if not path.startswith("/v2"):
        raise GatewayError(f"No such endpoint: {path}", code="not_found")
    allowed = cors.for_preflight(headers)
    if allowed is None:
        raise GatewayError("Cross-origin calls are not allowed from this origin: the gateway allows the origins in "
                           "GATEWAY_CORS_ORIGINS (by default the portal's).", code="permission_denied")
    return Answer(204, [(b"x-request-id", request_id), *allowed], b"")


async def process_model(method: str, path: str, headers_in, body: bytes, request_id: bytes) -> Answer:
    started = time.perf_counter()
    parsed = parse_model_path(path)
    if parsed is None:
        raise GatewayError(f"No such endpoint: {path}", code="not_found")
    name, version, endpoint = parsed
    if method != ("POST" if endpoint == "infer" else "GET"):
        raise GatewayError(f"{method} is not allowed on {path}.", code="method_not_allowed")

    raw_key, content_type, header_length = request_headers(headers_in)
    admitted = await core.admission.admit(raw_key, name, len(body), request_id.decode(), endpoint == "infer")

    # From here on the request is admitted and is metered whatever happens.
    status, upstream_ms, payload = 500, None, b""
    headers = [(b"x-request-id", request_id), *admitted.rate_headers()]
    if admitted.flags:
        headers.append((b"x-quota-warning", admitted.flags.encode()))
    try:
        response_headers, upstream_ms, payload = await forward(admitted, name, version, endpoint, method, body,
                                                               content_type, header_length)
        status = 200
        headers += response_headers
    except GatewayError as exc:
        status, payload, error_headers = error_response(exc, request_id)
        headers += error_headers[1:]
    except Exception:
        # Still finished: its leases are released and its usage recorded.
        log.exception("request %s failed in the gateway", admitted.request_id)
        status, payload, error_headers = error_response(internal_error(), request_id)
        headers += error_headers[1:]
    return Answer(status, headers, payload,
                  Completion(admitted, name, "http", endpoint, status, started, upstream_ms, len(body), len(payload)))


async def forward(admitted: Admitted, name: str, version: str, endpoint: str, method: str, body: bytes,
                  content_type: bytes | None, header_length: bytes | None) -> tuple[list, float, bytes]:
    """Send the request to the deployment's Triton server: the response headers, the
    milliseconds Triton took, and the payload in the caller's names."""
    forwarded = b""
    if content_type is not None:
        forwarded = b"Content-Type: " + content_type + b"\r\n"
    if endpoint == "infer":
        if not body:
            raise GatewayError("The inference request body is empty.", code="invalid_request")
        json_size = None
        if header_length is not None:
            try:
                json_size = int(header_length)
            except ValueError:
                raise GatewayError("Inference-Header-Content-Length is not an integer.",
                                   code="invalid_request") from None
            if not 0 < json_size <= len(body):
                raise GatewayError(f"Inference-Header-Content-Length ({json_size}) does not fit the {len(body)} "
                                   "byte request body.", code="invalid_request")
            forwarded += b"Inference-Header-Content-Length: " + str(json_size).encode() + b"\r\n"
        core.check(admitted, name, Signature.check_http, body, json_size, config.MAX_BODY_BYTES)
    await core.ready(admitted, name, hold=endpoint != "ready")

    triton_model = admitted.triton_model
    upstream_path = f"/v2/models/{triton_model}" + (f"/versions/{version}" if version else "")
    if endpoint != "metadata":
        upstream_path += "/" + endpoint
    upstream_started = time.perf_counter()
    try:
        upstream = await core.send(name, admitted.http_url, triton.request, method, upstream_path, forwarded, body)
        if upstream.status != 200 and not version and unloaded(upstream) and await core.ready_again(admitted, name):
            # Scaled to zero between admission and forwarding: held like any cold call, sent again.
            upstream_started = time.perf_counter()
            upstream = await core.send(name, admitted.http_url, triton.request, method, upstream_path, forwarded,
                                       body)
    except UpstreamError as exc:
        raise GatewayError(f"The inference server did not answer: {exc}", code="upstream_error") from None
    upstream_ms = (time.perf_counter() - upstream_started) * 1000

    if upstream.status != 200:
        raise upstream_failure(admitted, upstream.status, upstream.body, name, version, endpoint, body, header_length)
    length = upstream.headers.get(HEADER_LENGTH)
    length = int(length) if length else None
    payload, length = rename_model(upstream.body, length, b"model_name" if endpoint == "infer" else b"name",
                                   triton_model, name)
    headers = [(b"content-type", upstream.headers.get(CONTENT_TYPE, JSON_TYPE))]
    if length is not None:
        headers.append((HEADER_LENGTH, str(length).encode()))
    return headers, upstream_ms, payload


def unloaded(upstream) -> bool:
    """Triton's answer says it no longer has the model the route named."""
    return upstream.status in (400, 404, 503) and any(marker in upstream.body for marker in UNLOADED_MARKERS)


def upstream_failure(admitted: Admitted, status: int, payload: bytes, name: str, version: str, endpoint: str,
                     body: bytes, header_length: bytes | None) -> GatewayError:
    """Translate a Triton error into what the caller can act on, in the caller's names."""
    message = triton_error_message(payload).replace(admitted.triton_model, name)
    failure = core.triton_refusal(admitted, name, version, message, missing=status == 404)
    if failure is not None:
        return failure
    if 400 <= status < 500:
        return GatewayError(message, code="invalid_input", status=status)
    if endpoint == "infer" and (message.startswith(TRITON_PARSE_ERRORS)
                                or not infer_header_parses(body, header_length)):
        return GatewayError(f"The inference request is malformed: {message}", code="invalid_input")
    return GatewayError(f"The inference server failed ({status}): {message}", code="upstream_error")


def infer_header_parses(body: bytes, header_length: bytes | None) -> bool:
    """Checked only after Triton failed, so well-formed requests never pay for a parse."""
    try:
        request = json.loads(body[:int(header_length)] if header_length else body)
    except ValueError:
        return False
    return isinstance(request, dict) and isinstance(request.get("inputs"), list)


def triton_error_message(payload: bytes) -> str:
    try:
        error = json.loads(payload).get("error")
    except (ValueError, AttributeError):
        return payload.decode(errors="replace")[:500]
    return error if isinstance(error, str) else json.dumps(error)


def close() -> None:
    """Close this process's idle connections to Triton."""
    triton.close()

"""The gateway: a lean data plane speaking the KServe v2 (Triton) HTTP protocol.

Per request, one Redis round trip before forwarding and one after: `admit` authenticates
the API key, resolves the tenant's deployment name and decides every quota at once;
`finish` releases the request's leases, counts it against the budgets and appends its
usage event (gateway/admission.py, gateway/lua/). The completion is written to Redis
before the response is written to the client, so no answered request goes unmetered.
`process` is the request path; gateway/server.py serves it over HTTP/1.1 (`python -m
gateway`), `app` over any ASGI server. Django is deliberately absent from this process:
its request cycle costs 5x here. `python -m gateway.bench` measures this path against
Triton direct.

When Redis cannot be reached every request fails closed (503 with Retry-After): keys,
routes and limits live there, and without it no usage could be recorded. The gateway
reconnects by itself when Redis is back.

Errors follow the KServe v2 protocol, `{"error": "<message>"}`, which every Triton/KServe
client parses (tritonclient fails to format anything but a string there), plus a
machine-readable `code` beside it (the portal API's codes)."""
import asyncio
import json
import logging
import time
import uuid

from gateway import config
from gateway.admission import Admission, Admitted, Refused, Unavailable, usage_event
from gateway.coldstart import WAKING_STATES, ColdStarts, HoldTimeout
from gateway.redis_link import RedisReplyError, RedisUnavailable
from gateway.signature import InvalidRequest, signature
from gateway.upstream import CONTENT_TYPE, HEADER_LENGTH, UpstreamError, UpstreamPool

log = logging.getLogger("gateway")
JSON_TYPE = b"application/json"
MODELS_PREFIX = "/v2/models/"
# Triton answers 500 to a request it cannot parse; these messages mark the caller's fault.
TRITON_PARSE_ERRORS = ("failed to parse the request JSON buffer", "Unable to parse ")


class GatewayError(Exception):
    def __init__(self, status: int, code: str, message: str, retry_after: str | None = None,
                 headers: list | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after
        self.headers = headers or []


def not_ready(message: str) -> GatewayError:
    return GatewayError(503, "not_ready", message, retry_after=config.RETRY_AFTER_S)


def unavailable(exc: Exception) -> GatewayError:
    return GatewayError(503, "unavailable", f"The platform cannot admit requests right now ({exc}); retry shortly.",
                        retry_after="1")


def refusal(exc: Refused) -> GatewayError:
    """A request that is not admitted: the answer says when (or whether) to retry."""
    headers = []
    retry_after = None
    if exc.kind == "budget":
        headers.append((b"x-should-retry", b"false"))
    elif exc.kind in ("rate", "concurrency"):
        wait_s = int(exc.wait_ms or "1000") / 1000
        retry_after = str(max(1, int(-(-wait_s // 1))))
        headers += [(b"x-ratelimit-remaining-requests", b"0"),
                    (b"x-ratelimit-reset-requests", f"{wait_s:.3f}s".encode())]
    return GatewayError(exc.status, exc.code, exc.message, retry_after=retry_after, headers=headers)


class Replicas:
    """Which replica of a deployment gets a request: the one with the fewest requests
    outstanding from this process. A server that refused a connection is skipped for
    DOWN_S (the workers' health check takes it out of the routes within seconds)."""

    DOWN_S = 3.0

    def __init__(self):
        self.outstanding: dict[str, int] = {}
        self.down_until: dict[str, float] = {}

    def pick(self, urls: str, exclude: str = "") -> str | None:
        best, best_count = None, None
        now = time.monotonic() if self.down_until else 0.0
        for url in urls.split(" ") if " " in urls else (urls,):
            if not url or url == exclude or (now and self.down_until.get(url, 0.0) > now):
                continue
            count = self.outstanding.get(url, 0)
            if best_count is None or count < best_count:
                best, best_count = url, count
        return best

    def down(self, url: str) -> None:
        self.down_until[url] = time.monotonic() + self.DOWN_S


class Gateway:
    def __init__(self):
        self.admission: Admission | None = None
        self.upstream: UpstreamPool | None = None
        self.coldstarts: ColdStarts | None = None
        self.replicas = Replicas()
        self.grpc = None

    async def startup(self) -> None:
        self.admission = Admission(config.REDIS_URL)
        self.admission.start()
        self.coldstarts = ColdStarts(self.admission.link)
        self.coldstarts.connect()
        self.upstream = UpstreamPool(timeout=config.UPSTREAM_TIMEOUT_S,
                                     connect_timeout=config.UPSTREAM_CONNECT_TIMEOUT_S)
        if config.GRPC_PORT:
            from gateway.grpc_server import grpc_start

            self.grpc = await grpc_start(self.admission, config.GRPC_HOST, config.GRPC_PORT)

    async def shutdown(self) -> None:
        if self.grpc is not None:
            await self.grpc.stop(2)
        self.upstream.close()
        await self.admission.close()


gateway = Gateway()


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
    """The API key, and the two headers passed to Triton, from the ASGI header list."""
    authorization, content_type, header_length = None, None, None
    for name, value in headers:
        if name == b"authorization":
            authorization = value
        elif name == b"content-type":
            content_type = value
        elif name == HEADER_LENGTH:
            header_length = value
    if authorization is None:
        raise GatewayError(401, "unauthenticated", "Missing API key: send 'Authorization: Bearer <api key>'.")
    scheme, _, token = authorization.decode("latin-1").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise GatewayError(401, "unauthenticated", "Malformed Authorization header: use 'Bearer <api key>'.")
    return token, content_type, header_length


async def read_body(receive) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise GatewayError(499, "client_closed", "The client closed the connection before sending its request.")
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > config.MAX_BODY_BYTES:
                raise GatewayError(413, "payload_too_large",
                                   f"The request body exceeds the {config.MAX_BODY_BYTES} byte limit.")
            chunks.append(chunk)
        if not message.get("more_body"):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def rename_model(payload: bytes, header_length: int | None, field: bytes, internal: str, public: str):
    """Replace the namespaced Triton model name by the tenant's name in the JSON header
    (the whole body, or its first `header_length` bytes when binary tensors follow)."""
    old = b'"' + field + b'":"' + internal.encode() + b'"'
    new = b'"' + field + b'":"' + public.encode() + b'"'
    if header_length is None:
        return payload.replace(old, new, 1), None
    header = payload[:header_length].replace(old, new, 1)
    return header + payload[header_length:], len(header)


async def send_response(send, status: int, body: bytes, headers: list) -> None:
    # An explicit length spares uvicorn the chunked encoding it falls back to without one.
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def error_response(exc: GatewayError, request_id: bytes) -> tuple[int, bytes, list]:
    """Status, body and headers of an error; the request id header comes first."""
    body = json.dumps({"error": exc.message, "code": exc.code}).encode()
    headers = [(b"x-request-id", request_id), (b"content-type", JSON_TYPE), *exc.headers]
    if exc.retry_after:
        headers.append((b"retry-after", exc.retry_after.encode()))
    return exc.status, body, headers


SERVER_METADATA = json.dumps({
    "name": "inference-platform-gateway", "version": "1.0", "extensions": ["binary_tensor_data"],
}).encode()


class Answer:
    """A response, and for an admitted request what `finish` must record before it leaves."""

    __slots__ = ("status", "headers", "body", "completion")

    def __init__(self, status: int, headers: list, body: bytes, completion: tuple | None = None):
        self.status, self.headers, self.body, self.completion = status, headers, body, completion


def error_answer(exc: GatewayError, request_id: bytes) -> Answer:
    status, body, headers = error_response(exc, request_id)
    return Answer(status, headers, body)


async def process(method: str, path: str, headers, body: bytes, request_id: bytes) -> Answer:
    """One gateway request, whatever server carries it (gateway/server.py, or any ASGI
    server through `app`); headers are (lower-case name, value) pairs."""
    try:
        if path.startswith(MODELS_PREFIX):
            return await process_model(method, path, headers, body, request_id)
        plain = [(b"x-request-id", request_id), (b"content-type", JSON_TYPE)]
        if path == "/v2/health/live":
            return Answer(200, plain, b"")
        if path == "/v2/health/ready":
            try:
                await gateway.admission.ping()
            except Unavailable as exc:
                raise unavailable(exc) from None
            return Answer(200, plain, b"")
        if path == "/v2":
            return Answer(200, plain, SERVER_METADATA)
        raise GatewayError(404, "not_found", f"No such endpoint: {path}")
    except GatewayError as exc:
        return error_answer(exc, request_id)


async def process_model(method: str, path: str, headers_in, body: bytes, request_id: bytes) -> Answer:
    started = time.perf_counter()
    parsed = parse_model_path(path)
    if parsed is None:
        raise GatewayError(404, "not_found", f"No such endpoint: {path}")
    name, version, endpoint = parsed
    if method != ("POST" if endpoint == "infer" else "GET"):
        raise GatewayError(405, "method_not_allowed", f"{method} is not allowed on {path}.")

    raw_key, content_type, header_length = request_headers(headers_in)
    try:
        admitted = await gateway.admission.admit(raw_key, name, len(body), request_id.decode(), endpoint == "infer")
    except Refused as exc:
        raise refusal(exc) from None
    except Unavailable as exc:
        raise unavailable(exc) from None

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
        status, payload, error_headers = error_response(
            GatewayError(500, "internal_error", "The gateway failed on this request; retry it."), request_id)
        headers += error_headers[1:]

    billable = status == 200 and endpoint == "infer"
    compute_us = int(upstream_ms * 1000) if billable else 0
    event = usage_event(admitted, name=name, proto="http", endpoint=endpoint, status=status, started=started,
                        upstream_ms=upstream_ms, compute_us=compute_us, bytes_in=len(body), bytes_out=len(payload))
    return Answer(status, headers, payload, (admitted, billable, compute_us, event))


def unrecorded(request_id: bytes) -> Answer:
    """The usage of an answered request cannot be written: the answer is withheld rather
    than given unmetered."""
    return error_answer(unavailable(Exception("Redis is unreachable")), request_id)


def route_check(admitted: Admitted, name: str) -> None:
    """Refuse a request whose deployment is missing, failed or not ready (HTTP and gRPC alike)."""
    if not admitted.deployment_id:
        raise GatewayError(404, "not_found", f"No deployment named '{name}' in your tenant.")
    state = admitted.state
    if state == "failed":
        raise GatewayError(503, "deployment_failed", f"Deployment '{name}' failed to load: {admitted.error}")
    if state != "ready":
        raise not_ready(f"Deployment '{name}' is {state or 'not ready'}; retry shortly.")


async def route_ready(admitted: Admitted, name: str, hold: bool = True) -> None:
    """Hold a request to a cold (or loading) deployment until it is ready, for at most
    COLD_START_TIMEOUT_S; then refuse what cannot be served (HTTP and gRPC alike).
    Readiness questions are not held: a deployment that is not loaded is not ready."""
    if hold and admitted.state in WAKING_STATES and admitted.deployment_id:
        started = time.perf_counter()
        try:
            held_ms = await gateway.coldstarts.hold(admitted, name)
        except HoldTimeout:
            # A cold start all the same: the usage event says how long it was held.
            admitted.cold_ms = f"{(time.perf_counter() - started) * 1000:.1f}"
            raise GatewayError(503, "cold_start_timeout",
                               f"Deployment '{name}' is still loading after {config.COLD_START_TIMEOUT_S:g} s; "
                               "retry shortly.", retry_after=config.RETRY_AFTER_S) from None
        except (RedisUnavailable, RedisReplyError, TimeoutError) as exc:
            raise unavailable(Exception(str(exc) or "Redis did not answer in time")) from None
        admitted.cold_ms = f"{held_ms:.1f}"
    route_check(admitted, name)


def request_check(admitted: Admitted, name: str, check) -> None:
    """Check an inference request against its deployment's signature before Triton sees
    it (gateway/signature.py; HTTP and gRPC alike): 400 naming the input and what is
    wrong. It runs before a cold deployment is woken, so a refused request wakes nothing."""
    if not admitted.deployment_id:
        return  # route_check answers 404
    checked = signature(admitted.signature)
    try:
        if checked is None:
            raise not_ready(f"Deployment '{name}' is being published; retry shortly.")
        check(checked)
    except InvalidRequest as exc:
        gateway.coldstarts.release(admitted)
        raise GatewayError(400, "invalid_input", str(exc)) from None
    except GatewayError:
        gateway.coldstarts.release(admitted)
        raise


def server_unavailable(name: str) -> GatewayError:
    return GatewayError(503, "server_unavailable", f"The inference server of deployment '{name}' is not answering; "
                        "it is being replaced, retry shortly.", retry_after=config.RETRY_AFTER_S)


async def send_upstream(admitted: Admitted, name: str, method: str, path: str, headers: bytes, body: bytes):
    """Send to the replica with the fewest outstanding requests; a replica that cannot be
    reached is skipped (another one is tried), and with none left the answer is a quick 503."""
    replicas = gateway.replicas
    tried = ""
    for _ in range(2):
        url = replicas.pick(admitted.http_url, exclude=tried)
        if url is None:
            raise server_unavailable(name)
        replicas.outstanding[url] = replicas.outstanding.get(url, 0) + 1
        try:
            return await gateway.upstream.request(method, url, path, headers, body)
        except UpstreamError as exc:
            if not exc.unsent:
                raise GatewayError(502, "upstream_error", f"The inference server did not answer: {exc}") from None
            replicas.down(url)
            tried = url
        finally:
            replicas.outstanding[url] -= 1
    raise server_unavailable(name)


async def forward(admitted: Admitted, name: str, version: str, endpoint: str, method: str, body: bytes,
                  content_type: bytes | None, header_length: bytes | None) -> tuple[list, float, bytes]:
    """Send the request to the deployment's Triton server: the response headers, the
    milliseconds Triton took, and the payload in the caller's names."""
    forwarded = b""
    if content_type is not None:
        forwarded = b"Content-Type: " + content_type + b"\r\n"
    if endpoint == "infer":
        if not body:
            raise GatewayError(400, "invalid_request", "The inference request body is empty.")
        json_size = None
        if header_length is not None:
            try:
                json_size = int(header_length)
            except ValueError:
                raise GatewayError(400, "invalid_request",
                                   "Inference-Header-Content-Length is not an integer.") from None
            if not 0 < json_size <= len(body):
                raise GatewayError(400, "invalid_request",
                                   f"Inference-Header-Content-Length ({json_size}) does not fit the "
                                   f"{len(body)} byte request body.")
            forwarded += b"Inference-Header-Content-Length: " + str(json_size).encode() + b"\r\n"
        request_check(admitted, name, lambda checked: checked.check_http(body, json_size, config.MAX_BODY_BYTES))
    await route_ready(admitted, name, hold=endpoint != "ready")

    triton_model = admitted.triton_model
    upstream_path = f"/v2/models/{triton_model}" + (f"/versions/{version}" if version else "")
    if endpoint != "metadata":
        upstream_path += "/" + endpoint
    upstream_started = time.perf_counter()
    upstream = await send_upstream(admitted, name, method, upstream_path, forwarded, body)
    if upstream.status != 200 and not version and await unloaded_meanwhile(admitted, name, upstream):
        # Scaled to zero between admission and forwarding: held like any cold call, sent again.
        upstream_started = time.perf_counter()
        upstream = await send_upstream(admitted, name, method, upstream_path, forwarded, body)
    upstream_ms = (time.perf_counter() - upstream_started) * 1000

    if upstream.status != 200:
        failure = upstream_failure(upstream.status, upstream.body, triton_model, name, version, endpoint, body,
                                   header_length)
        if failure.code == "runner_restarting":
            gateway.coldstarts.heal(admitted.deployment_id)
        raise failure
    length = upstream.headers.get(HEADER_LENGTH)
    length = int(length) if length else None
    payload, length = rename_model(upstream.body, length, b"model_name" if endpoint == "infer" else b"name",
                                   triton_model, name)
    headers = [(b"content-type", upstream.headers.get(CONTENT_TYPE, JSON_TYPE))]
    if length is not None:
        headers.append((HEADER_LENGTH, str(length).encode()))
    return headers, upstream_ms, payload


def upstream_failure(status: int, payload: bytes, triton_model: str, name: str, version: str, endpoint: str,
                     body: bytes, header_length: bytes | None) -> GatewayError:
    """Translate a Triton error into what the caller can act on, in the caller's names."""
    message = triton_error_message(payload).replace(triton_model, name)
    if status == 404:
        return model_missing(name, version)
    if runner_died(message):
        return runner_restarting(name)
    if "not ready" in message:
        return not_ready(f"Deployment '{name}' is not ready: {message}")
    if 400 <= status < 500:
        return GatewayError(status, "invalid_input", message)
    if endpoint == "infer" and (message.startswith(TRITON_PARSE_ERRORS) or not infer_header_parses(body, header_length)):
        return GatewayError(400, "invalid_input", f"The inference request is malformed: {message}")
    return GatewayError(502, "upstream_error", f"The inference server failed ({status}): {message}")


def runner_died(message: str) -> bool:
    """Triton's answer when a model's Python-backend stub process is gone."""
    return "Stub process" in message and "is not healthy" in message


def runner_restarting(name: str) -> GatewayError:
    return GatewayError(503, "runner_restarting", f"The runner process of deployment '{name}' stopped; it is being "
                        "restarted, retry shortly.", retry_after=config.RETRY_AFTER_S)


async def unloaded_meanwhile(admitted: Admitted, name: str, upstream) -> bool:
    """Triton no longer has the model the route named: if the deployment went cold (or is
    reloading) since admission, hold the request until it is back. True when it is."""
    if upstream.status not in (400, 404, 503) or not any(
            marker in upstream.body for marker in (b"unknown model", b"unavailable model", b"is not ready",
                                                   b"not found")):
        return False
    admitted.state = "cold"
    try:
        await route_ready(admitted, name)
    except GatewayError:
        return False
    return True


def model_missing(name: str, version: str) -> GatewayError:
    """Triton does not hold the deployment's model, or not that version of it."""
    if version:
        return GatewayError(404, "not_found", f"Deployment '{name}' has no version {version}.")
    return not_ready(f"Deployment '{name}' is not loaded on its server yet; retry shortly.")


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


async def lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await gateway.startup()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await gateway.shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope, receive, send):
    """The gateway as an ASGI application. `python -m gateway` serves `process` through its
    own HTTP server (gateway/server.py), which writes each response in one system call
    right after its usage record; this entry point serves the same requests on any ASGI
    server."""
    if scope["type"] != "http":
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
        return
    request_id = str(uuid.uuid4()).encode()
    try:
        body = await read_body(receive) if scope["method"] == "POST" else b""
    except GatewayError as exc:
        return await send_response(send, *error_response(exc, request_id))
    answer = await process(scope["method"], scope["path"], scope["headers"], body, request_id)
    if answer.completion is not None:
        recorded = asyncio.get_running_loop().create_future()
        gateway.admission.finish_then(*answer.completion, recorded.set_result)
        if not await recorded:
            answer = unrecorded(request_id)
    await send_response(send, answer.status, answer.body, answer.headers)

"""The gateway: a lean ASGI data plane speaking the KServe v2 (Triton) HTTP protocol.

Per request: authenticate the API key, resolve the tenant's deployment name, forward to
the Triton server that holds it, answer, and emit one usage event. Keys and routes come
from the Redis directory the control plane maintains (gateway/directory.py), cached in
process for CACHE_TTL_S, so the steady state makes no Redis round trip before forwarding.
Django is deliberately absent from this process: its request cycle costs 5x here.

Errors follow the KServe v2 protocol, `{"error": "<message>"}`, which every Triton/KServe
client parses, plus a machine-readable `code` beside it (the portal API's codes)."""
import asyncio
import hashlib
import json
import os
import time
import uuid

import aiohttp
import redis.asyncio as aioredis

from gateway.directory import KEY_PREFIX, ROUTE_PREFIX, USAGE_STREAM

CACHE_TTL_S = float(os.environ.get("GATEWAY_CACHE_TTL_S", "1.0"))
UPSTREAM_TIMEOUT_S = float(os.environ.get("GATEWAY_UPSTREAM_TIMEOUT_S", "60"))
MAX_BODY_BYTES = int(os.environ.get("GATEWAY_MAX_BODY_BYTES", str(64 * 1024 * 1024)))
RETRY_AFTER_S = "2"
HEADER_LENGTH = b"inference-header-content-length"
JSON_TYPE = b"application/json"


class GatewayError(Exception):
    def __init__(self, status: int, code: str, message: str, retry_after: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


class TtlCache:
    """A tiny per-process cache; entries (including misses) live CACHE_TTL_S."""

    def __init__(self, ttl: float, max_entries: int = 100_000):
        self.ttl, self.max_entries, self.entries = ttl, max_entries, {}

    def get(self, key, now: float):
        hit = self.entries.get(key)
        if hit is not None and hit[0] > now:
            return hit
        return None

    def put(self, key, value, now: float) -> None:
        if len(self.entries) >= self.max_entries:
            self.entries.clear()
        self.entries[key] = (now + self.ttl, value)


class Gateway:
    def __init__(self):
        self.redis: aioredis.Redis | None = None
        self.http: aiohttp.ClientSession | None = None
        self.keys = TtlCache(CACHE_TTL_S)
        self.routes = TtlCache(CACHE_TTL_S)
        self.pending: set[asyncio.Task] = set()

    async def startup(self) -> None:
        self.redis = aioredis.Redis.from_url(
            os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), decode_responses=True,
            socket_connect_timeout=2, socket_timeout=2,
        )
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60, enable_cleanup_closed=True),
            timeout=aiohttp.ClientTimeout(total=UPSTREAM_TIMEOUT_S),
            auto_decompress=False, skip_auto_headers=("User-Agent", "Accept-Encoding"),
        )

    async def shutdown(self) -> None:
        if self.pending:
            await asyncio.wait(self.pending, timeout=5)
        if self.http is not None:
            await self.http.close()
        if self.redis is not None:
            await self.redis.aclose()

    # Directory lookups ------------------------------------------------------------------

    async def api_key(self, raw_key: str) -> dict:
        now = time.monotonic()
        hit = self.keys.get(raw_key, now)
        if hit is None:
            entry = await self._redis_hgetall(KEY_PREFIX + hashlib.sha256(raw_key.encode()).hexdigest())
            self.keys.put(raw_key, entry or None, now)
        else:
            entry = hit[1]
        if not entry:
            raise GatewayError(401, "unauthenticated", "Unknown API key.")
        if entry.get("revoked") == "1":
            raise GatewayError(401, "unauthenticated", "This API key has been revoked.")
        return entry

    async def route(self, tenant_id: str, name: str) -> dict | None:
        now = time.monotonic()
        cache_key = (tenant_id, name)
        hit = self.routes.get(cache_key, now)
        if hit is not None:
            return hit[1]
        entry = await self._redis_hgetall(f"{ROUTE_PREFIX}{tenant_id}:{name}") or None
        self.routes.put(cache_key, entry, now)
        return entry

    async def _redis_hgetall(self, name: str) -> dict:
        try:
            return await self.redis.hgetall(name)
        except (aioredis.ConnectionError, aioredis.TimeoutError, OSError) as exc:
            raise GatewayError(503, "unavailable", f"The platform directory is unreachable ({exc}); retry shortly.",
                               retry_after=RETRY_AFTER_S) from exc

    # Metering ---------------------------------------------------------------------------

    def meter(self, fields: dict) -> None:
        task = asyncio.get_running_loop().create_task(self._xadd(fields))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _xadd(self, fields: dict) -> None:
        try:
            await self.redis.xadd(USAGE_STREAM, fields)
        except Exception as exc:  # metering must never take the data plane down
            print(f"gateway: usage event {fields.get('rid')} not recorded: {exc}", flush=True)


gateway = Gateway()


def parse_model_path(path: str):
    """/v2/models/{name}[/versions/{v}][/ready|/infer] -> (name, version, endpoint) or None."""
    parts = path[len("/v2/models/"):].split("/")
    if not parts or not parts[0]:
        return None
    name, rest, version = parts[0], parts[1:], ""
    if len(rest) >= 2 and rest[0] == "versions":
        version, rest = rest[1], rest[2:]
    if not rest:
        return name, version, "metadata"
    if len(rest) == 1 and rest[0] in ("ready", "infer"):
        return name, version, rest[0]
    return None


def bearer_key(headers) -> str:
    for key, value in headers:
        if key == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise GatewayError(401, "unauthenticated", "Use 'Authorization: Bearer <api key>'.")
            return token.strip()
    raise GatewayError(401, "unauthenticated", "Missing API key: send 'Authorization: Bearer <api key>'.")


async def read_body(receive) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise GatewayError(413, "payload_too_large",
                                   f"The request body exceeds the {MAX_BODY_BYTES} byte limit.")
            chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks) if len(chunks) != 1 else chunks[0]


def rename_model(payload: bytes, header_length: int | None, field: bytes, internal: str, public: str):
    """Replace the namespaced Triton model name by the tenant's name in the JSON header."""
    old = b'"' + field + b'":"' + internal.encode() + b'"'
    new = b'"' + field + b'":"' + public.encode() + b'"'
    if header_length is None:
        return payload.replace(old, new, 1), None
    header = payload[:header_length].replace(old, new, 1)
    return header + payload[header_length:], len(header)


async def send_response(send, status: int, body: bytes, headers: list) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def error_response(exc: GatewayError, request_id: bytes) -> tuple[int, bytes, list]:
    body = json.dumps({"error": exc.message, "code": exc.code}).encode()
    headers = [(b"content-type", JSON_TYPE), (b"x-request-id", request_id)]
    if exc.retry_after:
        headers.append((b"retry-after", exc.retry_after.encode()))
    return exc.status, body, headers


async def health(path: str, send, request_id: bytes) -> None:
    headers = [(b"content-type", JSON_TYPE), (b"x-request-id", request_id)]
    if path == "/v2/health/live":
        return await send_response(send, 200, b"", headers)
    try:
        await gateway.redis.ping()
    except Exception:
        return await send_response(send, 503, b'{"error":"Redis unreachable","code":"unavailable"}',
                                   headers)
    return await send_response(send, 200, b"", headers)


SERVER_METADATA = json.dumps({
    "name": "inference-platform-gateway", "version": "1.0",
    "extensions": ["binary_tensor_data", "model_repository_api_keys"],
}).encode()


async def handle_model(scope, receive, send, request_id: bytes) -> None:
    started = time.perf_counter()
    path = scope["path"]
    parsed = parse_model_path(path)
    if parsed is None:
        raise GatewayError(404, "not_found", f"No such endpoint: {path}")
    name, version, endpoint = parsed
    method = scope["method"]
    if (endpoint == "infer") != (method == "POST") or method not in ("GET", "POST"):
        raise GatewayError(405, "method_not_allowed", f"{method} is not allowed on {path}.")

    key = await gateway.api_key(bearer_key(scope["headers"]))
    if "infer" not in key.get("scopes", "").split(","):
        raise GatewayError(403, "permission_denied", "This API key lacks the 'infer' scope.")

    # From here on the request is admitted and is metered whatever happens.
    status, bytes_in, bytes_out, upstream_ms, route = 500, 0, 0, None, None
    response_headers = [(b"x-request-id", request_id)]
    try:
        body = await read_body(receive) if method == "POST" else b""
        bytes_in = len(body)
        route = await gateway.route(key["tenant_id"], name)
        if route is None:
            raise GatewayError(404, "not_found", f"No deployment named '{name}' in your tenant.")
        state = route.get("state")
        if state == "failed":
            raise GatewayError(503, "deployment_failed", f"Deployment '{name}' failed to load: {route.get('error')}",
                               retry_after=None)
        if state != "ready":
            raise GatewayError(503, "not_ready", f"Deployment '{name}' is {state}; retry shortly.",
                               retry_after=RETRY_AFTER_S)

        request_headers = {}
        header_length = None
        for hname, hvalue in scope["headers"]:
            if hname == b"content-type":
                request_headers["Content-Type"] = hvalue.decode("latin-1")
            elif hname == HEADER_LENGTH:
                try:
                    header_length = int(hvalue)
                except ValueError:
                    raise GatewayError(400, "invalid_request", "Inference-Header-Content-Length is not an integer.")
                request_headers["Inference-Header-Content-Length"] = str(header_length)
        if endpoint == "infer":
            if not body:
                raise GatewayError(400, "invalid_request", "The inference request body is empty.")
            if header_length is not None and not 0 < header_length <= len(body):
                raise GatewayError(400, "invalid_request",
                                   "Inference-Header-Content-Length does not fit the request body.")
            check_infer_header(body if header_length is None else body[:header_length])

        triton_model = route["triton_model"]
        upstream_path = f"/v2/models/{triton_model}" + (f"/versions/{version}" if version else "")
        if endpoint != "metadata":
            upstream_path += "/" + endpoint
        upstream_started = time.perf_counter()
        try:
            async with gateway.http.request(method, route["http_url"] + upstream_path, data=body or None,
                                            headers=request_headers) as upstream:
                payload = await upstream.read()
                upstream_status = upstream.status
                upstream_header_length = upstream.headers.get("Inference-Header-Content-Length")
                upstream_type = upstream.headers.get("Content-Type", "application/json")
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise GatewayError(502, "upstream_error", f"The inference server did not answer: {exc or type(exc).__name__}")
        upstream_ms = (time.perf_counter() - upstream_started) * 1000

        if upstream_status == 200:
            length = int(upstream_header_length) if upstream_header_length else None
            field = b"model_name" if endpoint == "infer" else b"name"
            payload, length = rename_model(payload, length, field, triton_model, name)
            response_headers.append((b"content-type", upstream_type.encode("latin-1")))
            if length is not None:
                response_headers.append((HEADER_LENGTH, str(length).encode()))
            status = 200
            await send_response(send, 200, payload, response_headers)
            bytes_out = len(payload)
            return
        message = triton_error_message(payload).replace(triton_model, name)
        if upstream_status == 400 and endpoint == "ready":
            raise GatewayError(503, "not_ready", f"Deployment '{name}' is not ready: {message}",
                               retry_after=RETRY_AFTER_S)
        if upstream_status in (400, 422):
            raise GatewayError(400, "invalid_input", message)
        if upstream_status == 404:
            raise GatewayError(503, "not_ready", f"Deployment '{name}' is not loaded on its server; retry shortly.",
                               retry_after=RETRY_AFTER_S)
        raise GatewayError(502, "upstream_error", f"The inference server failed ({upstream_status}): {message}")
    except GatewayError as exc:
        status, body_out, headers = error_response(exc, request_id)
        bytes_out = len(body_out)
        await send_response(send, status, body_out, headers)
    finally:
        gateway.meter({
            "rid": request_id.decode(), "tenant": key["tenant_id"], "key": key["key_id"],
            "dep": (route or {}).get("deployment_id", ""), "name": name,
            "ver": (route or {}).get("model_version_id", ""), "proto": "http", "ep": endpoint,
            "status": status, "lat": round((time.perf_counter() - started) * 1000, 3),
            "up": round(upstream_ms, 3) if upstream_ms is not None else "",
            "bin": bytes_in, "bout": bytes_out, "ts": time.time(),
        })


def check_infer_header(header: bytes) -> None:
    """Reject what Triton would answer with a 500: a JSON header that does not parse."""
    try:
        request = json.loads(header)
    except ValueError as exc:
        raise GatewayError(400, "invalid_request", f"The inference request is not valid JSON: {exc}") from None
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
        raise GatewayError(400, "invalid_request", "The inference request needs an 'inputs' list.")


def triton_error_message(payload: bytes) -> str:
    try:
        error = json.loads(payload).get("error")
    except (ValueError, AttributeError):
        return payload.decode(errors="replace")[:500]
    return error if isinstance(error, str) else json.dumps(error)


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await gateway.startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await gateway.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    request_id = str(uuid.uuid4()).encode()
    path = scope["path"]
    try:
        if path.startswith("/v2/models/"):
            return await handle_model(scope, receive, send, request_id)
        if path in ("/v2/health/live", "/v2/health/ready"):
            return await health(path, send, request_id)
        if path == "/v2":
            return await send_response(send, 200, SERVER_METADATA,
                                       [(b"content-type", JSON_TYPE), (b"x-request-id", request_id)])
        raise GatewayError(404, "not_found", f"No such endpoint: {path}")
    except GatewayError as exc:
        await send_response(send, *error_response(exc, request_id))

"""The gateway's KServe v2 gRPC service, `inference.GRPCInferenceService` as tritonclient.grpc
speaks it, served by each gateway process on the HTTP gateway's event loop (the port is
shared by the worker processes through SO_REUSEPORT).

A model RPC (ModelInfer, ModelMetadata, ModelReady) takes the same path as over HTTP,
through gateway/core.py: the API key from the `authorization: Bearer <key>` or `x-api-key`
metadata, one `admit`, the deployment's Triton server over a pooled gRPC channel (the
replica with the fewest requests outstanding, HTTP's and gRPC's alike), and the usage
event written by `finish` before the response leaves. Refusals carry HTTP's messages and
their gRPC status (gateway/errors.py KINDS), and usage events record the HTTP status, so
one meter counts both protocols.

Messages stay bytes. Every model RPC's request holds the model name in field 1 and the
version in field 2, and ModelInferResponse and ModelMetadataResponse hold the name in
field 1: the gateway walks the message's top-level fields (a handful of tags whatever the
tensor sizes) and swaps field 1 between the tenant's name and Triton's, never decoding or
re-encoding tensors.

Metadata: x-request-id, the rate-limit fields and x-quota-warning in the initial metadata
of every model RPC; a refusal's retry hints (retry-after in seconds, x-should-retry,
x-ratelimit-*) in its trailing metadata."""
import asyncio
import logging
import time
import uuid

import grpc
from grpc import aio
from tritonclient.grpc import service_pb2

from gateway import config
from gateway.admission import Admitted, Completion
from gateway.core import SERVER_METADATA, Core
from gateway.errors import GatewayError, Unreached, internal_error, unrecorded
from gateway.signature import Signature

log = logging.getLogger("gateway.grpc")
SERVICE = "inference.GRPCInferenceService"
MODEL_RPCS = {"infer": "ModelInfer", "metadata": "ModelMetadata", "ready": "ModelReady"}
SERVED = ("ServerLive", "ServerReady", "ServerMetadata", *MODEL_RPCS.values())
Code = grpc.StatusCode
# Triton's answers that are the caller's fault; the caller gets Triton's code, metering 400.
CALLER_FAULTS = {Code.INVALID_ARGUMENT, Code.OUT_OF_RANGE, Code.FAILED_PRECONDITION, Code.ALREADY_EXISTS,
                 Code.UNIMPLEMENTED}

SERVER_OPTIONS = [
    ("grpc.so_reuseport", 1),
    ("grpc.max_receive_message_length", config.MAX_BODY_BYTES),
    ("grpc.max_send_message_length", -1),
]
UPSTREAM_OPTIONS = [
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
    # A connection attempt gives up after the connect timeout (gRPC's default is 20 s), and a
    # server that comes back is tried again within as long.
    ("grpc.min_reconnect_backoff_ms", int(config.UPSTREAM_CONNECT_TIMEOUT_S * 1000)),
    ("grpc.max_reconnect_backoff_ms", int(config.UPSTREAM_CONNECT_TIMEOUT_S * 1000)),
]

LIVE = service_pb2.ServerLiveResponse(live=True).SerializeToString()
READY = service_pb2.ServerReadyResponse(ready=True).SerializeToString()
NOT_READY = service_pb2.ServerReadyResponse(ready=False).SerializeToString()
MODEL_NOT_READY = service_pb2.ModelReadyResponse(ready=False).SerializeToString()
SERVER = service_pb2.ServerMetadataResponse(**SERVER_METADATA).SerializeToString()


async def abort(context, exc: GatewayError) -> None:
    """End the RPC with the error: its gRPC status, its message, its retry hints as trailing metadata."""
    trailing = [(name.decode(), value.decode()) for name, value in exc.headers]
    if exc.retry_after:
        trailing.append(("retry-after", exc.retry_after))
    await context.abort(Code[exc.grpc], exc.message, tuple(trailing))


def api_key(metadata) -> str:
    authorization = x_api_key = None
    for name, value in metadata or ():
        if name == "authorization":
            authorization = value
        elif name == "x-api-key":
            x_api_key = value.strip()
    if authorization is None:
        if x_api_key:
            return x_api_key
        raise GatewayError("Missing API key: send the metadata 'authorization: Bearer <api key>' (or "
                           "'x-api-key: <api key>').", code="unauthenticated")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise GatewayError("Malformed authorization metadata: use 'Bearer <api key>'.", code="unauthenticated")
    return token


# The protobuf wire format, as far as the gateway reads it ---------------------------------

class WireError(ValueError):
    pass


def read_varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7
        if shift >= 64:
            raise WireError("varint too long")


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


class Fields:
    """Where a KServe v2 message's top-level fields lie. For a ModelInferRequest: inputs
    (field 5), requested outputs (6) and raw_input_contents (7) as (start, stop) spans."""

    __slots__ = ("name", "version", "name_spans", "inputs", "outputs", "raw")

    def __init__(self):
        self.name, self.version, self.name_spans = "", "", []
        self.inputs, self.outputs, self.raw = [], [], []


def model_fields(message: bytes) -> Fields:
    """The model name (field 1) and version (field 2) of a KServe v2 message, where each
    field 1 lies (a parser keeps the last of repeated ones, so a rename replaces them
    all), and the spans of fields 5 to 7."""
    fields = Fields()
    name = version = b""
    spans = {5: fields.inputs, 6: fields.outputs, 7: fields.raw}
    position, end = 0, len(message)
    try:
        while position < end:
            start = position
            tag, position = read_varint(message, position)
            number, wire_type = tag >> 3, tag & 7
            if number == 0:
                raise WireError("field number 0")
            if wire_type == 2:
                length, value = read_varint(message, position)
                position = value + length
                if number == 1:
                    name = message[value:position]
                    fields.name_spans.append((start, position))
                elif number == 2:
                    version = message[value:position]
                elif number in spans:
                    spans[number].append((value, position))
            elif wire_type == 0:
                _, position = read_varint(message, position)
            elif wire_type == 1:
                position += 8
            elif wire_type == 5:
                position += 4
            else:
                raise WireError(f"wire type {wire_type}")
        if position != end:
            raise WireError("the message is truncated")
        fields.name, fields.version = name.decode(), version.decode()
        return fields
    except IndexError:
        raise WireError("the message is truncated") from None
    except UnicodeDecodeError:
        raise WireError("the model name or version is not UTF-8") from None


def infer_check(checked: Signature, request: bytes, fields: Fields) -> None:
    """A ModelInferRequest against its deployment's signature (gateway/signature.py)."""
    checked.check_grpc([request[a:b] for a, b in fields.inputs], [request[a:b] for a, b in fields.outputs],
                       [b - a for a, b in fields.raw], config.MAX_BODY_BYTES)


def renamed(message: bytes, name_spans: list[tuple[int, int]], name: str) -> bytes:
    """The message with `name` as its field 1, in one copy."""
    encoded = name.encode()
    parts = [b"\x0a" + encode_varint(len(encoded)) + encoded]
    view, position = memoryview(message), 0
    for start, stop in name_spans:
        parts.append(view[position:start])
        position = stop
    parts.append(view[position:])
    return b"".join(parts)


# The service ------------------------------------------------------------------------------

def unreachable(exc: aio.AioRpcError) -> bool:
    """The server could not be connected to at all (its process is gone)."""
    details = (exc.details() or "").lower()
    return exc.code() == Code.UNAVAILABLE and ("failed to connect" in details or "connection refused" in details)


class InferenceService(grpc.GenericRpcHandler):
    def __init__(self, core: Core):
        self.core = core
        self.channels: dict[str, aio.Channel] = {}
        self.upstream_calls: dict[tuple[str, str], aio.UnaryUnaryMultiCallable] = {}
        unary = grpc.unary_unary_rpc_method_handler
        self.handlers = {
            f"/{SERVICE}/ServerLive": unary(self.server_live),
            f"/{SERVICE}/ServerReady": unary(self.server_ready),
            f"/{SERVICE}/ServerMetadata": unary(self.server_metadata),
            f"/{SERVICE}/ModelInfer": unary(self.model_infer),
            f"/{SERVICE}/ModelMetadata": unary(self.model_metadata),
            f"/{SERVICE}/ModelReady": unary(self.model_ready),
            f"/{SERVICE}/ModelStreamInfer": grpc.stream_stream_rpc_method_handler(self.model_stream_infer),
        }

    def service(self, handler_call_details):
        method = handler_call_details.method
        handler = self.handlers.get(method)
        if handler is None and method.startswith(f"/{SERVICE}/"):
            return grpc.unary_unary_rpc_method_handler(unsupported(method.rpartition("/")[2]))
        return handler

    async def server_live(self, request: bytes, context) -> bytes:
        return LIVE

    async def server_ready(self, request: bytes, context) -> bytes:
        try:
            await self.core.admission.ping()
        except GatewayError:
            return NOT_READY
        return READY

    async def server_metadata(self, request: bytes, context) -> bytes:
        return SERVER

    async def model_infer(self, request: bytes, context) -> bytes:
        return await self.model_rpc("infer", request, context)

    async def model_metadata(self, request: bytes, context) -> bytes:
        return await self.model_rpc("metadata", request, context)

    async def model_ready(self, request: bytes, context) -> bytes:
        return await self.model_rpc("ready", request, context)

    async def model_stream_infer(self, requests, context) -> None:
        await context.abort(Code.UNIMPLEMENTED, "Streaming inference (ModelStreamInfer) is not served by this "
                                                "gateway: send each request with ModelInfer.")

    async def model_rpc(self, endpoint: str, request: bytes, context) -> bytes:
        started = time.perf_counter()
        request_id = str(uuid.uuid4())
        metadata = [("x-request-id", request_id)]
        admission = self.core.admission
        try:
            raw_key = api_key(context.invocation_metadata())
            try:
                fields = model_fields(request)
            except WireError as exc:
                raise GatewayError(f"The request is not a valid {MODEL_RPCS[endpoint]} message: {exc}.",
                                   code="invalid_request") from None
            name, version = fields.name, fields.version
            if not name:
                raise GatewayError("The request names no model.", code="invalid_request")
            admitted = await admission.admit(raw_key, name, len(request), request_id, endpoint == "infer")
        except GatewayError as exc:
            await context.send_initial_metadata(metadata)
            await abort(context, exc)

        # From here on the request is admitted and is metered whatever happens.
        metadata += [(field.decode(), value.decode()) for field, value in admitted.rate_headers()]
        if admitted.flags:
            metadata.append(("x-quota-warning", admitted.flags))
        status, response, upstream_ms, failure = 200, b"", None, None
        try:
            await context.send_initial_metadata(metadata)
            response, upstream_ms = await self.forward(admitted, endpoint, name, version, request, fields)
        except GatewayError as exc:
            status = exc.status
            if endpoint == "ready" and status == 503:
                response = MODEL_NOT_READY  # a question with a yes/no answer: not ready is "no"
            else:
                failure = exc
        except asyncio.CancelledError:
            # The caller gave up (cancelled, or its deadline passed): record that, release the leases.
            admission.finish_then(Completion(admitted, name, "grpc", endpoint, 499, started, None, len(request), 0),
                                  ignore)
            raise
        except Exception:
            # Still completed, or this process would renew the request's leases for ever.
            log.exception("%s request %s failed in the gateway", MODEL_RPCS[endpoint], request_id)
            status, failure = 500, internal_error(f"The gateway failed on request {request_id}.")

        bytes_out = len(failure.message.encode()) if failure else len(response)
        completion = Completion(admitted, name, "grpc", endpoint, status, started, upstream_ms, len(request),
                                bytes_out)
        # The usage is written to Redis before the handler returns and gRPC sends the answer.
        recorded = asyncio.get_running_loop().create_future()
        admission.finish_then(completion, recorded.set_result)
        if not await recorded:
            failure = unrecorded()
        if failure is not None:
            await abort(context, failure)
        return response

    async def forward(self, admitted: Admitted, endpoint: str, name: str, version: str, request: bytes,
                      fields: Fields) -> tuple[bytes, float]:
        """Send the request to the deployment's Triton server under Triton's name: the response
        in the caller's name, and the milliseconds Triton took."""
        core = self.core
        if endpoint == "infer":
            core.check(admitted, name, infer_check, request, fields)
        await core.ready(admitted, name, hold=endpoint != "ready")
        if not admitted.grpc_url:
            raise GatewayError(f"Deployment '{name}' is served without a gRPC endpoint; use the HTTP API.",
                               code="no_grpc_endpoint")
        upstream = renamed(request, fields.name_spans, admitted.triton_model)
        upstream_started = time.perf_counter()
        try:
            # A caller's own deadline cancels this handler, and with it the upstream call.
            response = await core.send(name, admitted.grpc_url, self.call_triton, endpoint, upstream)
        except aio.AioRpcError as exc:
            raise self.upstream_failure(admitted, exc, name, version) from None
        upstream_ms = (time.perf_counter() - upstream_started) * 1000
        if endpoint != "ready":
            try:
                response = renamed(response, model_fields(response).name_spans, name)
            except WireError as exc:
                raise GatewayError(f"The inference server's answer is malformed: {exc}.", code="upstream_error",
                                   grpc="INTERNAL") from None
        return response, upstream_ms

    async def call_triton(self, target: str, endpoint: str, message: bytes) -> bytes:
        """One call to a Triton server; Unreached when it cannot be connected to."""
        call = self.upstream_calls.get((target, endpoint))
        if call is None:
            channel = self.channels.get(target)
            if channel is None:
                channel = self.channels[target] = aio.insecure_channel(target, options=UPSTREAM_OPTIONS)
            call = self.upstream_calls[(target, endpoint)] = channel.unary_unary(f"/{SERVICE}/{MODEL_RPCS[endpoint]}")
        try:
            return await call(message, timeout=config.UPSTREAM_TIMEOUT_S)
        except aio.AioRpcError as exc:
            if unreachable(exc):
                raise Unreached(exc.details()) from None
            raise

    def upstream_failure(self, admitted: Admitted, exc: aio.AioRpcError, name: str, version: str) -> GatewayError:
        """Translate a Triton error into what the caller can act on, in the caller's names
        (the gRPC counterpart of gateway.http_api.upstream_failure)."""
        code = exc.code()
        message = (exc.details() or "").replace(admitted.triton_model, name)
        failure = self.core.triton_refusal(admitted, name, version, message, missing=code == Code.NOT_FOUND)
        if failure is not None:
            return failure
        if code in CALLER_FAULTS:
            return GatewayError(message, code="invalid_input", grpc=code.name)
        if code in (Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED):
            return GatewayError(f"The inference server did not answer: {message}", code="upstream_error",
                                grpc=code.name)
        if message.startswith("Unable to parse"):
            return GatewayError(f"The inference request is malformed: {message}", code="invalid_input")
        return GatewayError(f"The inference server failed ({code.name}): {message}", code="upstream_error",
                            grpc="INTERNAL")


def ignore(recorded: bool) -> None:
    """A completion's write whose outcome nobody waits for."""


def unsupported(rpc: str):
    async def answer(request: bytes, context) -> None:
        await context.abort(Code.UNIMPLEMENTED, f"{rpc} is not served by this gateway; it serves "
                                                f"{', '.join(SERVED)}.")
    return answer


async def grpc_start(core: Core, host: str, port: int) -> aio.Server:
    """Serve the KServe v2 gRPC protocol on host:port from this event loop."""
    server = aio.server(options=SERVER_OPTIONS)
    server.add_generic_rpc_handlers((InferenceService(core),))
    server.add_insecure_port(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    await server.start()
    return server

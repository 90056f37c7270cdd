"""The gateway as an ASGI application, `gateway.asgi:app`, for any ASGI server. `python -m
gateway` serves the same requests (gateway/http_api.py) through its own HTTP server
(gateway/server.py), which writes each response in one system call right after its usage
record; here the response is sent once its usage record is written."""
import asyncio
import uuid

from gateway import config, lifecycle
from gateway.core import core
from gateway.errors import GatewayError
from gateway.http_api import error_response, process, unrecorded_answer


async def read_body(receive) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise GatewayError("The client closed the connection before sending its request.", code="client_closed")
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > config.MAX_BODY_BYTES:
                raise GatewayError(f"The request body exceeds the {config.MAX_BODY_BYTES} byte limit.",
                                   code="payload_too_large")
            chunks.append(chunk)
        if not message.get("more_body"):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def send_response(send, status: int, body: bytes, headers: list) -> None:
    # An explicit length spares the server the chunked encoding it falls back to without one;
    # a 204 (a CORS preflight's answer) has no body and must not say its length.
    if status != 204:
        headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def lifespan(receive, send) -> None:
    grpc_server = None
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            grpc_server = await lifecycle.startup()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await lifecycle.shutdown(grpc_server)
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope, receive, send):
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
        core.admission.finish_then(answer.completion, recorded.set_result)
        if not await recorded:
            answer = unrecorded_answer(request_id)
    await send_response(send, answer.status, answer.body, answer.headers)

"""The gateway's own HTTP/1.1 server: asyncio protocols, httptools, uvloop.

It serves `gateway.http_api.process` and does little else: keep-alive connections, requests
answered in order (pipelining allowed), bodies bounded by GATEWAY_MAX_BODY_BYTES. Two
things an ASGI server cannot do are why it exists (measured with `make bench-gateway`):
- a response leaves in one write (status line, headers and body), where an ASGI server
  writes the head and the body apart: on loopback TCP each write costs the sender the
  receiver's network processing too;
- an admitted request's response is written in the same callback as its usage record's
  write to Redis (Admission.finish_then), so no other work runs between the two.

Its processes (one, or a parent keeping `--workers` of them serving the same ports) are
gateway/processes.py's."""
import asyncio
import logging
import uuid

import httptools

from gateway import config
from gateway.core import core
from gateway.errors import GatewayError, internal_error
from gateway.http_api import error_response, process, unrecorded_answer

log = logging.getLogger("gateway.server")
REASONS = {200: b"OK", 204: b"No Content", 400: b"Bad Request", 401: b"Unauthorized", 403: b"Forbidden",
           404: b"Not Found", 405: b"Method Not Allowed", 408: b"Request Timeout", 413: b"Payload Too Large",
           414: b"URI Too Long", 429: b"Too Many Requests", 431: b"Request Header Fields Too Large",
           499: b"Client Closed Request", 500: b"Internal Server Error", 502: b"Bad Gateway",
           503: b"Service Unavailable"}
# Request headers `process` reads; the others are not kept.
KEPT = frozenset((b"authorization", b"content-type", b"inference-header-content-length", b"origin"))
MAX_QUEUED = 32  # pipelined requests held per connection before reading pauses
# A request line is its method, its target and " HTTP/1.1" after a space; the shortest method is 3 bytes.
LINE_OVERHEAD = len(b"  HTTP/1.1")
SHORTEST_LINE_OVERHEAD = LINE_OVERHEAD + len(b"GET")
# After refusing a request mid-stream the gateway ends its side and discards what still comes
# this long before closing: closing with unread data sends a reset, which can destroy the
# response before the client has read it.
LINGER_S = 2.0


class StopParsing(Exception):
    """Raised from a parser callback once the request is refused: httptools stops there."""


class Request:
    """A request read off a connection, queued to be answered in order; `refusal`, when
    set, is answered in its place (the request broke a limit)."""

    __slots__ = ("method", "path", "headers", "body", "refusal", "keep_alive")

    def __init__(self, method: str, path: str, headers: list, body: bytes, refusal: GatewayError | None,
                 keep_alive: bool):
        self.method, self.path, self.headers, self.body = method, path, headers, body
        self.refusal, self.keep_alive = refusal, keep_alive


def payload_too_large() -> GatewayError:
    return GatewayError(f"The request body exceeds the {config.MAX_BODY_BYTES} byte limit.", code="payload_too_large")


def request_line_too_long() -> GatewayError:
    return GatewayError(f"The request line (method, target and version) exceeds the {config.MAX_REQUEST_LINE_BYTES} "
                        "byte limit; send long parameters in the body.", code="request_line_too_long")


def header_fields_too_large() -> GatewayError:
    return GatewayError(f"The request's header fields exceed the {config.MAX_HEADER_BYTES} byte limit, all of them "
                        "together or any one alone.", code="header_fields_too_large")


def too_many_headers() -> GatewayError:
    return GatewayError(f"The request has more header fields than the limit of {config.MAX_HEADERS}.",
                        code="too_many_headers")


def header_timeout() -> GatewayError:
    return GatewayError(f"The request's headers were not complete within {config.HEADER_TIMEOUT_S:g} s of its first "
                        "byte; send the request line and headers at once.", code="header_timeout")


def response_bytes(status: int, headers: list, body: bytes, keep_alive: bool) -> bytes:
    head = [b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b"Unknown"))]
    for name, value in headers:
        head.append(name + b": " + value + b"\r\n")
    if status != 204:  # a CORS preflight's answer, which has no body and must not say its length
        head.append(b"content-length: %d\r\n" % len(body))
    if not keep_alive:
        head.append(b"connection: close\r\n")
    head.append(b"\r\n")
    head.append(body)
    return b"".join(head)


class HttpProtocol(asyncio.Protocol):
    def __init__(self, connections: set):
        self.connections = connections
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: list = []
        self.body: list = []
        self.size = 0
        self.too_large = False
        self.queue: list = []
        self.expect_continue = False
        self.last_active = 0.0
        self.busy = False
        self.closing = False
        self.loop: asyncio.AbstractEventLoop | None = None
        # The head (request line and headers) being read: when it began, its size, its timer.
        self.in_head = False
        self.head_started = 0.0
        self.head_streamed = 0
        self.header_bytes = 0
        self.header_count = 0
        self.header_timer: asyncio.TimerHandle | None = None
        self.refused = False  # a request was refused: nothing more is parsed on this connection

    # asyncio.Protocol

    def connection_made(self, transport):
        self.transport = transport
        self.connections.add(self)
        self.loop = asyncio.get_running_loop()
        self.last_active = self.loop.time()

    def data_received(self, data):
        if self.refused:
            return
        self.last_active = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "Protocol upgrades are not supported.")
        except httptools.HttpParserError as exc:
            if not self.refused:
                self._fail(400, f"Malformed HTTP request: {exc}")
        else:
            if self.in_head:
                self._head_continues(len(data))

    def connection_lost(self, exc):
        self.closing = True
        self.connections.discard(self)
        if self.header_timer is not None:
            self.header_timer.cancel()

    # httptools callbacks

    def on_message_begin(self):
        self.url, self.headers, self.body, self.size, self.too_large = b"", [], [], 0, False
        self.expect_continue = False
        self.in_head, self.head_started, self.head_streamed, self.header_bytes, self.header_count = (
            True, self.last_active, 0, 0, 0)

    def on_url(self, url: bytes):
        self.url += url
        # get_method() builds a bytes object: asked only of targets long enough to matter.
        if len(self.url) > config.MAX_REQUEST_LINE_BYTES - SHORTEST_LINE_OVERHEAD and (
                len(self.url) + LINE_OVERHEAD + len(self.parser.get_method()) > config.MAX_REQUEST_LINE_BYTES):
            self._refuse(request_line_too_long())
            raise StopParsing

    def on_header(self, name: bytes, value: bytes):
        self.header_bytes += len(name) + len(value) + 4  # ": " and CRLF
        self.header_count += 1
        if self.header_bytes > config.MAX_HEADER_BYTES:
            self._refuse(header_fields_too_large())
            raise StopParsing
        if self.header_count > config.MAX_HEADERS:
            self._refuse(too_many_headers())
            raise StopParsing
        name = name.lower()
        if name in KEPT:
            self.headers.append((name, value))
        elif name == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True

    def on_headers_complete(self):
        self.in_head = False
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None
        # curl, for one, waits a second for this before sending a body over 1 KiB.
        if self.expect_continue:
            self.expect_continue = False
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes):
        self.size += len(body)
        if self.size > config.MAX_BODY_BYTES:
            self.too_large = True
            self.body = []
        elif not self.too_large:
            self.body.append(body)

    def on_message_complete(self):
        parsed = httptools.parse_url(self.url)
        self._enqueue(Request(self.parser.get_method().decode("latin-1"), parsed.path.decode("latin-1"), self.headers,
                              b"".join(self.body) if len(self.body) != 1 else self.body[0],
                              payload_too_large() if self.too_large else None, self.parser.should_keep_alive()))

    # limits on the head

    def _head_continues(self, received: int) -> None:
        """The head goes on past the data just parsed: time it from its first byte, and bound what
        httptools buffers of it (it hands a header over only once the header is complete). The
        first chunk is not counted: it may end a previous request; later ones are all head."""
        if self.header_timer is None:
            self.header_timer = self.loop.call_at(self.head_started + config.HEADER_TIMEOUT_S, self._header_timeout)
            return
        self.head_streamed += received
        if self.head_streamed > config.MAX_REQUEST_LINE_BYTES + config.MAX_HEADER_BYTES:
            self._refuse(header_fields_too_large())

    def _header_timeout(self) -> None:
        self.header_timer = None
        if len(self.queue) > MAX_QUEUED:  # the gateway paused reading, not the client
            self.header_timer = self.loop.call_later(config.HEADER_TIMEOUT_S, self._header_timeout)
            return
        self._refuse(header_timeout())

    def _refuse(self, exc: GatewayError) -> None:
        """Answer the request being read with `exc` after the requests before it, then close."""
        self.refused = True
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None
        self._enqueue(Request("", "", [], b"", exc, False))

    # serving

    def _enqueue(self, request: Request) -> None:
        self.queue.append(request)
        if len(self.queue) > MAX_QUEUED:
            self.transport.pause_reading()
        if not self.busy:
            self.busy = True
            asyncio.ensure_future(self._serve_queue())

    async def _serve_queue(self) -> None:
        try:
            while self.queue and not self.closing:
                request = self.queue.pop(0)
                if len(self.queue) == MAX_QUEUED:
                    self.transport.resume_reading()
                await self._serve(request)
        finally:
            self.busy = False

    async def _serve(self, request: Request) -> None:
        request_id = str(uuid.uuid4()).encode()
        if request.refusal is not None:
            status, payload, response_headers = error_response(request.refusal, request_id)
            return self._write(response_bytes(status, response_headers, payload, False), False)
        keep_alive = request.keep_alive
        try:
            answer = await process(request.method, request.path, request.headers, request.body, request_id)
        except Exception:
            log.exception("request %s failed in the gateway", request_id.decode())
            status, payload, response_headers = error_response(internal_error(), request_id)
            return self._write(response_bytes(status, response_headers, payload, False), False)
        if answer.completion is None:
            return self._write(response_bytes(answer.status, answer.headers, answer.body, keep_alive), keep_alive)

        written = asyncio.get_running_loop().create_future()

        def after_record(recorded: bool) -> None:
            final = answer if recorded else unrecorded_answer(request_id)
            self._write(response_bytes(final.status, final.headers, final.body, keep_alive), keep_alive)
            written.set_result(None)

        # The response is written by the callback that writes its usage record to Redis.
        core.admission.finish_then(answer.completion, after_record)
        await written

    def _write(self, data: bytes, keep_alive: bool) -> None:
        if self.closing:
            return
        self.last_active = self.loop.time()
        self.transport.write(data)
        if not keep_alive:
            self.closing = True
            if self.refused:
                # The client may still be sending: closing with unread data sends a reset, which
                # can destroy the response before it is read. End this side, discard, close later.
                self.transport.write_eof()
                self.loop.call_later(LINGER_S, self.transport.close)
            else:
                self.transport.close()

    def _fail(self, status: int, message: str) -> None:
        self._refuse(GatewayError(message, code="invalid_request", status=status))


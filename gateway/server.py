"""The gateway's own HTTP/1.1 server: asyncio protocols, httptools, uvloop.

It serves `gateway.app.process` and does little else: keep-alive connections, requests
answered in order (pipelining allowed), bodies bounded by GATEWAY_MAX_BODY_BYTES. Two
things an ASGI server cannot do are why it exists (measured with `make bench-gateway`):
- a response leaves in one write (status line, headers and body), where an ASGI server
  writes the head and the body apart: on loopback TCP each write costs the sender the
  receiver's network processing too;
- an admitted request's response is written in the same callback as its usage record's
  write to Redis (Admission.finish_then), so no other work runs between the two.

`serve(host, port, workers)` runs `workers` processes sharing the port (SO_REUSEPORT);
SIGTERM or SIGINT stops accepting, lets requests in flight finish (up to 10 s), then
closes the gateway's connections. Keep-alive connections idle for GATEWAY_IDLE_TIMEOUT_S are closed."""
import asyncio
import logging
import os
import signal
import socket
import uuid

import httptools
import uvloop

from gateway import config
from gateway.app import GatewayError, error_response, gateway, process, unrecorded

log = logging.getLogger("gateway.server")
REASONS = {200: b"OK", 400: b"Bad Request", 401: b"Unauthorized", 403: b"Forbidden", 404: b"Not Found",
           405: b"Method Not Allowed", 413: b"Payload Too Large", 429: b"Too Many Requests",
           499: b"Client Closed Request", 500: b"Internal Server Error", 502: b"Bad Gateway",
           503: b"Service Unavailable"}
# Request headers `process` reads; the others are not kept.
KEPT = frozenset((b"authorization", b"content-type", b"inference-header-content-length"))
MAX_QUEUED = 32  # pipelined requests held per connection before reading pauses


def response_bytes(status: int, headers: list, body: bytes, keep_alive: bool) -> bytes:
    head = [b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b"Unknown"))]
    for name, value in headers:
        head.append(name + b": " + value + b"\r\n")
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

    # asyncio.Protocol

    def connection_made(self, transport):
        self.transport = transport
        self.connections.add(self)
        self.last_active = asyncio.get_running_loop().time()

    def data_received(self, data):
        self.last_active = asyncio.get_running_loop().time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "Protocol upgrades are not supported.")
        except httptools.HttpParserError as exc:
            self._fail(400, f"Malformed HTTP request: {exc}")

    def connection_lost(self, exc):
        self.closing = True
        self.connections.discard(self)

    # httptools callbacks

    def on_message_begin(self):
        self.url, self.headers, self.body, self.size, self.too_large = b"", [], [], 0, False
        self.expect_continue = False

    def on_url(self, url: bytes):
        self.url += url

    def on_header(self, name: bytes, value: bytes):
        name = name.lower()
        if name in KEPT:
            self.headers.append((name, value))
        elif name == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True

    def on_headers_complete(self):
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
        request = (self.parser.get_method().decode("latin-1"), parsed.path.decode("latin-1"), self.headers,
                   b"".join(self.body) if len(self.body) != 1 else self.body[0], self.too_large,
                   self.parser.should_keep_alive())
        self.queue.append(request)
        if len(self.queue) > MAX_QUEUED:
            self.transport.pause_reading()
        if not self.busy:
            self.busy = True
            asyncio.ensure_future(self._serve_queue())

    # serving

    async def _serve_queue(self) -> None:
        try:
            while self.queue and not self.closing:
                method, path, headers, body, too_large, keep_alive = self.queue.pop(0)
                if len(self.queue) == MAX_QUEUED:
                    self.transport.resume_reading()
                await self._serve(method, path, headers, body, too_large, keep_alive)
        finally:
            self.busy = False

    async def _serve(self, method, path, headers, body, too_large, keep_alive) -> None:
        request_id = str(uuid.uuid4()).encode()
        if too_large:
            exc = GatewayError(413, "payload_too_large", f"The request body exceeds the {config.MAX_BODY_BYTES} "
                                                          "byte limit.")
            status, payload, response_headers = error_response(exc, request_id)
            return self._write(response_bytes(status, response_headers, payload, False), False)
        try:
            answer = await process(method, path, headers, body, request_id)
        except Exception:
            log.exception("request %s failed in the gateway", request_id.decode())
            status, payload, response_headers = error_response(
                GatewayError(500, "internal_error", "The gateway failed on this request; retry it."), request_id)
            return self._write(response_bytes(status, response_headers, payload, False), False)
        if answer.completion is None:
            return self._write(response_bytes(answer.status, answer.headers, answer.body, keep_alive), keep_alive)

        written = asyncio.get_running_loop().create_future()

        def after_record(recorded: bool) -> None:
            final = answer if recorded else unrecorded(request_id)
            self._write(response_bytes(final.status, final.headers, final.body, keep_alive), keep_alive)
            written.set_result(None)

        # The response is written by the callback that writes its usage record to Redis.
        gateway.admission.finish_then(*answer.completion, after_record)
        await written

    def _write(self, data: bytes, keep_alive: bool) -> None:
        if self.closing:
            return
        self.last_active = asyncio.get_running_loop().time()
        self.transport.write(data)
        if not keep_alive:
            self.closing = True
            self.transport.close()

    def _fail(self, status: int, message: str) -> None:
        exc = GatewayError(status, "invalid_request", message)
        status, payload, headers = error_response(exc, str(uuid.uuid4()).encode())
        self._write(response_bytes(status, headers, payload, False), False)


async def run_process(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    connections: set = set()
    await gateway.startup()
    server = await loop.create_server(lambda: HttpProtocol(connections), sock=sock, backlog=2048)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    sweeper = loop.create_task(close_idle(connections))
    await stop.wait()
    sweeper.cancel()
    server.close()
    deadline = loop.time() + 10
    while any(c.busy for c in connections) and loop.time() < deadline:
        await asyncio.sleep(0.05)
    for connection in list(connections):
        connection.transport.close()
    await gateway.shutdown()


async def close_idle(connections: set) -> None:
    """Close keep-alive connections that have had nothing in progress for GATEWAY_IDLE_TIMEOUT_S."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(config.IDLE_TIMEOUT_S / 3)
        cutoff = loop.time() - config.IDLE_TIMEOUT_S
        for connection in list(connections):
            if not connection.busy and not connection.queue and connection.last_active < cutoff:
                connection.closing = True
                connection.transport.close()


def listening_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def serve(host: str, port: int, workers: int) -> None:
    """Serve until SIGTERM/SIGINT: in this process, or in `workers` forked ones."""
    if workers <= 1:
        uvloop.run(run_process(listening_socket(host, port)))
        return
    children = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            try:
                uvloop.run(run_process(listening_socket(host, port)))
            finally:
                os._exit(0)
        children.append(pid)

    def forward(signum, _frame):
        for child in children:
            try:
                os.kill(child, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        while True:
            try:
                os.waitpid(child, 0)
                break
            except ChildProcessError:
                break
            except InterruptedError:
                continue

"""A small pooled HTTP/1.1 client for talking to Triton, on asyncio protocols and httptools.

Measured on the 2-core development machine, aiohttp's ClientSession spent about a quarter
of the gateway's CPU per forwarded request (request objects, timers, header multidicts);
this client writes one pre-joined request and lets httptools (the parser uvicorn already
uses) frame the answer, keeping only the two headers the gateway forwards. Connections are
kept alive per Triton server and reused; a response that is malformed, late or cut off
closes its connection."""
import asyncio
from urllib.parse import urlsplit

import httptools

from gateway.errors import Unreached

# The response headers the gateway passes on.
CONTENT_TYPE = b"content-type"
HEADER_LENGTH = b"inference-header-content-length"
_KEPT_HEADERS = frozenset((CONTENT_TYPE, HEADER_LENGTH))
# Larger bodies go out as two buffers instead of being copied into one.
_JOIN_LIMIT = 64 * 1024


class UpstreamError(Exception):
    """Triton did not answer: reset, malformed or timed out. A server that refused the
    connection, or closed it before any byte of an answer (on a reused keep-alive
    connection that means the request was never processed), raises Unreached instead."""


class UpstreamResponse:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: dict, body: bytes):
        self.status, self.headers, self.body = status, headers, body


class _Connection(asyncio.Protocol):
    """One keep-alive connection, one request in flight at a time."""

    def __init__(self, idle: list):
        self.idle = idle
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future | None = None
        self.closed = False
        self.answered = False
        self.headers: dict = {}
        self.chunks: list = []

    # asyncio.Protocol

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.answered = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"malformed response from the inference server: {exc}"))
            self.transport.close()

    def connection_lost(self, exc):
        self.closed = True
        if self in self.idle:
            self.idle.remove(self)
        error = Unreached if not self.answered else UpstreamError
        self._fail(error(f"the inference server closed the connection{f': {exc}' if exc else ''}"))

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes):
        name = name.lower()
        if name in _KEPT_HEADERS:
            self.headers[name] = value

    def on_body(self, body: bytes):
        self.chunks.append(body)

    def on_message_complete(self):
        chunks = self.chunks
        response = UpstreamResponse(self.parser.get_status_code(), self.headers,
                                    chunks[0] if len(chunks) == 1 else b"".join(chunks))
        if not self.parser.should_keep_alive():
            self.transport.close()
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    # the pool's side

    def start(self, request: bytes, body: bytes, timeout: float) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        self.waiter = waiter = loop.create_future()
        self.answered = False
        self.headers, self.chunks = {}, []
        if len(body) <= _JOIN_LIMIT:
            self.transport.write(request + body)
        else:
            self.transport.writelines((request, body))
        timer = loop.call_later(timeout, self._time_out)
        waiter.add_done_callback(lambda _: timer.cancel())
        return waiter

    def _time_out(self):
        self._fail(UpstreamError("the inference server did not answer in time"))
        self.transport.close()

    def _fail(self, exc: Exception):
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


class UpstreamPool:
    def __init__(self, *, timeout: float, connect_timeout: float, max_idle: int = 512):
        self.timeout, self.connect_timeout, self.max_idle = timeout, connect_timeout, max_idle
        self.idle: dict[str, list[_Connection]] = {}
        self.servers: dict[str, tuple[str, int, bytes]] = {}

    def _server(self, base_url: str) -> tuple[str, int, bytes]:
        server = self.servers.get(base_url)
        if server is None:
            parts = urlsplit(base_url)
            if parts.scheme != "http" or not parts.hostname:
                raise UpstreamError(f"unsupported inference server URL {base_url!r}")
            port = parts.port or 80
            server = (parts.hostname, port, f"Host: {parts.hostname}:{port}\r\n".encode())
            self.servers[base_url] = server
        return server

    async def _connect(self, base_url: str, host: str, port: int, idle: list) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(lambda: _Connection(idle), host, port)
        except (OSError, TimeoutError) as exc:
            raise Unreached(f"cannot connect to the inference server at {base_url}: "
                            f"{exc or type(exc).__name__}") from None
        return conn

    async def request(self, base_url: str, method: str, path: str, headers: bytes = b"",
                      body: bytes = b"") -> UpstreamResponse:
        """Send one request; `headers` are complete header lines (`Name: value\\r\\n`).
        Raises Unreached when the server was not reached, UpstreamError when it did not answer."""
        host, port, host_line = self._server(base_url)
        idle = self.idle.get(base_url)
        if idle is None:
            idle = self.idle[base_url] = []
        request = b"".join((method.encode(), b" ", path.encode(), b" HTTP/1.1\r\n", host_line, headers,
                            b"Content-Length: ", str(len(body)).encode(), b"\r\n\r\n"))
        while idle:
            conn = idle.pop()
            if conn.closed:
                continue
            try:
                return await self._exchange(conn, request, body, idle)
            except Unreached:
                pass  # a kept-alive connection the server had dropped: send once more on another
        conn = await self._connect(base_url, host, port, idle)
        return await self._exchange(conn, request, body, idle)

    async def _exchange(self, conn: _Connection, request: bytes, body: bytes, idle: list) -> UpstreamResponse:
        try:
            response = await conn.start(request, body, self.timeout)
        except BaseException:
            # Cancelled or failed mid-exchange: the connection's state is unknown.
            if not conn.closed:
                conn.transport.close()
            raise
        if not conn.closed and not conn.transport.is_closing():
            if len(idle) < self.max_idle:
                idle.append(conn)
            else:
                conn.transport.close()
        return response

    def close(self) -> None:
        for idle in self.idle.values():
            for conn in idle:
                conn.transport.close()
            idle.clear()

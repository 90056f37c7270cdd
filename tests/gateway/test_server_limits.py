"""Limits on a request's head at the gateway's HTTP/1.1 server, at the wire: the request
line, the header fields' size and count, and the time the head may take to arrive. A
refusal is a KServe error naming the limit, and the connection closes after it."""
import json
import os
import select
import signal
import socket
import time

import pytest

pytestmark = pytest.mark.integration

LINE_LIMIT, HEADER_BYTES_LIMIT, HEADERS_LIMIT = 8190, 16 * 1024, 100  # the defaults


def with_request_line(size: int) -> bytes:
    """A health check whose request line (without CRLF) is `size` bytes."""
    start, end = b"GET /v2/health/live?q=", b" HTTP/1.1"
    return start + b"a" * (size - len(start) - len(end)) + end + b"\r\nHost: x\r\n\r\n"


def with_header_bytes(size: int) -> bytes:
    """A health check whose header fields, each "Name: value" and CRLF, total `size` bytes."""
    fields = b"Host: x\r\n"
    return b"GET /v2/health/live HTTP/1.1\r\n" + fields + b"X-Fill: " + b"a" * (size - len(fields) - 10) + b"\r\n\r\n"


def with_headers(count: int) -> bytes:
    """A health check with `count` header fields, Host among them."""
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(count - 1))
    return b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n"


LIMITS = {
    "request line": (with_request_line, LINE_LIMIT, 414, "request_line_too_long"),
    "header bytes": (with_header_bytes, HEADER_BYTES_LIMIT, 431, "header_fields_too_large"),
    "header count": (with_headers, HEADERS_LIMIT, 431, "too_many_headers"),
}


class Wire:
    """A raw client connection that reads responses framed by content-length."""

    def __init__(self, port: int):
        self.conn = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.conn.close()

    def send(self, data: bytes, *, piece: int = 0, pause: float = 0.0, until_answered: bool = True) -> int:
        """Send `data`, at once or `piece` bytes at a time, by default stopping early once an
        answer arrives, as a client reading its socket would; returns the bytes sent."""
        if not piece:
            self.conn.sendall(data)
            return len(data)
        for offset in range(0, len(data), piece):
            if until_answered and select.select([self.conn], [], [], 0)[0]:
                return offset
            self.conn.sendall(data[offset:offset + piece])
            time.sleep(pause)
        return len(data)

    def response(self) -> tuple[int, dict, bytes]:
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.conn.recv(65536)
            assert chunk, "the connection closed before a response"
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers["content-length"])
        while len(self.buffer) < length:
            chunk = self.conn.recv(65536)
            assert chunk, "the connection closed inside a response"
            self.buffer += chunk
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(lines[0].split()[1]), headers, body

    def closed_after(self) -> bool:
        """Whether the gateway closes the connection with nothing more sent (within 5 s)."""
        self.conn.settimeout(5)
        while chunk := self.conn.recv(65536):
            self.buffer += chunk
        return self.buffer == b""

    def assert_refused(self, status: int, code: str, limit: str) -> None:
        answer, headers, body = self.response()
        error = json.loads(body)
        assert (answer, error["code"]) == (status, code)
        assert limit in error["error"]
        assert headers["x-request-id"] and headers["connection"] == "close"
        assert self.closed_after()

    def assert_served(self) -> None:
        answer, headers, body = self.response()
        assert answer == 200, body
        assert "connection" not in headers


@pytest.fixture(scope="module")
def quick_header_timeout(platform_stack):
    """The port of a gateway that gives a request's head one second to arrive."""
    proc, port = platform_stack.gateway_start("gateway-header-timeout", env={"GATEWAY_HEADER_TIMEOUT_S": "1"})
    yield port
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=15)


@pytest.mark.parametrize("limit", LIMITS)
def test_a_request_at_a_limit_is_served_and_the_connection_kept(platform_stack, limit):
    build, size, _, _ = LIMITS[limit]
    with Wire(platform_stack.gateway_port) as wire:
        for _ in range(2):
            wire.send(build(size))
            wire.assert_served()


@pytest.mark.parametrize("sending", ["at once", "in 1 KiB pieces"])
@pytest.mark.parametrize("limit, size", [
    ("request line", LINE_LIMIT + 1), ("request line", 9 * 1024),
    ("header bytes", HEADER_BYTES_LIMIT + 1), ("header bytes", 200_000),
    ("header count", HEADERS_LIMIT + 1), ("header count", 1000),
])
def test_a_request_past_a_limit_is_refused_and_the_connection_closed(platform_stack, limit, size, sending):
    build, limit_value, status, code = LIMITS[limit]
    with Wire(platform_stack.gateway_port) as wire:
        wire.send(build(size), piece=1024 if sending != "at once" else 0, pause=0.002)
        wire.assert_refused(status, code, str(limit_value))


def test_a_header_that_never_ends_is_refused_without_waiting_for_its_end(platform_stack):
    """httptools keeps a header until it is complete: the gateway bounds what it holds."""
    with Wire(platform_stack.gateway_port) as wire:
        sent = wire.send(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Endless: " + b"a" * 1_000_000,
                         piece=1024, pause=0.002)
        wire.assert_refused(431, "header_fields_too_large", str(HEADER_BYTES_LIMIT))
    assert sent < 100_000


def test_pipelined_requests_at_the_limits_are_served_and_a_refusal_ends_the_connection(platform_stack):
    good = with_headers(HEADERS_LIMIT) + with_header_bytes(HEADER_BYTES_LIMIT) + with_request_line(LINE_LIMIT)
    with Wire(platform_stack.gateway_port) as wire:
        wire.send(good + with_headers(HEADERS_LIMIT + 1) + good)
        for _ in range(3):
            wire.assert_served()
        wire.assert_refused(431, "too_many_headers", str(HEADERS_LIMIT))  # and nothing after it is answered


@pytest.mark.parametrize("slow_part", ["request line", "headers"])
def test_a_head_dribbled_past_the_header_timeout_is_408_and_closed(quick_header_timeout, slow_part):
    line, headers = b"GET /v2/health/live HTTP/1.1\r\n", b"Host: x\r\nX-Slow: " + b"a" * 40 + b"\r\n\r\n"
    with Wire(quick_header_timeout) as wire:
        if slow_part == "headers":
            wire.send(line)
        started = time.monotonic()
        sent = wire.send((line if slow_part == "request line" else b"") + headers, piece=1, pause=0.1)
        wire.assert_refused(408, "header_timeout", "1 s")
        elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 2.5 and sent < len(line) + len(headers)


def test_the_header_timeout_runs_from_a_requests_first_byte_to_its_last_header(quick_header_timeout):
    """Idle keep-alive time before a request, and a slow body after its head, are not its head."""
    with Wire(quick_header_timeout) as wire:
        for _ in range(2):
            time.sleep(1.5)  # idle: before the first request, then between requests
            wire.send(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n", piece=8, pause=0.1)  # 0.5 s in all
            wire.assert_served()
        wire.send(b"POST /v2/health/live HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n")
        time.sleep(1.5)
        wire.send(b"{}")
        wire.assert_served()
        wire.send(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer, headers, _ = wire.response()
        assert answer == 200 and headers["connection"] == "close" and wire.closed_after()


def test_a_pipelined_request_is_timed_from_its_own_first_byte(quick_header_timeout):
    """The second request begins in a write that ends the first; its head is complete 1.4 s
    after the first request's first byte, 0.65 s after its own, and it is served."""
    first = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
    second = b"GET /v2 HTTP/1.1\r\nHost: x\r\n\r\n"
    with Wire(quick_header_timeout) as wire:
        wire.send(first + second[:6], piece=8, pause=0.15, until_answered=False)  # the second begins at 0.75 s
        time.sleep(0.5)
        wire.send(second[6:])
        wire.assert_served()
        answer, _, body = wire.response()
        assert answer == 200 and json.loads(body)["name"] == "inference-platform-gateway"

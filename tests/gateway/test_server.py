"""The gateway's HTTP/1.1 server at the wire: keep-alive, pipelining, malformed requests,
body limits, several processes, and a graceful stop."""
import json
import os
import signal
import socket
import threading
import time

import pytest

from tenants.services import api_key_create
from tests.gateway.test_gateway import write_route
from tests.gateway.test_quotas import SlowUpstream, infer

pytestmark = pytest.mark.integration


def exchange(port: int, raw: bytes, *, expect: int, timeout: float = 10) -> list[tuple[int, dict, bytes]]:
    """Send raw bytes, read `expect` responses (framed by content-length)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(raw)
        buffer, responses = b"", []
        while len(responses) < expect:
            while b"\r\n\r\n" not in buffer:
                chunk = conn.recv(65536)
                if not chunk:
                    return responses
                buffer += chunk
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            length = int(headers["content-length"])
            while len(buffer) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                buffer += chunk
            responses.append((int(lines[0].split()[1]), headers, buffer[:length]))
            buffer = buffer[length:]
        return responses


def test_pipelined_requests_are_answered_in_order_on_one_connection(stack):
    raw = (b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
           b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
           b"GET /v2 HTTP/1.1\r\nHost: x\r\n\r\n")
    responses = exchange(stack.gateway_port, raw, expect=3)
    assert [status for status, _, _ in responses] == [200, 404, 200]
    assert json.loads(responses[2][2])["name"] == "inference-platform-gateway"
    assert len({headers["x-request-id"] for _, headers, _ in responses}) == 3


def test_a_malformed_request_is_400_and_the_connection_closes(stack):
    [(status, headers, body)] = exchange(stack.gateway_port, b"NOT HTTP AT ALL\r\n\r\n", expect=1)
    assert status == 400 and headers["connection"] == "close"
    assert "Malformed HTTP request" in json.loads(body)["error"]


def test_connection_close_is_honoured(stack):
    with socket.create_connection(("127.0.0.1", stack.gateway_port), timeout=5) as conn:
        conn.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.1 200 OK") and b"connection: close" in received


def test_a_body_over_the_platform_cap_is_413_without_reaching_admission(stack, acme):
    _, raw_key = api_key_create(tenant=acme, label="k", scopes=["infer"])
    proc, port = stack.gateway_start("gateway-small-bodies", env={"GATEWAY_MAX_BODY_BYTES": "1000"})
    try:
        body = b"x" * 5000
        request = (b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + raw_key.encode()
                   + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        [(status, _, answer)] = exchange(port, request, expect=1)
        assert status == 413 and "1000 byte limit" in json.loads(answer)["error"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)


def test_two_processes_share_the_port_and_stop_gracefully(stack, acme):
    """SIGTERM lets the request in flight finish before the processes exit."""
    _, raw_key = api_key_create(tenant=acme, label="k", scopes=["infer"])
    upstream = SlowUpstream(delay=1.0)
    write_route(acme, "slow", http_url=upstream.url)
    proc, port = stack.gateway_start("gateway-two", workers=2)
    try:
        for _ in range(20):
            [(status, _, _)] = exchange(port, b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n", expect=1)
            assert status == 200
        answer = {}
        caller = threading.Thread(target=lambda: answer.update(result=infer(None, raw_key, port=port, name="slow")))
        caller.start()
        deadline = time.monotonic() + 5
        while upstream.active == 0:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGTERM)
        caller.join(timeout=10)
        assert answer["result"][0] == 200
        assert proc.wait(timeout=15) == 0
    finally:
        upstream.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_expect_100_continue_is_answered_before_the_body(stack):
    """curl sends bodies over 1 KiB only after `100 Continue` (or a second's wait)."""
    body = b'{"inputs": []}'
    with socket.create_connection(("127.0.0.1", stack.gateway_port), timeout=5) as conn:
        conn.sendall(b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        assert conn.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        conn.sendall(body)
        answer = conn.recv(65536)
    assert answer.startswith(b"HTTP/1.1 401 Unauthorized")


def test_idle_keep_alive_connections_are_closed(stack):
    proc, port = stack.gateway_start("gateway-idle", env={"GATEWAY_IDLE_TIMEOUT_S": "0.6"})
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            assert conn.recv(65536).startswith(b"HTTP/1.1 200 OK")
            started = time.monotonic()
            assert conn.recv(65536) == b""  # closed by the gateway
            assert 0.5 < time.monotonic() - started < 3
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)

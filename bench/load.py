"""Closed-loop load through the gateway or to Triton, for bench/gateway.py and bench/isolation.

The load generators are minimal (pre-built requests; HTTP/1.1 on uvloop with one
keep-alive connection per client; gRPC through grpc.aio with pre-serialized messages)
because they share the machine's cores with Triton, the gateway and Redis: a heavier
client would measure itself. `session_cpu_s` tells what the processes under test spent."""
import asyncio
import os
import time

import uvloop


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection carrying one request at a time."""

    def __init__(self):
        self.transport = None
        self.buffer = bytearray()
        self.expected = -1
        self.status = 0
        self.waiter: asyncio.Future | None = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buffer += data
        if self.expected < 0:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            at = head.find(b"\r\ncontent-length:")
            if at < 0:
                self._fail(RuntimeError("response without Content-Length: " + head[:200].decode(errors="replace")))
                return
            stop = head.find(b"\r\n", at + 2)
            self.status = int(head[9:12])
            self.expected = end + 4 + int(head[at + 17:stop if stop > 0 else None])
        if len(self.buffer) >= self.expected:
            del self.buffer[:self.expected]
            self.expected = -1
            waiter, self.waiter = self.waiter, None
            if waiter is not None and not waiter.done():
                waiter.set_result(self.status)

    def connection_lost(self, exc):
        self._fail(exc or ConnectionError("connection closed"))

    def _fail(self, exc: BaseException) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)


async def _http_client(port: int, request: bytes):
    """A coroutine factory: each call sends the request and returns the status."""
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(Connection, "127.0.0.1", port)

    async def call() -> int:
        conn.waiter = loop.create_future()
        conn.transport.write(request)
        return await conn.waiter

    return call, conn.transport.close


async def _grpc_client(target: str, request: bytes, metadata: tuple):
    import grpc

    channel = grpc.aio.insecure_channel(target)
    infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")

    async def call() -> int:
        try:
            await infer(request, metadata=metadata)
            return 200
        except grpc.aio.AioRpcError as exc:
            return 1000 + exc.code().value[0]

    async def close():
        await channel.close()

    return call, close


async def _run_clients(make_client, clients: int, seconds: float, warmup: float) -> dict:
    latencies: list[float] = []
    errors: list[int] = []
    sent = [0]
    measure_from = time.perf_counter() + warmup
    until = measure_from + seconds

    async def one():
        call, close = await make_client()
        try:
            while (started := time.perf_counter()) < until:
                status = await call()
                sent[0] += 1
                if started >= measure_from:
                    latencies.append(time.perf_counter() - started)
                    if status != 200:
                        errors.append(status)
        finally:
            closed = close()
            if asyncio.iscoroutine(closed):
                await closed

    await asyncio.gather(*(one() for _ in range(clients)))
    latencies.sort()
    n = len(latencies)
    return {
        "requests": n, "sent": sent[0], "errors": len(errors), "statuses": sorted(set(errors)), "rps": n / seconds,
        "p50_ms": latencies[n // 2] * 1000 if n else float("nan"),
        "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1000 if n else float("nan"),
    }


def run_load(make_client, clients: int, seconds: float, warmup: float, sessions: dict | None = None) -> dict:
    """Run the load; with `sessions` ({name: session id}), also the CPU each spent per
    request (microseconds, whole run including warm-up)."""
    before = {name: session_cpu_s(sid) for name, sid in (sessions or {}).items()}
    result = uvloop.run(_run_clients(make_client, clients, seconds, warmup))
    if sessions:
        result["cpu_us"] = {name: round((session_cpu_s(sid) - before[name]) / max(result["sent"], 1) * 1e6, 1)
                            for name, sid in sessions.items()}
    return result


def session_cpu_s(session: int) -> float:
    """CPU seconds (user + system) of the live processes of a session."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session:  # field 6 of stat, the session id
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def http_load(port: int, request: bytes):
    return lambda: _http_client(port, request)


def grpc_load(target: str, request: bytes, metadata: tuple = ()):
    return lambda: _grpc_client(target, request, metadata)


def build_request(port: int, path: str, body: bytes, json_size: int | None, api_key: str | None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Length: {len(body)}"]
    if json_size is None:
        lines.append("Content-Type: application/json")
    else:
        lines += ["Content-Type: application/octet-stream", f"Inference-Header-Content-Length: {json_size}"]
    if api_key:
        lines.append(f"Authorization: Bearer {api_key}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

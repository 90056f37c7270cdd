"""The noisy-neighbour benchmark's clients: tenant B's closed loop, and tenant A's flood in
a process of its own."""
import asyncio
import random
import resource
import time
from collections import Counter

from bench.load import Connection

# After a failed call a B client pauses this long, so that a dead server's quick 503s do
# not turn its closed loop into a busy loop competing for the cores.
ERROR_PAUSE_S = 0.01


class HttpClient:
    """One keep-alive connection (bench/load.py's Connection), reopened after an error;
    every call gives up after `timeout` seconds."""

    def __init__(self, port: int, timeout: float):
        self.port, self.timeout = port, timeout
        self.conn = None

    async def call(self, request: bytes) -> str:
        loop = asyncio.get_running_loop()
        if self.conn is None or self.conn.transport.is_closing():
            try:
                async with asyncio.timeout(self.timeout):
                    _, self.conn = await loop.create_connection(Connection, "127.0.0.1", self.port)
            except (OSError, TimeoutError):
                self.conn = None
                await asyncio.sleep(ERROR_PAUSE_S)
                return "conn_error"
        conn = self.conn
        conn.waiter = loop.create_future()
        conn.transport.write(request)
        try:
            async with asyncio.timeout(self.timeout):
                return str(await conn.waiter)
        except TimeoutError:
            self.close()
            return "timeout"
        except Exception:
            self.close()
            return "conn_error"

    def close(self) -> None:
        if self.conn is not None:
            self.conn.transport.close()
            self.conn = None


async def b_load(port: int, request: bytes, clients: int, seconds: float, warmup: float, timeout: float) -> dict:
    """B's closed loop: latencies of successful calls and the outcome of every call in
    the measured window."""
    latencies: list[float] = []
    outcomes: Counter = Counter()
    measure_from = time.perf_counter() + warmup
    until = measure_from + seconds

    async def one():
        client = HttpClient(port, timeout)
        try:
            while (started := time.perf_counter()) < until:
                outcome = await client.call(request)
                if started >= measure_from:
                    outcomes[outcome] += 1
                    if outcome == "200":
                        latencies.append(time.perf_counter() - started)
                if outcome != "200":
                    await asyncio.sleep(ERROR_PAUSE_S)
        finally:
            client.close()

    await asyncio.gather(*(one() for _ in range(clients)))
    return latency_summary(latencies, outcomes, seconds)


def latency_summary(latencies: list[float], outcomes: Counter, seconds: float) -> dict:
    latencies.sort()
    ok, total = len(latencies), sum(outcomes.values())
    return {
        "requests": total, "ok": ok, "errors": total - ok, "error_rate": (total - ok) / total if total else 1.0,
        "rps": ok / seconds, "p50_ms": latencies[ok // 2] * 1000 if ok else None,
        "p99_ms": latencies[min(ok - 1, int(ok * 0.99))] * 1000 if ok else None,
        "outcomes": dict(sorted(outcomes.items())),
    }


def flood_process(spec: dict, ready, stop, results) -> None:
    """Tenant A's flood, in a process of its own: runs until `stop` is set, then sends
    {"outcomes": {kind: {outcome: count}}, "p50_ms": {kind: median}, "cpu_s", "seconds"}
    through `results`. Calls still in flight a second after the stop count as in_flight."""
    import uvloop

    kinds = [*spec["weights"], *(["hog"] if spec["hog_flooders"] else [])]
    outcomes = {kind: Counter() for kind in kinds}
    latencies: dict[str, list[float]] = {kind: [] for kind in kinds}
    started, before = time.monotonic(), resource.getrusage(resource.RUSAGE_SELF)
    uvloop.run(_flood(spec, ready, stop, outcomes, latencies))
    seconds, usage = time.monotonic() - started, resource.getrusage(resource.RUSAGE_SELF)
    results.send({"outcomes": {kind: dict(counts) for kind, counts in outcomes.items()},
                  "p50_ms": {kind: sorted(values)[len(values) // 2] * 1000 if values else None
                             for kind, values in latencies.items()},
                  "cpu_s": usage.ru_utime + usage.ru_stime - before.ru_utime - before.ru_stime, "seconds": seconds})
    results.close()


async def _flood(spec: dict, ready, stop, outcomes: dict, latencies: dict) -> None:
    import grpc

    channel = grpc.aio.insecure_channel(spec["grpc_target"])
    infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
    metadata = (("authorization", f"Bearer {spec['key']}"),)
    pause = spec["flooders"] / spec["rps"] if spec["rps"] else 0.0

    async def grpc_call(message: bytes, timeout: float) -> str:
        try:
            await infer(message, metadata=metadata, timeout=timeout)
            return "grpc:OK"
        except grpc.aio.AioRpcError as exc:
            return f"grpc:{exc.code().name}"

    async def flooder(seed: int, kinds: list[str], weights: list[float], timeout: float):
        rng = random.Random(seed)
        client = HttpClient(spec["port"], timeout)
        kind = None
        try:
            while not stop.is_set():
                kind = rng.choices(kinds, weights)[0] if len(kinds) > 1 else kinds[0]
                started = time.perf_counter()
                if kind in spec["grpc"]:
                    outcome = await grpc_call(spec["grpc"][kind], timeout)
                else:
                    outcome = await client.call(spec["http"][kind])
                outcomes[kind][outcome] += 1
                latencies[kind].append(time.perf_counter() - started)
                kind = None
                if pause:
                    await asyncio.sleep(pause)
        except asyncio.CancelledError:
            if kind is not None:
                outcomes[kind]["in_flight"] += 1
        finally:
            client.close()

    ready.set()
    mix = list(spec["weights"]), list(spec["weights"].values())
    tasks = [asyncio.create_task(flooder(seed, *mix, spec["timeout"])) for seed in range(spec["flooders"])]
    tasks += [asyncio.create_task(flooder(seed, ["hog"], [1.0], spec["hog_timeout"]))
              for seed in range(spec["hog_flooders"])]
    while not stop.is_set():
        await asyncio.sleep(0.05)
    _, pending = await asyncio.wait(tasks, timeout=1)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    await channel.close()

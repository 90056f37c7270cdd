"""Noisy-neighbour benchmark: `python -m workers.bench_isolation` (`make bench-isolation`).

Starts the real stack on free ports (Triton, a Celery worker, the gateway, the metering
consumer; tests/stack.py) on a scratch database and Redis database of its own, with two
tenants on the same Triton server:

- B, the quiet one: the digits model, kept warm (min_instances=1), its rate limit lifted
  so that it measures the platform rather than its own quota;
- A, the noisy one: digits too, and graph_editor.samples.memory_hog_onnx ("hog": a request
  allocates max(n) * 4 bytes), under a tenant rate limit (200 req/s, burst 50).

Phase 1 (baseline): B alone, a closed loop of --clients clients calling digits with JSON
tensors through the gateway over keep-alive connections. Phase 2 (noise): the same B
load while --flooders coroutines of A send, as fast as they can, a mix (--mix) of valid
digits calls, malformed HTTP requests and malformed gRPC requests, and --hog-flooders
more send hog requests with n = --hog-n (a hog call takes seconds: in the mix it would
soon hold every flooder). Phase 3 (after): B alone again, to show whether the damage
lasts. A's flood runs in one process of its own, so that its event loop does not delay
B's clients.

All the while a thread polls Triton's /v2/health/live every 0.5 s and follows the
tritonserver process and its model (stub) processes. Every client call has a timeout,
so the bench reports a Triton that died or hangs instead of waiting for it.

Prints B's latency and errors per phase, A's outcomes per request kind (gRPC codes in
HTTP's columns: INVALID_ARGUMENT as 400, RESOURCE_EXHAUSTED as 429, UNAVAILABLE as 5xx),
Triton's health and the CPU each part used, then one JSON line. Exits 1 when B's error
rate under noise is above --max-error-rate, or when more than --max-triton-failures
health polls failed or tritonserver was restarted or ended."""
import argparse
import asyncio
import json
import multiprocessing
import os
import random
import re
import resource
import signal
import sys
import threading
import time
import urllib.request
from collections import Counter

A_RATE_PER_SECOND = 200.0
A_RATE_BURST = 50
# B's own limit, lifted above the plan's (200 req/s) so that no B request is refused by it.
B_RATE_PER_SECOND = 100_000.0
HEALTH_POLL_S = 0.5
# After a failed call a B client pauses this long, so that a dead server's quick 503s do
# not turn its closed loop into a busy loop competing for the cores.
ERROR_PAUSE_S = 0.01

HTTP_KINDS = ("wrong_name", "wrong_dtype", "wrong_rank", "huge_shape", "count_mismatch", "truncated_json",
              "garbage_body", "binary_size_lie", "binary_short", "binary_huge_shape", "overflow_shape",
              "negative_shape")
GRPC_KINDS = ("grpc_wrong_name", "grpc_wrong_dtype", "grpc_raw_short", "grpc_huge_shape", "grpc_huge_contents",
              "grpc_overflow_shape", "grpc_garbage")
CATEGORIES = {"valid": ("valid",), "malformed": HTTP_KINDS, "grpc": GRPC_KINDS}
BUCKETS = ("2xx", "400", "4xx other", "429", "5xx", "timeout", "conn error", "in flight")
GRPC_BUCKETS = {"OK": "2xx", "INVALID_ARGUMENT": "400", "OUT_OF_RANGE": "400", "FAILED_PRECONDITION": "400",
                "UNIMPLEMENTED": "400", "RESOURCE_EXHAUSTED": "429", "UNAVAILABLE": "5xx", "INTERNAL": "5xx",
                "UNKNOWN": "5xx", "DATA_LOSS": "5xx", "DEADLINE_EXCEEDED": "timeout"}


def bucket(outcome: str) -> str:
    """The histogram column of an outcome: an HTTP status, grpc:<CODE>, timeout or conn_error."""
    if outcome.startswith("grpc:"):
        return GRPC_BUCKETS.get(outcome[5:], "4xx other")
    if outcome in ("timeout", "conn_error", "in_flight"):
        return outcome.replace("_", " ")
    status = int(outcome)
    if status < 300:
        return "2xx"
    if status in (400, 429):
        return str(status)
    return "5xx" if status >= 500 else "4xx other"


# Requests ------------------------------------------------------------------------------

def http_requests(*, port: int, key: str, hog_n: int) -> dict[str, bytes]:
    """Every HTTP request the bench sends, by kind, as bytes on the wire."""
    from gateway.bench import build_request
    from graph_editor.samples import digits_dataset

    pixels = digits_dataset()[0][0].astype("float32")
    values = pixels.tolist()

    def tensor(**changes) -> dict:
        return {"name": "X", "shape": [1, 64], "datatype": "FP32", "data": values, **changes}

    def as_json(*inputs: dict) -> tuple[bytes, None]:
        return json.dumps({"inputs": list(inputs)}).encode(), None

    def as_binary(declared: dict, payload: bytes) -> tuple[bytes, int]:
        header = json.dumps({"inputs": [{**declared, "parameters": declared.get("parameters", {})}]}).encode()
        return header + payload, len(header)

    valid = as_json(tensor())
    raw = pixels.tobytes()
    digits = {
        "valid": valid,
        "wrong_name": as_json(tensor(name="Y")),
        "wrong_dtype": as_json(tensor(datatype="INT32", data=[int(v) for v in values])),
        "wrong_rank": as_json(tensor(shape=[64])),
        "huge_shape": as_json(tensor(shape=[1_000_000_000, 64])),
        "count_mismatch": as_json(tensor(shape=[2, 64])),
        "truncated_json": (valid[0][:len(valid[0]) // 2], None),
        "garbage_body": (random.Random(0).randbytes(256), None),
        "binary_size_lie": as_binary({"name": "X", "shape": [1, 64], "datatype": "FP32",
                                      "parameters": {"binary_data_size": 1_000_000_000}}, raw),
        "binary_short": as_binary({"name": "X", "shape": [1, 64], "datatype": "FP32",
                                   "parameters": {"binary_data_size": 256}}, raw[:128]),
        "binary_huge_shape": as_binary({"name": "X", "shape": [1_000_000_000, 64], "datatype": "FP32",
                                        "parameters": {"binary_data_size": 256}}, raw),
        "overflow_shape": as_json(tensor(shape=[2**62, 4])),
        "negative_shape": as_json(tensor(shape=[-1, 64])),
    }
    requests = {kind: build_request(port, "/v2/models/digits/infer", body, json_size, key)
                for kind, (body, json_size) in digits.items()}
    hog = json.dumps({"inputs": [{"name": "n", "shape": [1, 1], "datatype": "INT64", "data": [hog_n]}]}).encode()
    requests["hog"] = build_request(port, "/v2/models/hog/infer", hog, None, key)
    return requests


def grpc_requests() -> dict[str, bytes]:
    """Malformed ModelInfer requests to digits, serialized (the gateway forwards bytes)."""
    from tritonclient.grpc import service_pb2

    from graph_editor.samples import digits_dataset

    pixels = digits_dataset()[0][0].astype("float32")

    def request(*, name="X", datatype="FP32", shape=(1, 64), raw: bytes | None = pixels.tobytes(),
                contents=None) -> bytes:
        message = service_pb2.ModelInferRequest(model_name="digits")
        tensor = message.inputs.add(name=name, datatype=datatype, shape=list(shape))
        if contents is not None:
            tensor.contents.fp32_contents.extend(contents)
        if raw is not None:
            message.raw_input_contents.append(raw)
        return message.SerializeToString()

    return {
        "grpc_wrong_name": request(name="Y"),
        "grpc_wrong_dtype": request(datatype="FP64"),
        "grpc_raw_short": request(raw=pixels.tobytes()[:128]),
        "grpc_huge_shape": request(shape=(1_000_000_000, 64)),
        "grpc_huge_contents": request(shape=(1_000_000_000, 64), raw=None, contents=pixels.tolist()),
        "grpc_overflow_shape": request(shape=(2**62, 4)),
        "grpc_garbage": random.Random(1).randbytes(256),
    }


# Clients -------------------------------------------------------------------------------

class HttpClient:
    """One keep-alive connection (gateway/bench.py's protocol), reopened after an error;
    every call gives up after `timeout` seconds."""

    def __init__(self, port: int, timeout: float):
        self.port, self.timeout = port, timeout
        self.conn = None

    async def call(self, request: bytes) -> str:
        from gateway.bench import Connection

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


# Triton's health -----------------------------------------------------------------------

def processes() -> dict[int, tuple[str, int]]:
    """pid -> (command name, parent pid) of every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    head, rest = f.read().rsplit(")", 1)
            except OSError:
                continue
            table[int(entry)] = (head.split("(", 1)[1], int(rest.split()[1]))
    return table


def descendants(table: dict, root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (_, parent) in table.items():
        children.setdefault(parent, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


class TritonWatch(threading.Thread):
    """Polls /v2/health/live every HEALTH_POLL_S and follows the tritonserver process
    (found under the process the stack started, so a supervisor in between is seen too)
    and its model processes, counting failures per phase."""

    def __init__(self, url: str, root_pid: int):
        super().__init__(daemon=True)
        self.url, self.root_pid = url, root_pid
        self.phase = "baseline"
        self.polls: Counter = Counter()
        self.failures: Counter = Counter()
        self.first_failure: tuple[str, float] | None = None
        self.server_pids: list[int] = []
        self.stub_pids: set[int] = set()
        self.phase_started = time.monotonic()
        self.halt = threading.Event()

    def set_phase(self, phase: str) -> None:
        self.phase, self.phase_started = phase, time.monotonic()

    def run(self) -> None:
        while not self.halt.wait(HEALTH_POLL_S):
            phase = self.phase
            try:
                with urllib.request.urlopen(f"{self.url}/v2/health/live", timeout=1) as response:
                    live = response.status == 200
            except OSError:
                live = False
            self.polls[phase] += 1
            if not live:
                self.failures[phase] += 1
                if self.first_failure is None:
                    self.first_failure = (phase, time.monotonic() - self.phase_started)
            table = processes()
            family = descendants(table, self.root_pid) if self.root_pid in table else []
            # A tritonserver whose parent is one too is a fork of the crash handler, not a server.
            servers = [pid for pid in family
                       if table[pid][0] == "tritonserver" and table.get(table[pid][1], ("",))[0] != "tritonserver"]
            for pid in servers:
                if pid not in self.server_pids:
                    self.server_pids.append(pid)
                for stub in descendants(table, pid):
                    if table[stub][0].startswith("triton_python"):
                        self.stub_pids.add(stub)

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=5)


# The run -------------------------------------------------------------------------------

def parse_mix(text: str, exclude: set[str]) -> dict[str, float]:
    """--mix "valid=2,malformed=6,grpc=3" -> a weight per request kind (a category's
    weight shared evenly by its kinds, minus the excluded ones)."""
    weights = {}
    for part in filter(None, text.split(",")):
        category, _, weight = part.partition("=")
        if category not in CATEGORIES:
            raise SystemExit(f"--mix: unknown category {category!r} (choose from {', '.join(CATEGORIES)})")
        kinds = [kind for kind in CATEGORIES[category] if kind not in exclude]
        for kind in kinds:
            weights[kind] = float(weight) / len(kinds)
    return {kind: weight for kind, weight in weights.items() if weight > 0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15, help="measured seconds of each B phase (default 15)")
    parser.add_argument("--after-seconds", type=float, default=5, help="measured seconds of B after the noise")
    parser.add_argument("--warmup", type=float, default=2, help="unmeasured seconds before each B phase")
    parser.add_argument("--clients", type=int, default=4, help="B's closed-loop clients (default 4)")
    parser.add_argument("--flooders", type=int, default=8, help="A's concurrent flooders (default 8)")
    parser.add_argument("--flood-rps", type=float, default=0,
                        help="pace A's flood to this many requests per second in all (default 0: as fast as it can)")
    parser.add_argument("--mix", default="valid=2,malformed=6,grpc=3",
                        help="weights of the request categories A's flooders send: valid, malformed, grpc")
    parser.add_argument("--exclude", default="", help="comma-separated request kinds A does not send: "
                        + ", ".join(("valid",) + HTTP_KINDS + GRPC_KINDS))
    parser.add_argument("--hog-flooders", type=int, default=2,
                        help="A's concurrent senders of memory-hog requests (default 2; 0: none)")
    parser.add_argument("--hog-n", type=int, default=1_000_000_000,
                        help="n of A's hog requests: each allocates n * 4 bytes (default 1e9)")
    parser.add_argument("--timeout", type=float, default=5, help="seconds before a client call gives up (default 5)")
    parser.add_argument("--hog-timeout", type=float, default=30,
                        help="seconds before a hog call gives up (default 30: a 4 GB allocation takes seconds)")
    parser.add_argument("--max-error-rate", type=float, default=0.01,
                        help="fail when B's error rate under noise is above this (default 0.01)")
    parser.add_argument("--max-triton-failures", type=int, default=0,
                        help="fail when more health polls than this failed or tritonserver changed (default 0)")
    args = parser.parse_args(argv)
    exclude = set(filter(None, args.exclude.split(",")))
    weights = parse_mix(args.mix, exclude)
    if not weights:
        raise SystemExit("--mix and --exclude leave A nothing to send")

    import uvloop

    from gateway.bench import session_cpu_s
    from workers.bench_coldstart import scratch_stack, scratch_stop

    stack = scratch_stack("isolation", redis_db=8)
    workdir = stack.workdir
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    watch = None
    try:
        stack.start()
        stack.register_servers()
        keys = deploy_tenants()
        b_request = http_requests(port=stack.gateway_port, key=keys["quiet"], hog_n=args.hog_n)["valid"]
        a_http = http_requests(port=stack.gateway_port, key=keys["noisy"], hog_n=args.hog_n)
        small_hog = http_requests(port=stack.gateway_port, key=keys["noisy"], hog_n=1)["hog"]
        check_calls(stack.gateway_port, [b_request, a_http["valid"], small_hog])
        print(f"stack up: Triton :{stack.triton_http_port}, gateway :{stack.gateway_port} (gRPC "
              f":{stack.gateway_grpc_port}), {os.cpu_count()} CPU cores shared by everything; B {args.clients} "
              f"clients, A {args.flooders} flooders at its limit of {A_RATE_PER_SECOND:g} req/s (burst "
              f"{A_RATE_BURST}); logs in {workdir}", flush=True)

        watch = TritonWatch(stack.triton_url, stack.procs["triton"].pid)
        watch.start()
        sessions = {name: stack.procs[name].pid for name in ("triton", "gateway", "metering", "worker")}

        def cpu_now() -> dict:
            cpu = {name: session_cpu_s(sid) for name, sid in sessions.items()}
            cpu["bench (B)"] = time.process_time()
            cpu["machine"] = machine_busy_s()
            cpu["wall"] = time.monotonic()
            return cpu

        phases, cpu = {}, {}
        before = cpu_now()
        phases["baseline"] = uvloop.run(b_load(stack.gateway_port, b_request, args.clients, args.seconds,
                                               args.warmup, args.timeout))
        cpu["baseline"] = cpu_delta(before, cpu_now())

        spec = {"port": stack.gateway_port, "grpc_target": f"127.0.0.1:{stack.gateway_grpc_port}",
                "key": keys["noisy"],
                "weights": weights, "flooders": args.flooders, "hog_flooders": args.hog_flooders,
                "rps": args.flood_rps, "timeout": args.timeout, "hog_timeout": args.hog_timeout,
                "http": {k: v for k, v in a_http.items() if k in weights or k == "hog"},
                "grpc": {k: v for k, v in grpc_requests().items() if k in weights}}
        context = multiprocessing.get_context("spawn")
        ready, stop = context.Event(), context.Event()
        receiver, sender = context.Pipe(duplex=False)
        flood = context.Process(target=flood_process, args=(spec, ready, stop, sender), daemon=True)
        flood.start()
        if not ready.wait(60):
            raise SystemExit("A's flood did not start")
        watch.set_phase("noise")
        before = cpu_now()
        time.sleep(1)  # A's flood reaches its steady state before B's warm-up begins
        phases["noise"] = uvloop.run(b_load(stack.gateway_port, b_request, args.clients, args.seconds,
                                            args.warmup, args.timeout))
        stop.set()
        flood_result = (receiver.recv() if receiver.poll(30) else {"outcomes": {}, "p50_ms": {}, "cpu_s": None,
                                                                    "seconds": None})
        flood.join(timeout=10)
        if flood.is_alive():
            flood.kill()
        cpu["noise"] = cpu_delta(before, cpu_now())
        cpu["noise"]["flood (A)"] = round(flood_result["cpu_s"], 2) if flood_result["cpu_s"] is not None else None

        watch.set_phase("after")
        before = cpu_now()
        phases["after"] = uvloop.run(b_load(stack.gateway_port, b_request, args.clients, args.after_seconds,
                                            min(args.warmup, 1), args.timeout))
        cpu["after"] = cpu_delta(before, cpu_now())
        watch.stop()
        triton = triton_report(stack, watch)
    finally:
        if watch is not None:
            watch.stop()
        scratch_stop(stack)

    result = report(args, phases, flood_result, triton, cpu)
    return 0 if result["passed"] else 1


def deploy_tenants() -> dict[str, str]:
    """B (quiet) with digits kept warm; A (noisy) with digits and the memory hog, under a
    tenant rate limit. Returns their API keys by tenant slug."""
    from graph_editor.samples import digits_classifier_onnx, memory_hog_onnx
    from graph_editor.services import model_version_upload
    from tenants.models import Tenant
    from tenants.quotas import quota_set
    from tenants.services import api_key_create
    from workers.bench_coldstart import wait
    from workers.models import Deployment, DeploymentState
    from workers.services import deployment_create

    quiet = Tenant.objects.create(slug="quiet", name="Quiet (B)")
    noisy = Tenant.objects.create(slug="noisy", name="Noisy (A)")
    quota_set(level="tenant", target=quiet, values={"rate_per_second": B_RATE_PER_SECOND,
                                                    "rate_burst": int(B_RATE_PER_SECOND)})
    quota_set(level="tenant", target=noisy, values={"rate_per_second": A_RATE_PER_SECOND, "rate_burst": A_RATE_BURST})
    deployments = []
    for tenant, name, model, scaling in ((quiet, "digits", digits_classifier_onnx, {"min_instances": 1}),
                                         (noisy, "digits", digits_classifier_onnx, {}),
                                         (noisy, "hog", memory_hog_onnx, {})):
        version = model_version_upload(tenant=tenant, model_name=name, chunks=[model()])
        deployments.append(deployment_create(tenant=tenant, model_version_id=version.pk, name=name, **scaling))
    for deployment in deployments:
        wait(lambda: Deployment.unscoped.get(pk=deployment.pk).state == DeploymentState.READY, 90,
             f"deployment {deployment.name} of {deployment.tenant.slug}")
    return {tenant.slug: api_key_create(tenant=tenant, label="bench", scopes=["infer"])[1]
            for tenant in (quiet, noisy)}


def check_calls(port: int, requests: list[bytes]) -> None:
    """Each tenant's valid calls answer 200 before the load starts."""
    import uvloop

    async def calls() -> list[str]:
        client = HttpClient(port, 30)
        try:
            return [await client.call(request) for request in requests]
        finally:
            client.close()

    outcomes = uvloop.run(calls())
    if outcomes != ["200"] * len(requests):
        raise SystemExit(f"the stack does not answer valid calls (B digits, A digits, A hog with n = 1): {outcomes}")


def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        ticks = [int(field) for field in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def cpu_delta(before: dict, after: dict) -> dict:
    return {name: round(after[name] - before[name], 2) for name in before}


def triton_report(stack, watch: TritonWatch) -> dict:
    proc = stack.procs["triton"]
    code = proc.poll()
    table = processes()
    family = descendants(table, proc.pid) if proc.pid in table else []
    live_stubs = {pid for pid in family if pid in watch.stub_pids}
    markers = ("bad_alloc", "terminate called", "what():", "Signal (", "Aborted", "Killed", "Stub process")
    # Distinct messages (timestamps and pids aside) with how often each came.
    messages = Counter(re.sub(r"\d+", "N", re.sub(r"\x1b\[[\d;]*m", "", line).strip())[:200]
                       for line in stack.log("triton").splitlines() if any(marker in line for marker in markers))
    return {
        "polls": sum(watch.polls.values()), "failures": sum(watch.failures.values()),
        "failures_by_phase": {phase: watch.failures[phase] for phase in ("baseline", "noise", "after")},
        "first_failure": (f"{watch.first_failure[0]} +{watch.first_failure[1]:.1f} s" if watch.first_failure
                          else None),
        "server_pids": watch.server_pids, "restarts": max(0, len(watch.server_pids) - 1),
        "exit": None if code is None else (signal.Signals(-code).name if code < 0 else f"exit {code}"),
        "stubs_seen": len(watch.stub_pids), "stubs_gone": len(watch.stub_pids - live_stubs),
        "log": [f"{count} x {message}" for message, count in messages.most_common(6)],
    }


def report(args, phases: dict, flood: dict, triton: dict, cpu: dict) -> dict:
    def number(value, spec=".2f") -> str:
        return "-" if value is None else format(value, spec)

    print(f"\nB: {args.clients} closed-loop clients, digits, JSON tensors (p50/p99 of successful calls)")
    print(f"{'phase':10} {'seconds':>7} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} "
          f"{'error rate':>10}  outcomes")
    for phase, row in phases.items():
        seconds = args.after_seconds if phase == "after" else args.seconds
        print(f"{phase:10} {seconds:>7g} {row['requests']:>9} {row['rps']:>8.1f} {number(row['p50_ms']):>8} "
              f"{number(row['p99_ms']):>8} {row['errors']:>7} {row['error_rate'] * 100:>9.2f}%  {row['outcomes']}")
    base, noise = phases["baseline"], phases["noise"]

    def ratio(field: str) -> float | None:
        if base[field] and noise[field] is not None:
            return round(noise[field] / base[field], 2)
        return None

    ratios = {"p50": ratio("p50_ms"), "p99": ratio("p99_ms"), "rps": ratio("rps")}
    print(f"{'noise/base':10} {'':>7} {'':>9} {number(ratios['rps']):>8} {number(ratios['p50']):>8} "
          f"{number(ratios['p99']):>8}")

    totals = Counter()
    print(f"\nA: {args.flooders} flooders, mix {args.mix}" + (f", excluding {args.exclude}" if args.exclude else "")
          + f"; {args.hog_flooders} hog senders, n = {args.hog_n:g}; outcomes per request kind over the noise phase")
    print(f"{'kind':20} {'sent':>7} {'p50 ms':>8} " + " ".join(f"{b:>10}" for b in BUCKETS) + "  raw")
    for kind, outcomes in flood["outcomes"].items():
        buckets = Counter()
        for outcome, count in outcomes.items():
            buckets[bucket(outcome)] += count
        totals.update(buckets)
        print(f"{kind:20} {sum(outcomes.values()):>7} {number(flood['p50_ms'].get(kind), '.1f'):>8} "
              + " ".join(f"{buckets[b]:>10}" for b in BUCKETS)
              + f"  {dict(sorted(outcomes.items()))}")
    print(f"{'total':20} {sum(totals.values()):>7} {'':>8} " + " ".join(f"{totals[b]:>10}" for b in BUCKETS))
    unanswered = [kind for kind, outcomes in flood["outcomes"].items()
                  if sum(n for o, n in outcomes.items() if bucket(o) != "429")
                  and not sum(n for o, n in outcomes.items() if bucket(o) in ("2xx", "400", "4xx other"))]
    if unanswered:
        print(f"admitted but never answered 2xx/4xx: {', '.join(unanswered)} (if Triton died: the suspects, "
              "with whatever was in flight; --exclude one to confirm)")
    flood_seconds = flood["seconds"] or float("nan")
    print(f"A flooded for {flood_seconds:.1f} s and sent {sum(totals.values()) / flood_seconds:.0f} req/s; "
          f"{totals['2xx'] / flood_seconds:.0f} req/s "
          f"answered 2xx")

    down = triton["failures"] > args.max_triton_failures or triton["restarts"] > 0 or triton["exit"] is not None
    print(f"\nTriton: {triton['polls']} health polls, {triton['failures']} failed {triton['failures_by_phase']}"
          + (f", first at {triton['first_failure']}" if triton["first_failure"] else "")
          + f"; tritonserver pid(s) {triton['server_pids']}, restarts {triton['restarts']}, "
          f"{'still running' if triton['exit'] is None else 'ended: ' + triton['exit']}; "
          f"model processes seen {triton['stubs_seen']}, gone {triton['stubs_gone']}")
    for line in triton["log"]:
        print(f"  triton.log: {line}")

    print(f"\nCPU seconds per phase ({os.cpu_count()} cores; triton includes its model processes; rest = the "
          "machine's busy time minus the columns before it: Redis, PostgreSQL, the portal, other work on the machine)")
    names = [name for name in cpu["noise"] if name not in ("machine", "wall")]
    print(f"{'phase':10} {'wall s':>7} " + " ".join(f"{name:>10}" for name in names) + f" {'rest':>10}")
    busy_elsewhere = []
    for phase, row in cpu.items():
        rest = row["machine"] - sum(row.get(name) or 0 for name in names)
        if rest / row["wall"] > 0.5:
            busy_elsewhere.append(f"{phase} {rest / row['wall']:.1f}")
        print(f"{phase:10} {row['wall']:>7.1f} " + " ".join(f"{number(row.get(name)):>10}" for name in names)
              + f" {rest:>10.2f}")
    if busy_elsewhere:
        print(f"note: the rest of the machine kept {', '.join(busy_elsewhere)} cores busy on average (Redis and "
              "PostgreSQL need far less): other work shared the cores, and B's figures are pessimistic")

    failures = []
    if noise["error_rate"] > args.max_error_rate:
        failures.append(f"B's error rate under noise {noise['error_rate'] * 100:.2f}% > "
                        f"{args.max_error_rate * 100:g}%")
    if down:
        failures.append("Triton went down")
    result = {
        "b_baseline": {k: round(v, 4) if isinstance(v, float) else v for k, v in base.items() if k != "outcomes"},
        "b_noise": {k: round(v, 4) if isinstance(v, float) else v for k, v in noise.items() if k != "outcomes"},
        "b_after": {k: round(v, 4) if isinstance(v, float) else v for k, v in phases["after"].items()
                    if k != "outcomes"},
        "noise_over_baseline": ratios, "a_outcomes": {b: totals[b] for b in BUCKETS},
        "a_flood_seconds": round(flood_seconds, 1),
        "triton": {k: v for k, v in triton.items() if k != "log"}, "cpu_s": cpu, "passed": not failures,
        "failures": failures,
    }
    print("\n" + ("PASS" if not failures else "FAIL: " + "; ".join(failures)))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark of the gateway against Triton direct: `python -m bench.gateway` (`make bench-gateway`).

Starts its own Triton (`manage.py triton_serve --no-register`, free ports, a scratch
repository holding the digits model), its own Redis server and its own gateway process,
and writes one API key, one route and limits at the tenant, deployment and key levels
straight into that Redis, which is all the gateway reads; nothing shared is touched. The
limits are set high enough never to refuse, so every request runs every check: auth, the
payload cap, both monthly budgets, the tenant's standing and spend limit (its cost counted
at the end), three GCRA rates and three concurrency leases, and is metered (its usage
event is counted at the end). Then it runs the same closed-loop load against Triton and
through the gateway: 1, 8 and 32 concurrent clients, HTTP with JSON tensors, HTTP with
binary tensors, and gRPC.

With --scaling it then starts gateways of 1 and 2 worker processes, compares their
throughput at 32 clients, and checks that a key's rate limit stays exact when the
processes share it.

The load generators (bench/load.py) are minimal, because they share the machine's cores
with Triton, the gateway and Redis. Prints a table and, last, one line of JSON with the
ratios and added latencies."""
import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import redis

from bench.load import build_request, grpc_load, http_load, run_load
from bench.stack import ROOT, free_port, wait_http
from gateway.contract.hashing import hash_api_key
from gateway.contract.keys import (
    RATE_PREFIX,
    USAGE_STREAM,
    bill_entry_name,
    key_entry_name,
    limits_entry_name,
    route_entry_name,
)

PUBLIC_NAME = "digits"
TRITON_NAME = "t900--digits--d900"


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


# Requests ------------------------------------------------------------------------------

def grpc_infer_request(model_name: str) -> bytes:
    """A ModelInfer request for one digit, serialized once."""
    from tritonclient.grpc import service_pb2

    from graph_editor.samples import digits_dataset

    features = digits_dataset()[0][:1].astype("float32")
    request = service_pb2.ModelInferRequest(model_name=model_name)
    request.inputs.add(name="X", datatype="FP32", shape=list(features.shape))
    request.raw_input_contents.append(features.tobytes())
    for name in ("label", "probabilities"):
        request.outputs.add(name=name)
    return request.SerializeToString()


def infer_body(binary: bool) -> tuple[bytes, int | None]:
    import tritonclient.http as triton_http

    from graph_editor.samples import digits_dataset

    features = digits_dataset()[0][:1]
    tensor = triton_http.InferInput("X", list(features.shape), "FP32")
    tensor.set_data_from_numpy(features, binary_data=binary)
    outputs = [triton_http.InferRequestedOutput(name, binary_data=binary) for name in ("label", "probabilities")]
    body, json_size = triton_http.InferenceServerClient.generate_request_body([tensor], outputs=outputs)
    return body, json_size


# The stack under test --------------------------------------------------------------------

class Bench:
    def __init__(self, gateway_workers: int):
        self.gateway_workers = gateway_workers
        self.workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
        self.triton_port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
        self.redis_port = free_port()
        self.procs: list[subprocess.Popen] = []
        # Session ids (each process is spawned in a session of its own) of the measured parts.
        self.sessions: dict[str, int] = {}
        self.api_key = "ik_bench_" + secrets.token_urlsafe(24)
        self.redis = redis.Redis(host="127.0.0.1", port=self.redis_port)

    def spawn(self, name: str, args: list[str], env: dict) -> tuple[subprocess.Popen, Path]:
        log = self.workdir / f"{name}.log"
        proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, **env}, stdout=log.open("wb"),
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        self.sessions.setdefault(name, proc.pid)
        return proc, log

    def start_redis(self) -> None:
        proc, log = self.spawn("redis", [
            "redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(self.workdir),
        ], {})
        deadline = time.monotonic() + 10
        while True:
            try:
                self.redis.ping()
                return
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"redis-server did not start\n{log.read_text()[-2000:]}") from None
                time.sleep(0.05)

    def start_gateway(self, workers: int) -> tuple[subprocess.Popen, int, int]:
        """A gateway of `workers` processes: (process, HTTP port, gRPC port)."""
        port, grpc_port = free_port(), free_port()
        proc, log = self.spawn("gateway" if not self.sessions.get("gateway") else f"gateway-{port}", [
            sys.executable, "-m", "gateway", "--host", "127.0.0.1", "--port", str(port), "--grpc-port", str(grpc_port),
            "--workers", str(workers),
        ], {"REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0"})
        wait_http(f"http://127.0.0.1:{port}/v2/health/ready", 60, proc, log)
        return proc, port, grpc_port

    def start(self) -> None:
        from gateway.contract.signature import signature_text
        from graph_editor.onnx_inspect import inspect_onnx
        from graph_editor.samples import digits_classifier_onnx
        from workers.triton.client import model_load
        from workers.triton.repository import (
            DEFAULT_MAX_BATCH_SIZE,
            config_pbtxt,
            entry_write,
        )

        self.start_redis()
        triton, triton_log = self.spawn("triton", [
            sys.executable, "manage.py", "triton_serve", "--no-register", "--name", "bench",
            "--http-port", str(self.triton_port), "--grpc-port", str(self.grpc_port),
            "--metrics-port", str(self.metrics_port),
        ], {"TRITON_VAR_DIR": str(self.workdir / "triton"), "DJANGO_SETTINGS_MODULE": "portal.settings"})

        onnx_path = self.workdir / "digits.onnx"
        onnx_path.write_bytes(digits_classifier_onnx())
        signature = inspect_onnx(onnx_path)
        config = config_pbtxt(triton_name=TRITON_NAME, inputs=signature.inputs, outputs=signature.outputs,
                              has_batch_dim=signature.has_batch_dim, native_onnx=False, gpu=False)
        entry_write(repository=self.workdir / "triton" / "bench" / "models", triton_name=TRITON_NAME,
                    onnx_path=onnx_path, config=config, native_onnx=False)
        wait_http(f"{self.triton_url}/v2/health/ready", 60, triton, triton_log)
        model_load(self.triton_url, TRITON_NAME, timeout=120)

        self.redis.hset(key_entry_name(hash_api_key(self.api_key)), mapping={
            "tenant_id": "900", "key_id": "900", "scopes": "infer", "revoked": "0"})
        self.redis.hset(route_entry_name(900, PUBLIC_NAME), mapping={
            "deployment_id": "900", "model_version_id": "900", "triton_model": TRITON_NAME, "state": "ready",
            "http_url": self.triton_url, "grpc_url": f"127.0.0.1:{self.grpc_port}", "error": "",
            # What every request is checked against (gateway/signature.py), as the control plane writes it.
            "sig": signature_text(inputs=signature.inputs, outputs=signature.outputs,
                                  has_batch_dim=signature.has_batch_dim, max_batch_size=DEFAULT_MAX_BATCH_SIZE),
            "hw": "cpu"})
        for scope in ("t:900", "d:900", "k:900"):
            self.set_limits(scope, ALL_CHECKS_LIMITS)
        self.redis.hset(bill_entry_name(900), mapping=ALL_CHECKS_BILL)
        _, self.gateway_port, self.gateway_grpc_port = self.start_gateway(self.gateway_workers)

    def set_limits(self, scope: str, limits: dict) -> None:
        self.redis.delete(limits_entry_name(scope))
        self.redis.hset(limits_entry_name(scope), mapping=limits)

    @property
    def triton_url(self) -> str:
        return f"http://127.0.0.1:{self.triton_port}"

    def check_same_answers(self, body: bytes, json_size: int | None) -> None:
        """The gateway must answer what Triton answers, under the tenant's model name."""
        headers = {"Content-Type": "application/json"}
        if json_size is not None:
            headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(json_size)}
        direct = http("POST", f"{self.triton_url}/v2/models/{TRITON_NAME}/infer", body, headers)
        via = http("POST", f"http://127.0.0.1:{self.gateway_port}/v2/models/{PUBLIC_NAME}/infer", body,
                   {**headers, "Authorization": f"Bearer {self.api_key}"})
        if direct[0] != 200 or via[0] != 200:
            raise SystemExit(f"sanity check failed: direct {direct[0]} {direct[2][:300]!r}, "
                             f"gateway {via[0]} {via[2][:300]!r}")
        if "ratelimit-policy" not in {k.lower() for k in via[1]}:
            raise SystemExit("the gateway answered without rate-limit headers: are the limits in place?")
        expected = direct[2].replace(f'"{TRITON_NAME}"'.encode(), f'"{PUBLIC_NAME}"'.encode())
        if via[2] != expected:
            raise SystemExit(f"the gateway's answer differs from Triton's:\n{via[2][:300]!r}\n{expected[:300]!r}")

    def check_metering(self, expected: int) -> int:
        """Every request through the gateway left exactly one usage event."""
        deadline = time.monotonic() + 5
        while (recorded := self.redis.xlen(USAGE_STREAM)) < expected and time.monotonic() < deadline:
            time.sleep(0.1)
        if recorded != expected:
            raise SystemExit(f"metering lost or duplicated events: {recorded} recorded, {expected} expected")
        return recorded

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


# Limits high enough never to refuse: every check runs, none decides.
ALL_CHECKS_LIMITS = {"rate": "1000000000", "burst": "1000000000", "conc": "100000", "mreq": "1000000000000",
                     "mreq_soft": "0", "mcs": "1000000000", "mcs_soft": "0", "payload": str(64 * 2**20)}
# Prices, and a hard spend limit the estimate never reaches: each request is priced on
# admission and its cost counted on completion (billing/spend.py).
ALL_CHECKS_BILL = {"req_cpu": "400", "ms_cpu": "0.1", "limit": "1000000000000000", "month": "000000", "ofs": "0",
                   "ofs_next": "0", "cur": "USD"}


def scaling(bench: Bench, args, body: bytes) -> dict:
    """Throughput of 1 and 2 gateway processes at 32 clients, and a key rate shared by both."""
    results = {}
    request_for = {}
    for workers in (1, 2):
        proc, port, _ = bench.start_gateway(workers)
        request_for[workers] = build_request(port, f"/v2/models/{PUBLIC_NAME}/infer", body, None, bench.api_key)
        via = run_load(http_load(port, request_for[workers]), 32, args.seconds, args.warmup)
        rate, burst, seconds = 400, 40, 5.0
        bench.set_limits("k:900", {**ALL_CHECKS_LIMITS, "rate": str(rate), "burst": str(burst)})
        bench.redis.delete(f"{RATE_PREFIX}k:900")
        limited = run_load(http_load(port, request_for[workers]), 32, seconds, 0)
        bench.set_limits("k:900", ALL_CHECKS_LIMITS)
        admitted = limited["requests"] - limited["errors"]
        expected = burst + rate * seconds
        results[workers] = {"rps": round(via["rps"], 1), "p50_ms": round(via["p50_ms"], 3),
                            "rate_limit_admitted": admitted, "rate_limit_expected": expected,
                            "rate_limit_error": round(admitted / expected - 1, 4),
                            "sent": via["sent"] + limited["sent"]}
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    print(f"\n{'gateway processes':>17} | {'req/s at 32 clients':>19} {'p50 ms':>7} | "
          f"{'key rate 400/s, burst 40, 5 s: admitted':>40} {'expected':>8} {'error':>7}")
    for workers, row in results.items():
        print(f"{workers:>17} | {row['rps']:>19.0f} {row['p50_ms']:>7.2f} | {row['rate_limit_admitted']:>40} "
              f"{row['rate_limit_expected']:>8.0f} {row['rate_limit_error'] * 100:>6.2f}%")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="1,8,32", help="comma-separated concurrency levels")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds before each run")
    parser.add_argument("--gateway-workers", type=int, default=1)
    parser.add_argument("--protocols", default="json,binary,grpc", help="comma-separated: json, binary, grpc")
    parser.add_argument("--scaling", action="store_true",
                        help="also compare 1 and 2 gateway processes and check a shared rate limit")
    parser.add_argument("--hold", action="store_true",
                        help="after the runs, keep the stack up until interrupted (for profiling)")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    levels = [int(c) for c in args.clients.split(",")]

    bench = Bench(args.gateway_workers)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        bench.start()
        print(f"Triton :{bench.triton_port}, gateway :{bench.gateway_port} ({args.gateway_workers} worker(s)), "
              f"{os.cpu_count()} CPU cores shared by load generator, gateway, Triton and Redis; "
              f"{args.seconds:g} s per run; auth, quotas (tenant, deployment, key) and metering on", flush=True)
        rows = []
        sent = 0
        for protocol in args.protocols.split(","):
            if protocol == "grpc":
                direct_load = grpc_load(f"127.0.0.1:{bench.grpc_port}", grpc_infer_request(TRITON_NAME))
                gateway_load = grpc_load(f"127.0.0.1:{bench.gateway_grpc_port}", grpc_infer_request(PUBLIC_NAME),
                                         (("authorization", f"Bearer {bench.api_key}"),))
            else:
                body, json_size = infer_body(binary=protocol == "binary")
                bench.check_same_answers(body, json_size)
                sent += 1
                direct_load = http_load(bench.triton_port, build_request(
                    bench.triton_port, f"/v2/models/{TRITON_NAME}/infer", body, json_size, None))
                gateway_load = http_load(bench.gateway_port, build_request(
                    bench.gateway_port, f"/v2/models/{PUBLIC_NAME}/infer", body, json_size, bench.api_key))
            measured = {name: bench.sessions[name] for name in ("triton", "gateway", "redis")}
            for clients in levels:
                direct = run_load(direct_load, clients, args.seconds, args.warmup, measured)
                via = run_load(gateway_load, clients, args.seconds, args.warmup, measured)
                sent += via["sent"]
                rows.append((protocol, clients, direct, via))
        summary = print_table(rows)
        print_cpu(rows)
        summary["usage_events"] = bench.check_metering(sent)
        print(f"usage events recorded: {summary['usage_events']} for {sent} gateway requests")
        if args.scaling:
            body, _ = infer_body(binary=False)
            summary["scaling"] = scaling(bench, args, body)
        if args.hold:
            print(f"holding; gateway pids: {[p.pid for p in bench.procs]}; Ctrl-C to stop", flush=True)
            signal.pause()
        print(json.dumps(summary, sort_keys=True))
    except KeyboardInterrupt:
        pass
    finally:
        bench.stop()


def print_cpu(rows: list) -> None:
    """Where the machine's time goes: CPU per request of each process, at the highest load."""
    top = max(clients for _, clients, _, _ in rows)
    print(f"\nCPU per request at {top} clients, microseconds (Triton = tritonserver and its model process):")
    print(f"{'protocol':8} | {'direct: Triton':>14} | {'gateway path: Triton':>20} {'gateway':>8} {'Redis':>6}")
    for protocol, clients, direct, via in rows:
        if clients == top:
            print(f"{protocol:8} | {direct['cpu_us']['triton']:>14.0f} | {via['cpu_us']['triton']:>20.0f} "
                  f"{via['cpu_us']['gateway']:>8.0f} {via['cpu_us']['redis']:>6.0f}")


def print_table(rows: list) -> dict:
    header = (f"{'protocol':8} {'clients':>7} | {'direct req/s':>12} {'p50 ms':>7} {'p99 ms':>7} | "
              f"{'gateway req/s':>13} {'p50 ms':>7} {'p99 ms':>7} | "
              f"{'ratio':>5} {'+p50 ms':>7} {'+p99 ms':>7} | errors")
    print(header)
    print("-" * len(header))
    summary = {}
    for protocol, clients, direct, via in rows:
        ratio = via["rps"] / direct["rps"] if direct["rps"] else float("nan")
        added_p50, added_p99 = via["p50_ms"] - direct["p50_ms"], via["p99_ms"] - direct["p99_ms"]
        print(f"{protocol:8} {clients:>7} | {direct['rps']:>12.0f} {direct['p50_ms']:>7.2f} {direct['p99_ms']:>7.2f} | "
              f"{via['rps']:>13.0f} {via['p50_ms']:>7.2f} {via['p99_ms']:>7.2f} | "
              f"{ratio:>5.2f} {added_p50:>7.2f} {added_p99:>7.2f} | {direct['errors']}/{via['errors']}"
              + (f" {direct['statuses'] or ''}{via['statuses'] or ''}" if direct["errors"] or via["errors"] else ""))
        summary[f"{protocol}_c{clients}"] = {
            "direct_rps": round(direct["rps"], 1), "gateway_rps": round(via["rps"], 1), "ratio": round(ratio, 3),
            "added_p50_ms": round(added_p50, 3), "added_p99_ms": round(added_p99, 3),
            "errors": direct["errors"] + via["errors"], "cpu_us_direct": direct.get("cpu_us"),
            "cpu_us_gateway": via.get("cpu_us"),
        }
    return summary


if __name__ == "__main__":
    main()

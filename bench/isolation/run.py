"""The noisy-neighbour benchmark's run: the stack, the two tenants and the three phases."""
import argparse
import multiprocessing
import os
import signal
import sys
import time

import uvloop

import bench.isolation
from bench.isolation.clients import HttpClient, b_load, flood_process
from bench.isolation.health import TritonWatch, cpu_delta, machine_busy_s, triton_report
from bench.isolation.kinds import GRPC_KINDS, HTTP_KINDS, grpc_requests, http_requests, parse_mix
from bench.isolation.report import report
from bench.load import session_cpu_s
from bench.stack import scratch_stack, scratch_stop, wait

A_RATE_PER_SECOND = 200.0
A_RATE_BURST = 50
# B's own limit, lifted above the plan's (200 req/s) so that no B request is refused by it.
B_RATE_PER_SECOND = 100_000.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.isolation",
                                     description=bench.isolation.__doc__.splitlines()[0])
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
        wait(lambda pk=deployment.pk: Deployment.unscoped.get(pk=pk).state, 90,
             f"deployment {deployment.name} of {deployment.tenant.slug} to load",
             until=lambda state: state == DeploymentState.READY)
    return {tenant.slug: api_key_create(tenant=tenant, label="bench", scopes=["infer"])[1]
            for tenant in (quiet, noisy)}


def check_calls(port: int, requests: list[bytes]) -> None:
    """Each tenant's valid calls answer 200 before the load starts."""
    async def calls() -> list[str]:
        client = HttpClient(port, 30)
        try:
            return [await client.call(request) for request in requests]
        finally:
            client.close()

    outcomes = uvloop.run(calls())
    if outcomes != ["200"] * len(requests):
        raise SystemExit(f"the stack does not answer valid calls (B digits, A digits, A hog with n = 1): {outcomes}")

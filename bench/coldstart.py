"""Cold-start benchmark: `python -m bench.coldstart` (`make bench-coldstart`).

Starts the real stack on free ports (Triton, a Celery worker, the gateway, the metering
consumer; bench/stack.py) on a scratch database and Redis database of its own, deploys
the demo model (scikit-learn's digits classifier), then repeats: scale it to zero through
the unload service, wait until it is cold, and time one inference call through the
gateway from the client's side (a new connection, as a first caller after a quiet spell
would open). For every run it reads Triton's own load time for that wake (the worker
times the repository API's load call), the time the gateway held the call and the time
Triton took to answer it once loaded (both from the call's usage event: the first
inference of a fresh model instance is slower than a warm one).

    platform overhead = end to end - Triton's load - Triton's answer to the call

Goal: end to end <= 1.5 s, overhead <= 100 ms. Prints a table and, last, one JSON line."""
import argparse
import json
import statistics
import sys
import time
import urllib.error
import urllib.request

from bench.stack import scratch_stack, scratch_stop, wait

GOAL_END_TO_END_S = 1.5
GOAL_OVERHEAD_MS = 100.0


def infer(url: str, key: str, body: bytes) -> tuple[int, float, bytes]:
    request = urllib.request.Request(url, data=body, headers={"Authorization": f"Bearer {key}"})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            payload = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        payload, status = exc.read(), exc.code
    return status, time.perf_counter() - started, payload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.coldstart", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="cold starts to time (default 10)")
    args = parser.parse_args(argv)

    stack = scratch_stack("coldstart", redis_db=7)
    from billing.models import UsageEvent
    from graph_editor.samples import digits_classifier_onnx, digits_dataset
    from graph_editor.services import model_version_upload
    from tenants.models import Tenant
    from tenants.services import api_key_create
    from workers.models import Deployment, DeploymentState
    from workers.services import deployment_create, deployment_scale_to_zero

    stack.start()
    try:
        stack.register_servers()
        tenant = Tenant.objects.create(slug="bench", name="Bench")
        version = model_version_upload(tenant=tenant, model_name="digits", chunks=[digits_classifier_onnx()])
        deployment = deployment_create(tenant=tenant, model_version_id=version.pk, name="digits")
        wait(lambda: Deployment.unscoped.get(pk=deployment.pk).state, 60, "the deployment to load",
             until=lambda state: state == DeploymentState.READY)
        _, key = api_key_create(tenant=tenant, label="bench", scopes=["infer"])
        url = f"{stack.gateway_url}/v2/models/digits/infer"
        body = json.dumps({"inputs": [{"name": "X", "shape": [1, 64], "datatype": "FP32",
                                       "data": digits_dataset()[0][:1].ravel().tolist()}]}).encode()

        warm = []
        for _ in range(30):
            status, seconds, payload = infer(url, key, body)
            assert status == 200, payload
            warm.append(seconds)
        warm_s = statistics.median(warm[5:])

        runs = []
        print(f"{'run':>4}{'end to end ms':>16}{'Triton load ms':>16}{'held ms':>10}{'1st answer ms':>15}"
              f"{'overhead ms':>13}")
        for run in range(1, args.runs + 1):
            deployment_scale_to_zero(tenant=tenant, deployment_id=deployment.pk)
            wait(lambda: Deployment.unscoped.get(pk=deployment.pk).state, 30, "the deployment to go cold",
                 until=lambda state: state == DeploymentState.COLD)
            time.sleep(0.3)
            status, seconds, payload = infer(url, key, body)
            if status != 200:
                raise SystemExit(f"cold call failed: {status} {payload[:300]!r}")
            replica = Deployment.unscoped.get(pk=deployment.pk).replica_set.get()
            load_s = replica.load_seconds
            stack.wait_quiet()
            event = UsageEvent.objects.for_tenant(tenant).filter(cold_start=True).order_by("-occurred_at").first()
            if event is None:
                raise SystemExit("the cold call's usage event did not arrive")
            overhead_ms = seconds * 1000 - load_s * 1000 - event.upstream_ms
            runs.append({"end_to_end_ms": round(seconds * 1000, 1), "triton_load_ms": round(load_s * 1000, 1),
                         "held_ms": round(event.cold_start_ms, 1), "first_answer_ms": round(event.upstream_ms, 1),
                         "overhead_ms": round(overhead_ms, 1)})
            print(f"{run:>4}{seconds * 1000:>16.1f}{load_s * 1000:>16.1f}{event.cold_start_ms:>10.1f}"
                  f"{event.upstream_ms:>15.1f}{overhead_ms:>13.1f}")
    finally:
        scratch_stop(stack)

    def summary(field: str) -> dict:
        values = sorted(r[field] for r in runs if r[field] is not None)
        return {"p50": round(statistics.median(values), 1), "max": round(values[-1], 1)}

    result = {
        "runs": len(runs), "warm_call_ms": round(warm_s * 1000, 2),
        "end_to_end_ms": summary("end_to_end_ms"), "triton_load_ms": summary("triton_load_ms"),
        "held_ms": summary("held_ms"), "first_answer_ms": summary("first_answer_ms"),
        "overhead_ms": summary("overhead_ms"),
        "goal_end_to_end_ms": GOAL_END_TO_END_S * 1000, "goal_overhead_ms": GOAL_OVERHEAD_MS,
    }
    result["goal_met"] = (result["end_to_end_ms"]["p50"] <= GOAL_END_TO_END_S * 1000
                          and result["overhead_ms"]["p50"] <= GOAL_OVERHEAD_MS)
    print(f"warm call {result['warm_call_ms']} ms; end to end p50 {result['end_to_end_ms']['p50']} ms "
          f"(max {result['end_to_end_ms']['max']}), Triton load p50 {result['triton_load_ms']['p50']} ms, "
          f"platform overhead p50 {result['overhead_ms']['p50']} ms (max {result['overhead_ms']['max']})")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Live trace replay: `python -m workers.replay_live --trace <dir>` (`make bench-replay`).

Replays a slice of an Azure Functions 2019 trace against the real stack (tests/stack.py:
Triton, a Celery worker, Celery beat running the autoscaler, the gateway, the metering
consumer) on a scratch database and Redis database of its own, one trace minute per
second, and compares every function's cold starts with the simulator's
(workers/keepalive_replay.py) on the same slice and policy.

The slice: from minute --start, --minutes minutes; the first --functions functions of the
trace that are invoked in at least MIN_ACTIVE_MINUTES of those minutes and in at most
MAX_ACTIVE_SHARE of them (a function called nearly every minute never goes cold and
teaches nothing). One deployment of the demo model per function, keep-alive "adaptive"
(or --policy fixed), both with the platform's 600 s fixed keep-alive, i.e. 10 policy
minutes. All are scaled to zero before the replay, so that every first call is cold, as
in the simulator.

Time. The stack runs with KEEPALIVE_MINUTE_S=--minute-s (1: a policy minute lasts one
second) and AUTOSCALE_INTERVAL_S=--interval (0.2). The autoscaler turns Redis's clock into
policy minutes as floor(seconds / KEEPALIVE_MINUTE_S), so trace minute m is sent inside
one such minute of Redis's clock, at a seeded random point of CALL_WINDOW of it. Each
function invoked in minute m gets one call (how many does not matter to the policy), from
a pool large enough that a held call delays no other. A live cold start is a call the
gateway held while its deployment loaded (the usage event's cold_start, set as well on a
call held until the gateway gave up, 503 cold_start_timeout).

The simulator is keepalive_replay.replay itself, run per function with a wrapper that
records each minute's decision. Prints the slice, a per-function table (invocation-
minutes, cold starts and pre-warms, live and simulated; live pre-warms are the worker's
"autoscaler: prewarm" lines, a repeat before the load began counted once), totals, the
disagreeing minutes by what the simulator decided in them, replicas the health check
dropped, the non-200 calls, with --explain every disagreeing minute with the worker's
events around it, and, last, one JSON line.

Agreement, as observed (20 functions, 120 minutes, adaptive, two cores shared with other
work): 16 of 20 functions with exactly the simulator's cold starts, 47 live against 47
simulated, 4 of 487 invocation-minutes disagreeing, no failed call. Live pre-warms are
fewer than simulated ones by design: where the simulator unloads and pre-warms again
within the autoscaler's look-ahead, live keeps the deployment warm.

The first runs of this replay found platform faults, fixed since: the health check asked
Triton for readiness (400 while any model loads, so servers that scale models were taken
for dead and lost their replicas), a wake with no healthy server failed its deployment
for good, pre-warms started only when due (too late for a 1 s minute: now a pass and a
load time ahead, workers/autoscaler.py _lead_s), and timed-out holds were not marked cold.
With those, 0-1 of 20 functions agreed and 183-214 cold starts were seen live.

What disagreement remains comes from:

- Loads that overlap. The first minute of a slice wakes every function invoked in it at
  once (13 here); the loads queue on the worker's four threads and the cores, so a call in
  the next minute or two may be held as well (cold live, warm simulated).
- The look-ahead: more than a minute at 1 s minutes (1.2 s and up), so it can warm a call
  the simulator counts cold. At 60 s minutes it is a tenth of a minute.
- Fractional decisions. The autoscaler decides at now_ms / 1000 / KEEPALIVE_MINUTE_S, a
  fraction of a minute; the simulator at each minute's start. A keep-alive ending at a
  fraction (tail * (1 + MARGIN)) is unloaded live partway through a minute the simulator
  keeps whole. At 60 s minutes this is noise."""
import argparse
import json
import math
import random
import re
import statistics
import sys
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from workers.keepalive import Action, Decision, Policy, policy_for
from workers.keepalive_replay import Function, replay, trace_read

MINUTE_S = 1.0
AUTOSCALE_INTERVAL_S = 0.2
# Where in its minute a call is sent, as a share of the minute.
CALL_WINDOW = (0.05, 0.6)
MIN_ACTIVE_MINUTES = 3
MAX_ACTIVE_SHARE = 0.8
IDLE_S = 600
# Seconds at least between the first autoscaler pass and the first replayed minute.
LEAD_S = 3


# ---- the slice and the simulator ------------------------------------------------------

def slice_pick(functions: list[Function], *, count: int, start: int, minutes: int) -> list[Function]:
    """The first `count` functions invoked in MIN_ACTIVE_MINUTES to MAX_ACTIVE_SHARE of the
    slice's minutes, cut to the slice."""
    picked = []
    for function in functions:
        counts = function.counts[start:start + minutes]
        active = sum(1 for c in counts if c)
        if MIN_ACTIVE_MINUTES <= active <= minutes * MAX_ACTIVE_SHARE:
            picked.append(Function(name=function.name, memory_mb=function.memory_mb, counts=counts))
            if len(picked) == count:
                break
    return picked


class DecisionLog:
    """Answers as `policy` does and remembers each minute's `decide`, so that a replay tells
    which minutes it counted cold."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.name = policy.name
        self.actions: dict[int, Action] = {}

    def on_invocation(self, deployment_id: object, now: float, *, ends_at: float | None = None) -> Decision:
        return self.policy.on_invocation(deployment_id, now, ends_at=ends_at)

    def decide(self, deployment_id: object, now: float) -> Action:
        action = self.policy.decide(deployment_id, now)
        self.actions[int(now)] = action
        return action

    def state_dump(self, deployment_id: object) -> dict:
        return self.policy.state_dump(deployment_id)

    def state_load(self, deployment_id: object, data: dict) -> None:
        self.policy.state_load(deployment_id, data)


@dataclass
class Simulated:
    cold_minutes: list[int]
    prewarms: int
    actions: dict[int, Action]


def simulate(kind: str, function: Function) -> Simulated:
    """keepalive_replay.replay on one function with a fresh policy (functions do not share
    state, so per function this is the simulator's whole answer)."""
    log = DecisionLog(policy_for(kind, IDLE_S / 60))
    result = replay(log, [function])
    cold = [m for m, c in enumerate(function.counts) if c and log.actions[m] == "unload"]
    assert len(cold) == result.cold_starts
    return Simulated(cold_minutes=cold, prewarms=result.prewarms, actions=log.actions)


# ---- the live side --------------------------------------------------------------------

@dataclass
class Call:
    function: int
    minute: int
    offset: float  # share of the minute
    sent: float = math.nan  # in trace minutes since the replay's base
    status: int = 0
    code: str = ""
    latency_s: float = math.nan
    request_id: str = ""
    cold: bool | None = None
    held_ms: float | None = None


def infer(url: str, key: str, body: bytes) -> tuple[int, str, float, str]:
    """Status, error code (empty on success), seconds, request id."""
    request = urllib.request.Request(url, data=body, headers={"Authorization": f"Bearer {key}"})
    started = time.perf_counter()
    code = ""
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
            status, headers = response.status, response.headers
    except urllib.error.HTTPError as exc:
        status, headers = exc.code, exc.headers
        try:
            code = json.loads(exc.read()).get("code", "")
        except ValueError:
            code = "unparsable"
    return status, code, time.perf_counter() - started, headers.get("x-request-id", "")


def wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)


LOG_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): \w+/[^\]]*\] (.*)$")


def worker_events(log: str, deployments: dict[int, str], base_s: float,
                  minute_s: float) -> dict[int, list[tuple[float, str]]]:
    """Per deployment id, what the worker log says happened to it, in trace minutes since
    `base_s` (our clock): prewarm and unload passes, loads routed, scale-downs, evictions,
    replicas dropped by the health check."""
    by_name = {name: pk for pk, name in deployments.items()}
    patterns = [
        (re.compile(r"autoscaler: prewarm (\S+)"), "prewarm", True),
        (re.compile(r"autoscaler: scale_to_zero (\S+)"), "unload", True),
        (re.compile(r"deployment (\d+): replica on \S+ routed"), "ready", False),
        (re.compile(r"deployment (\d+) scaled to zero"), "cold", False),
        (re.compile(r"evicting (\S+) from"), "evicted", True),
        (re.compile(r"server \S+ is down: (\S+) loses"), "server_down", True),
    ]
    events: dict[int, list[tuple[float, str]]] = {pk: [] for pk in deployments}
    for line in log.splitlines():
        match = LOG_LINE.match(line)
        if not match:
            continue
        at = (datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp() - base_s) / minute_s
        for pattern, what, named in patterns:
            found = pattern.search(match[2])
            if found:
                pk = by_name.get(found[1]) if named else int(found[1])
                if pk in events:
                    events[pk].append((at, what))
    return events


def prewarms_count(events: list[tuple[float, str]], minutes: int) -> int:
    """Pre-warms in the replay's minutes; passes that queue the wake again before the load
    is done repeat the same pre-warm."""
    count, pending = 0, False
    for at, what in events:
        if what == "prewarm" and 0 <= at < minutes and not pending:
            count, pending = count + 1, True
        elif what in ("ready", "cold"):
            pending = False
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", type=Path, required=True, help="directory with invocations.csv and memory.csv")
    parser.add_argument("--functions", type=int, default=20, help="functions (deployments) to replay (default 20)")
    parser.add_argument("--minutes", type=int, default=120, help="trace minutes to replay (default 120)")
    parser.add_argument("--start", type=int, default=0, help="first trace minute of the slice (default 0)")
    parser.add_argument("--policy", choices=["adaptive", "fixed"], default="adaptive",
                        help="keep-alive of every deployment (default adaptive; both fall back to 10 minutes)")
    parser.add_argument("--minute-s", type=float, default=MINUTE_S,
                        help=f"seconds a trace minute lasts (default {MINUTE_S:g})")
    parser.add_argument("--interval", type=float, default=AUTOSCALE_INTERVAL_S,
                        help=f"autoscaler pass interval in seconds (default {AUTOSCALE_INTERVAL_S:g})")
    parser.add_argument("--explain", action="store_true", help="print each disagreeing minute with its live events")
    args = parser.parse_args(argv)

    functions = slice_pick(trace_read(args.trace), count=args.functions, start=args.start, minutes=args.minutes)
    if not functions:
        raise SystemExit("no function of the trace fits the slice")
    print(f"{len(functions)} functions, minutes {args.start}-{args.start + args.minutes - 1} of {args.trace}, "
          f"policy {args.policy}, 1 trace minute = {args.minute_s:g} s, autoscaler every {args.interval:g} s")
    for i, function in enumerate(functions):
        pattern = "".join("x" if c else "." for c in function.counts)
        print(f"  {i:>3} {function.name[:10]} {sum(1 for c in function.counts if c):>4} {pattern}")
    simulated = [simulate(args.policy, f) for f in functions]

    from workers.bench_coldstart import scratch_stack, scratch_stop

    # The stack's processes inherit the policy minute and the pass interval.
    stack = scratch_stack("replay", redis_db=6, env={"KEEPALIVE_MINUTE_S": f"{args.minute_s:g}",
                                                      "AUTOSCALE_INTERVAL_S": f"{args.interval:g}"})
    workdir = stack.workdir
    print(f"stack logs in {workdir}")
    stack.start()
    try:
        tenant, deployments, key = deployments_prepare(stack, functions, args.policy)
        calls, base_s = calls_send(stack, functions, deployments, key, args)
        stack.kill("beat")
        calls_meter(stack, tenant, calls)
        exited = sorted(name for name, proc in stack.procs.items() if name != "beat" and proc.poll() is not None)
        live_events = worker_events(stack.log("worker"), {d.pk: d.triton_name for d in deployments}, base_s,
                                    args.minute_s)
    finally:
        scratch_stop(stack)

    if exited:
        print(f"stack processes that exited during the replay: {', '.join(exited)} (logs in {workdir})")
    return report(args, functions, simulated, calls, [live_events[d.pk] for d in deployments], exited)


def deployments_prepare(stack, functions: list[Function], policy: str) -> tuple:
    """A tenant with one cold deployment per function, room for all of them on the server,
    and an API key: (tenant, deployments, key)."""
    from graph_editor.samples import digits_classifier_onnx
    from graph_editor.services import model_version_upload
    from tenants.models import QuotaLevel
    from tenants.quotas import quota_set
    from tenants.services import api_key_create, tenant_create
    from workers.models import Deployment, DeploymentState, Replica, TritonServer
    from workers.services import deployment_create, deployment_scale_to_zero

    stack.register_servers()
    n = len(functions)
    tenant = tenant_create(name="Replay", slug="replay")
    quota_set(level=QuotaLevel.TENANT, target=tenant, values={
        "max_deployments": max(n, 20), "max_concurrency": 10 * n + 64, "rate_per_second": 1000.0,
        "rate_burst": 1000})
    version = model_version_upload(tenant=tenant, model_name="digits", chunks=[digits_classifier_onnx()])
    deployments = [deployment_create(tenant=tenant, model_version_id=version.pk, name=f"fn{i:02d}-{f.name[:8]}",
                                     keepalive=policy, keepalive_idle_s=IDLE_S)
                   for i, f in enumerate(functions)]
    ids = [d.pk for d in deployments]
    wait(lambda: Deployment.unscoped.filter(pk__in=ids, state=DeploymentState.READY).count() == n,
         60 + 5 * n, "the deployments to load")
    stack.wait_quiet()

    # Room for all of them at once: an eviction would be a cold start no policy decided.
    server = TritonServer.objects.get(name=stack.triton_name)
    per_replica = max(Replica.objects.filter(deployment_id__in=ids).values_list("memory_mb", flat=True))
    capacity = max(server.memory_mb, math.ceil(1.5 * n * per_replica))
    TritonServer.objects.filter(pk=server.pk).update(memory_mb=capacity)
    print(f"replica memory {per_replica} MB measured; server capacity {capacity} MB for {n} replicas")

    for pk in ids:
        deployment_scale_to_zero(tenant=tenant, deployment_id=pk)
    wait(lambda: Deployment.unscoped.filter(pk__in=ids, state=DeploymentState.COLD).count() == n,
         30 + n, "the deployments to scale to zero")
    stack.wait_quiet()
    _, key = api_key_create(tenant=tenant, label="replay", scopes=["infer"])
    return tenant, deployments, key


def calls_send(stack, functions: list[Function], deployments: list, key: str, args) -> tuple[list[Call], float]:
    """Start beat, then send each function's calls in their minutes; returns the calls
    (status, latency, request id filled in) and the replay's base on our clock."""
    from gateway.contract.keys import AUTOSCALE_LAST_PASS as LAST_PASS_KEY
    from graph_editor.samples import digits_dataset
    from tenants.directory import redis_client

    body = json.dumps({"inputs": [{"name": "X", "shape": [1, 64], "datatype": "FP32",
                                   "data": digits_dataset()[0][:1].ravel().tolist()}]}).encode()
    urls = [f"{stack.gateway_url}/v2/models/{d.name}/infer" for d in deployments]
    r = redis_client()
    r.delete(LAST_PASS_KEY)
    stack.beat_start({"KEEPALIVE_MINUTE_S": f"{args.minute_s:g}", "AUTOSCALE_INTERVAL_S": f"{args.interval:g}"})
    wait(lambda: r.get(LAST_PASS_KEY) is not None, 30, "the first autoscaler pass")

    rng = random.Random(0)
    calls = sorted((Call(function=i, minute=m, offset=rng.uniform(*CALL_WINDOW))
                    for i, f in enumerate(functions) for m, c in enumerate(f.counts) if c),
                   key=lambda c: c.minute + c.offset)
    # The base is the start of a policy minute of Redis's clock; our clock may differ from it.
    seconds, micros = r.time()
    skew_s = seconds + micros / 1e6 - time.time()
    base_s = (math.floor(seconds / args.minute_s) + math.ceil(LEAD_S / args.minute_s)) * args.minute_s - skew_s
    print(f"replaying {len(calls)} calls")

    def send(call: Call) -> None:
        call.sent = (time.time() - base_s) / args.minute_s
        call.status, call.code, call.latency_s, call.request_id = infer(urls[call.function], key, body)

    with ThreadPoolExecutor(max_workers=max(4 * len(functions), 16)) as pool:
        for call in calls:
            time.sleep(max(0.0, base_s + (call.minute + call.offset) * args.minute_s - time.time()))
            pool.submit(send, call)
        time.sleep(max(0.0, base_s + args.minutes * args.minute_s - time.time()))
    return calls, base_s


def calls_meter(stack, tenant, calls: list[Call]) -> None:
    """Fill in each call's cold start from its usage event."""
    from billing.models import UsageEvent

    stack.wait_quiet()
    request_ids = [c.request_id for c in calls if c.request_id]
    metered = UsageEvent.objects.for_tenant(tenant).filter(request_id__in=request_ids)
    deadline = time.monotonic() + 30
    while metered.count() < len(request_ids) and time.monotonic() < deadline:
        time.sleep(0.2)
    events = {str(e.request_id): e for e in metered}
    for call in calls:
        event = events.get(str(uuid.UUID(call.request_id))) if call.request_id else None
        if event is not None:
            call.cold, call.held_ms = event.cold_start, event.cold_start_ms


def report(args, functions: list[Function], simulated: list[Simulated], calls: list[Call],
           live_events: list[list[tuple[float, str]]], exited: list[str]) -> int:
    rows, mismatches = [], []
    print(f"\n{'#':>3} {'function':<11}{'inv-min':>8}{'cold live':>10}{'cold sim':>9}"
          f"{'prewarm live':>13}{'prewarm sim':>12}")
    for i, (function, sim) in enumerate(zip(functions, simulated)):
        mine = [c for c in calls if c.function == i]
        prewarms = prewarms_count(live_events[i], args.minutes)
        row = {"function": function.name[:10], "invocation_minutes": len(mine),
               "cold_live": sum(1 for c in mine if c.cold), "cold_simulated": len(sim.cold_minutes),
               "prewarms_live": prewarms, "prewarms_simulated": sim.prewarms}
        rows.append(row)
        print(f"{i:>3} {row['function']:<11}{row['invocation_minutes']:>8}{row['cold_live']:>10}"
              f"{row['cold_simulated']:>9}{prewarms:>13}{sim.prewarms:>12}")
        for call in mine:
            simulated_cold = call.minute in sim.cold_minutes
            if bool(call.cold) != simulated_cold:
                mismatches.append((i, call, simulated_cold, sim.actions[call.minute]))

    total = {k: sum(row[k] for row in rows) for k in ("invocation_minutes", "cold_live", "cold_simulated",
                                                     "prewarms_live", "prewarms_simulated")}
    print(f"{'':>3} {'total':<11}{total['invocation_minutes']:>8}{total['cold_live']:>10}"
          f"{total['cold_simulated']:>9}{total['prewarms_live']:>13}{total['prewarms_simulated']:>12}")
    matching = sum(1 for row in rows if row["cold_live"] == row["cold_simulated"])
    agreement = round(matching / len(rows), 4)
    failed = [c for c in calls if c.status != 200]
    unmetered = [c for c in calls if c.cold is None]
    misaligned = [c for c in calls if math.floor(c.sent) != c.minute]
    evictions = sum(1 for events in live_events for _, what in events if what == "evicted")
    lost = sum(1 for events in live_events for _, what in events if what == "server_down")
    print(f"functions whose cold starts match exactly: {matching}/{len(rows)} ({agreement:.0%}); "
          f"cold starts live {total['cold_live']}, simulated {total['cold_simulated']} "
          f"(difference {total['cold_live'] - total['cold_simulated']:+d}); minutes that disagree: {len(mismatches)}")
    latencies = sorted(c.latency_s * 1000 for c in calls if c.status == 200)
    if latencies:
        print(f"calls {len(calls)}: p50 {statistics.median(latencies):.1f} ms, max {latencies[-1]:.1f} ms; "
              f"non-200 {len(failed)}; sent outside their minute {len(misaligned)}; without a usage event "
              f"{len(unmetered)}; evictions {evictions}")
    by_action = {action: sum(1 for *_, a in mismatches if a == action) for action in ("load", "keep", "unload")}
    print(f"disagreeing minutes by the simulator's decision: load {by_action['load']} (pre-warmed, live not "
          f"loaded in time), keep {by_action['keep']} (kept warm, live cold), unload {by_action['unload']} "
          f"(cold, live warm)")
    if lost:
        print(f"the health check dropped replicas {lost} times (server declared down): each is a cold start "
              "no policy decided")
    for call in failed:
        print(f"  non-200: {functions[call.function].name[:10]} minute {call.minute} status {call.status} "
              f"{call.code} after {call.latency_s * 1000:.0f} ms")
    if args.explain:
        for i, call, simulated_cold, action in mismatches:
            nearby = ", ".join(f"{at:.2f} {what}" for at, what in live_events[i]
                               if call.minute - 2 <= at < call.minute + 1)
            held = f", held {call.held_ms:.0f} ms" if call.cold and call.held_ms is not None else ""
            held += f", answered {call.status} after {call.latency_s * 1000:.0f} ms"
            print(f"  {functions[i].name[:10]} minute {call.minute}: live {'cold' if call.cold else 'warm'} "
                  f"(sent at {call.sent:.2f}{held}), simulated {'cold' if simulated_cold else 'warm'} "
                  f"({action}); live: {nearby or 'nothing'}")

    result = {
        "policy": args.policy, "functions": len(rows), "minutes": args.minutes, "start": args.start,
        "minute_s": args.minute_s, "interval_s": args.interval, "calls": len(calls), "non_200": len(failed),
        "misaligned_calls": len(misaligned), "unmetered_calls": len(unmetered), "evictions": evictions,
        "replicas_lost_to_health_check": lost, "exited_processes": exited, **total,
        "cold_difference": total["cold_live"] - total["cold_simulated"],
        "cold_abs_difference": sum(abs(row["cold_live"] - row["cold_simulated"]) for row in rows),
        "disagreeing_minutes": len(mismatches), "disagreeing_by_simulated_action": by_action, "agreement": agreement,
        "per_function": rows,
    }
    print(json.dumps(result))
    return 0 if not failed and not exited else 1


if __name__ == "__main__":
    sys.exit(main())

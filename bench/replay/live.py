"""The replay's live side: one cold deployment per function, the calls sent in their
minutes, their cold starts from the usage events, and what the worker's log says
happened to each deployment."""
import json
import math
import random
import re
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from bench.keepalive import Function
from bench.replay.simulated import IDLE_S
from bench.stack import wait

# Where in its minute a call is sent, as a share of the minute.
CALL_WINDOW = (0.05, 0.6)
# Seconds at least between the first autoscaler pass and the first replayed minute.
LEAD_S = 3


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

    def states() -> Counter:
        return Counter(Deployment.unscoped.filter(pk__in=ids).values_list("state", flat=True))

    wait(states, 60 + 5 * n, "the deployments to load", until=lambda seen: seen[DeploymentState.READY] == n,
         interval=0.1)
    stack.wait_quiet()

    # Room for all of them at once: an eviction would be a cold start no policy decided.
    server = TritonServer.objects.get(name=stack.triton_name)
    per_replica = max(Replica.objects.filter(deployment_id__in=ids).values_list("memory_mb", flat=True))
    capacity = max(server.memory_mb, math.ceil(1.5 * n * per_replica))
    TritonServer.objects.filter(pk=server.pk).update(memory_mb=capacity)
    print(f"replica memory {per_replica} MB measured; server capacity {capacity} MB for {n} replicas")

    for pk in ids:
        deployment_scale_to_zero(tenant=tenant, deployment_id=pk)
    wait(states, 30 + n, "the deployments to scale to zero", until=lambda seen: seen[DeploymentState.COLD] == n,
         interval=0.1)
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
    wait(lambda: r.get(LAST_PASS_KEY), 30, "the first autoscaler pass", until=lambda at: at is not None,
         interval=0.1)

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

"""The live autoscaler: one pass per beat (AUTOSCALE_INTERVAL_S) over the deployments.

Per deployment it reads (and resets) the activity the gateway recorded since the last
pass (`gw:act:<id>`: first and last call in milliseconds of Redis's clock, and the
upstream microseconds), and then:

- feeds the calls to its keep-alive policy (workers/keepalive.py) in the simulator's own
  unit, the invocation-minute: every minute of the policy clock that had a call is one
  invocation starting at that minute and ending at the next. A policy minute lasts
  KEEPALIVE_MINUTE_S seconds (60; a time-compressed replay makes it shorter). With
  passes at least once a minute, the first and last call of a pass cover every active
  minute, so the live policy hears exactly what the replay simulator would;
- asks the policy whether the deployment should be resident now: "unload" scales a
  warm deployment to zero, "load" pre-warms a cold one (min_instances >= 1 keeps it warm
  whatever the policy says). The simulator loads instantly at the start of a pre-warm
  window; live, the load has to be done by then, so the autoscaler looks ahead by a pass
  and the deployment's load time (`_lead_s`): a pre-warm due by then starts now, and a
  warm deployment due for one then is not unloaded in between. A deployment never
  called yet keeps its keep-alive idle seconds from when it became ready;
- sets the Triton instance count from demand: the upstream time of the pass over its
  length is the average number of requests in service; each instance should carry at
  most TARGET_BUSY of one, within [max(1, min_instances), max_instances]. More instances
  are applied at once, fewer only after INSTANCES_DOWN_AFTER_S of lower demand.

The policy's state (histogram, last decision) lives on the deployment row, so any worker
can run the next pass. One pass runs at a time (a Redis lock)."""
import logging
import math
from datetime import datetime
from datetime import timezone as dt_timezone

from django.conf import settings
from django.db import transaction

from gateway.contract.keys import AUTOSCALE_LAST_PASS, AUTOSCALE_LOCK, activity_name
from gateway.contract.scripts import lua_source
from tenants.directory import redis_client
from workers.keepalive import policy_for
from workers.models import Deployment, DeploymentState, ReplicaState

log = logging.getLogger(__name__)
TARGET_BUSY = 0.7


def redis_now_ms() -> int:
    seconds, micros = redis_client().time()
    return seconds * 1000 + micros // 1000


def autoscale_run(now_ms: int | None = None) -> dict:
    """One pass; returns what it did per deployment id (only those it acted on)."""
    r = redis_client()
    if not r.set(AUTOSCALE_LOCK, "1", nx=True, px=30_000):
        return {}
    try:
        return _pass(r, redis_now_ms() if now_ms is None else now_ms)
    finally:
        r.delete(AUTOSCALE_LOCK)


def _pass(r, now_ms: int) -> dict:
    from workers import tasks

    # Loading ones too: their calls belong in their histograms (they act only once ready or cold).
    deployments = list(Deployment.unscoped.filter(state__in=[DeploymentState.READY, DeploymentState.COLD,
                                                             DeploymentState.LOADING, DeploymentState.PENDING])
                       .prefetch_related("replica_set"))
    keys = [activity_name(d.pk) for d in deployments]
    reply = r.eval(lua_source("activity_take"), len(keys), *keys, AUTOSCALE_LAST_PASS, now_ms)
    previous_ms = int(reply[-1]) if reply[-1] else None
    interval_s = (now_ms - previous_ms) / 1000 if previous_ms and now_ms > previous_ms else None
    minute_s = settings.KEEPALIVE_MINUTE_S
    now_minutes = now_ms / 1000 / minute_s
    done = {}
    for deployment, raw in zip(deployments, reply[:-1]):
        activity = {raw[i]: int(raw[i + 1]) for i in range(0, len(raw), 2)} if raw else {}
        action = _deployment_pass(deployment, activity, now_ms, now_minutes, minute_s, interval_s, tasks)
        if action:
            done[deployment.pk] = action
    return done


def _deployment_pass(deployment: Deployment, activity: dict, now_ms: int, now_minutes: float, minute_s: float,
                     interval_s: float | None, tasks) -> str:
    policy = policy_for(deployment.keepalive, deployment.keepalive_idle_s / 60)
    state = dict(deployment.keepalive_state or {})
    if state.get("policy"):
        policy.state_load(deployment.pk, state["policy"])
    last_minute = state.get("minute")
    fields = {}
    if "l" in activity:
        first = math.floor(activity.get("f", activity["l"]) / 1000 / minute_s)
        last = math.floor(activity["l"] / 1000 / minute_s)
        for minute in sorted({first, last}):
            if last_minute is None or minute > last_minute:
                policy.on_invocation(deployment.pk, minute, ends_at=minute + 1)
                last_minute = minute
        state["minute"] = last_minute
        state["policy"] = policy.state_dump(deployment.pk)
        fields["last_used_at"] = datetime.fromtimestamp(activity["l"] / 1000, tz=dt_timezone.utc)

    action = ""
    if deployment.min_instances > 0:
        if deployment.state == DeploymentState.COLD:
            tasks.deployment_wake.delay(deployment.pk)
            action = "wake"
    else:
        if last_minute is None:
            # Never called: resident for its idle seconds after it became ready.
            since = deployment.ready_at.timestamp() if deployment.ready_at else now_ms / 1000
            wanted = "keep" if now_ms / 1000 < since + deployment.keepalive_idle_s else "unload"
        else:
            wanted = policy.decide(deployment.pk, now_minutes)
            if wanted == "unload" and policy.decide(deployment.pk, now_minutes + _lead_s(deployment) / minute_s) \
                    == "load":
                wanted = "load"
        if wanted == "unload" and deployment.state == DeploymentState.READY:
            tasks.deployment_scale_down.delay(deployment.pk, f"idle ({deployment.keepalive} keep-alive)")
            action = "scale_to_zero"
        elif wanted == "load" and deployment.state == DeploymentState.COLD:
            tasks.deployment_wake.delay(deployment.pk)
            action = "prewarm"

    if deployment.state == DeploymentState.READY and not action and interval_s:
        action = _instances_pass(deployment, activity, now_ms, interval_s, state, tasks)

    if state != (deployment.keepalive_state or {}):
        fields["keepalive_state"] = state
    if fields:
        with transaction.atomic():
            Deployment.unscoped.filter(pk=deployment.pk).update(**fields)
    if action:
        log.info("autoscaler: %s %s", action, deployment.triton_name)
    return action


def _lead_s(deployment: Deployment) -> float:
    """How far ahead a pre-warm starts: the policy wants the deployment resident from the
    start of its pre-warm window, and the load must be done by then. The next pass may
    come an interval later, and a load takes about its last load time (twice that, for a
    busy server; at least a second)."""
    return settings.AUTOSCALE_INTERVAL_S + max(1.0, 2 * (deployment.load_seconds or 0))


def _instances_pass(deployment: Deployment, activity: dict, now_ms: int, interval_s: float, state: dict,
                    tasks) -> str:
    replicas = sum(1 for r in deployment.replica_set.all() if r.state == ReplicaState.READY) or 1
    busy = activity.get("us", 0) / 1_000_000 / interval_s / replicas
    floor = max(1, deployment.min_instances)
    wanted = min(max(math.ceil(busy / TARGET_BUSY), floor), deployment.max_instances)
    if wanted > deployment.instances:
        state.pop("low_since", None)
        tasks.deployment_reconfigure.delay(deployment.pk, wanted)
        return f"instances {deployment.instances}->{wanted}"
    if wanted < deployment.instances:
        low_since = state.setdefault("low_since", now_ms)
        if now_ms - low_since >= settings.INSTANCES_DOWN_AFTER_S * 1000:
            state.pop("low_since", None)
            tasks.deployment_reconfigure.delay(deployment.pk, wanted)
            return f"instances {deployment.instances}->{wanted}"
    else:
        state.pop("low_since", None)
    return ""

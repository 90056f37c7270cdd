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

`decide` makes those choices for one deployment and writes nothing; the pass
(`autoscale_run`) reads the activity from Redis, saves what `decide` returns and queues
its work. The policy's state (histogram, last decision) lives on the deployment row, so
any worker can run the next pass. One pass runs at a time (a Redis lock)."""
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from django.conf import settings

from gateway.contract.keys import AUTOSCALE_LAST_PASS, AUTOSCALE_LOCK, activity_name
from gateway.contract.scripts import lua_source
from tenants.directory import redis_client
from workers import queue
from workers.keepalive import Policy, policy_for
from workers.models import Deployment, DeploymentState, ReplicaState

log = logging.getLogger(__name__)
TARGET_BUSY = 0.7

# "wake": min_instances keeps a cold deployment warm; "prewarm": the policy loads a cold
# one; "scale_to_zero": the policy unloads a ready one; "instances": a new instance count.
ScaleAction = Literal["", "wake", "prewarm", "scale_to_zero", "instances"]


@dataclass(frozen=True, slots=True)
class Activity:
    """What the gateway recorded for one deployment over a pass (`gw:act:<id>`)."""

    first_ms: int | None = None  # its first and last call, in ms of Redis's clock (None: no call)
    last_ms: int | None = None
    upstream_us: int = 0  # the time its calls spent in Triton
    interval_s: float | None = None  # the pass's length: since the previous pass (None: the first)

    @classmethod
    def from_record(cls, record: dict, interval_s: float | None) -> "Activity":
        last = record.get("l")
        return cls(first_ms=record.get("f", last) if last is not None else None, last_ms=last,
                   upstream_us=record.get("us", 0), interval_s=interval_s)


@dataclass(frozen=True, slots=True)
class ScaleDecision:
    """What a pass does with one deployment, and what it saves on the deployment's row."""

    action: ScaleAction = ""
    instances: int | None = None  # with "instances": the count to set
    keepalive_state: dict | None = None  # the policy's state to save; None: unchanged
    last_used_at: datetime | None = None  # its last call, when the pass saw one

    def label(self, deployment: Deployment) -> str:
        if self.action == "instances":
            return f"instances {deployment.instances}->{self.instances}"
        return self.action


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
    # Loading ones too: their calls belong in their histograms (they act only once ready or cold).
    deployments = list(Deployment.unscoped.filter(state__in=[DeploymentState.READY, DeploymentState.COLD,
                                                             DeploymentState.LOADING, DeploymentState.PENDING])
                       .prefetch_related("replica_set"))
    keys = [activity_name(d.pk) for d in deployments]
    reply = r.eval(lua_source("activity_take"), len(keys), *keys, AUTOSCALE_LAST_PASS, now_ms)
    previous_ms = int(reply[-1]) if reply[-1] else None
    interval_s = (now_ms - previous_ms) / 1000 if previous_ms and now_ms > previous_ms else None
    done = {}
    for deployment, raw in zip(deployments, reply[:-1], strict=True):
        record = {raw[i]: int(raw[i + 1]) for i in range(0, len(raw), 2)}
        decision = decide(deployment, Activity.from_record(record, interval_s), now_ms)
        _apply(deployment, decision)
        if decision.action:
            done[deployment.pk] = decision.label(deployment)
    return done


def _apply(deployment: Deployment, decision: ScaleDecision) -> None:
    fields = {}
    if decision.last_used_at is not None:
        fields["last_used_at"] = decision.last_used_at
    if decision.keepalive_state is not None:
        fields["keepalive_state"] = decision.keepalive_state
    if fields:
        Deployment.unscoped.filter(pk=deployment.pk).update(**fields)
    if decision.action in ("wake", "prewarm"):
        queue.deployment_wake(deployment.pk)
    elif decision.action == "scale_to_zero":
        queue.deployment_scale_down(deployment.pk, f"idle ({deployment.keepalive} keep-alive)")
    elif decision.action == "instances":
        queue.deployment_reconfigure(deployment.pk, decision.instances)
    if decision.action:
        log.info("autoscaler: %s %s", decision.label(deployment), deployment.triton_name)


def decide(deployment: Deployment, activity: Activity, now_ms: int) -> ScaleDecision:
    """What the pass at `now_ms` (ms of Redis's clock) does with `deployment`, given its
    activity since the previous pass. It reads the deployment (its replicas, prefetched
    by the pass) and the settings, and writes nothing."""
    minute_s = settings.KEEPALIVE_MINUTE_S
    policy = policy_for(deployment.keepalive, deployment.keepalive_idle_s / 60)
    state = dict(deployment.keepalive_state or {})
    if state.get("policy"):
        policy.state_load(deployment.pk, state["policy"])
    last_minute = state.get("minute")
    last_used_at = None
    if activity.last_ms is not None:
        first = math.floor(activity.first_ms / 1000 / minute_s)
        last = math.floor(activity.last_ms / 1000 / minute_s)
        for minute in sorted({first, last}):
            if last_minute is None or minute > last_minute:
                policy.on_invocation(deployment.pk, minute, ends_at=minute + 1)
                last_minute = minute
        state["minute"] = last_minute
        state["policy"] = policy.state_dump(deployment.pk)
        last_used_at = datetime.fromtimestamp(activity.last_ms / 1000, tz=UTC)

    action = _residency(deployment, policy, last_minute, now_ms)
    instances = None
    if deployment.state == DeploymentState.READY and not action and activity.interval_s:
        instances = _instances(deployment, activity, now_ms, state)
        if instances is not None:
            action = "instances"
    changed = state != (deployment.keepalive_state or {})
    return ScaleDecision(action=action, instances=instances, keepalive_state=state if changed else None,
                         last_used_at=last_used_at)


def _residency(deployment: Deployment, policy: Policy, last_minute: int | None, now_ms: int) -> ScaleAction:
    """Whether to load or unload the deployment now ("" for neither)."""
    if deployment.min_instances > 0:
        return "wake" if deployment.state == DeploymentState.COLD else ""
    if last_minute is None:
        # Never called: resident for its idle seconds after it became ready.
        since = deployment.ready_at.timestamp() if deployment.ready_at else now_ms / 1000
        wanted = "keep" if now_ms / 1000 < since + deployment.keepalive_idle_s else "unload"
    else:
        minute_s = settings.KEEPALIVE_MINUTE_S
        now_minutes = now_ms / 1000 / minute_s
        wanted = policy.decide(deployment.pk, now_minutes)
        if wanted == "unload" and policy.decide(deployment.pk, now_minutes + _lead_s(deployment) / minute_s) == "load":
            wanted = "load"
    if wanted == "unload" and deployment.state == DeploymentState.READY:
        return "scale_to_zero"
    if wanted == "load" and deployment.state == DeploymentState.COLD:
        return "prewarm"
    return ""


def _lead_s(deployment: Deployment) -> float:
    """How far ahead a pre-warm starts: the policy wants the deployment resident from the
    start of its pre-warm window, and the load must be done by then. The next pass may
    come an interval later, and a load takes about its last load time (twice that, for a
    busy server; at least a second)."""
    return settings.AUTOSCALE_INTERVAL_S + max(1.0, 2 * (deployment.load_seconds or 0))


def _instances(deployment: Deployment, activity: Activity, now_ms: int, state: dict) -> int | None:
    """The instance count demand asks for, when it should change now (None: keep it).
    Notes in `state` since when demand has been lower."""
    replicas = sum(1 for r in deployment.replica_set.all() if r.state == ReplicaState.READY) or 1
    busy = activity.upstream_us / 1_000_000 / activity.interval_s / replicas
    floor = max(1, deployment.min_instances)
    wanted = min(max(math.ceil(busy / TARGET_BUSY), floor), deployment.max_instances)
    if wanted > deployment.instances:
        state.pop("low_since", None)
        return wanted
    if wanted < deployment.instances:
        low_since = state.setdefault("low_since", now_ms)
        if now_ms - low_since >= settings.INSTANCES_DOWN_AFTER_S * 1000:
            state.pop("low_since", None)
            return wanted
    else:
        state.pop("low_since", None)
    return None

"""The autoscaler's decisions (workers.autoscaler.decide), without Celery or Triton:
scale to zero after the keep-alive, pre-warm before a predicted call, min_instances
keeping a deployment warm, and the instance count following demand. Then the pass that
reads the gateway's activity from Redis, saves the decisions and queues their work."""
from datetime import UTC, datetime, timedelta

import pytest

from gateway.contract.keys import AUTOSCALE_LAST_PASS, activity_name
from graph_editor.services import model_version_upload
from tenants.directory import redis_client
from workers import autoscaler, queue
from workers.autoscaler import Activity, ScaleDecision, decide
from workers.keepalive import HybridHistogram
from workers.models import Deployment, DeploymentState, Replica, ReplicaState, TritonServer

MINUTE_MS = 60_000
# A minute of the policy's clock (60 s here), far from zero as Redis's clock is.
M = 29_000_000


@pytest.fixture(autouse=True)
def clock(settings):
    settings.KEEPALIVE_MINUTE_S = 60.0
    settings.AUTOSCALE_INTERVAL_S = 5.0
    settings.INSTANCES_DOWN_AFTER_S = 60.0


def in_memory(**fields) -> Deployment:
    values = {"pk": 7, "state": DeploymentState.READY, "keepalive": "fixed", "keepalive_idle_s": 600,
              "min_instances": 0, "instances": 1, "max_instances": 1}
    return Deployment(**{**values, **fields})


def called_at(deployment: Deployment, at_ms: int) -> Deployment:
    """The deployment as the pass that saw a call at `at_ms` left it."""
    decision = decide(deployment, Activity(first_ms=at_ms, last_ms=at_ms), at_ms + 1000)
    deployment.keepalive_state = decision.keepalive_state
    return deployment


def test_a_call_is_recorded_as_an_invocation_minute_and_nothing_is_written():
    deployment = in_memory()
    decision = decide(deployment, Activity(first_ms=M * MINUTE_MS + 5, last_ms=(M + 2) * MINUTE_MS + 7),
                      (M + 2) * MINUTE_MS + 1000)
    assert decision.action == ""
    assert decision.keepalive_state["minute"] == M + 2
    assert decision.keepalive_state["policy"]["decision"]["keep_until"] == M + 3 + 10
    assert decision.last_used_at == datetime.fromtimestamp(((M + 2) * MINUTE_MS + 7) / 1000, tz=UTC)
    assert deployment.keepalive_state == {}


@pytest.mark.parametrize(("state", "min_instances", "minutes_after", "action"), [
    (DeploymentState.READY, 0, 10.9, ""),  # the call's minute ends at M + 1; ten minutes more
    (DeploymentState.READY, 0, 11.1, "scale_to_zero"),
    (DeploymentState.COLD, 0, 11.1, ""),  # already cold
    (DeploymentState.READY, 1, 600, ""),  # min_instances keeps it warm
    (DeploymentState.COLD, 1, 600, "wake"),
])
def test_idle_past_the_keepalive_unloads_unless_min_instances_keeps_it_warm(state, min_instances, minutes_after,
                                                                           action):
    deployment = called_at(in_memory(min_instances=min_instances), M * MINUTE_MS + 30_000)
    deployment.state = state
    decision = decide(deployment, Activity(), int((M + minutes_after) * MINUTE_MS))
    assert decision == ScaleDecision(action=action)


@pytest.mark.parametrize(("idle_s", "action"), [(599, ""), (601, "scale_to_zero")])
def test_a_deployment_never_called_keeps_its_idle_seconds_from_when_it_became_ready(idle_s, action):
    ready_at = datetime(2025, 3, 1, 12, tzinfo=UTC)
    deployment = in_memory(ready_at=ready_at)
    now_ms = int((ready_at + timedelta(seconds=idle_s)).timestamp() * 1000)
    assert decide(deployment, Activity(), now_ms) == ScaleDecision(action=action)


@pytest.fixture
def every_ten_minutes() -> tuple[dict, object]:
    """The state of an adaptive policy that saw a call every ten minutes, the last at M,
    and the window it predicts after that call."""
    history = HybridHistogram(fallback_minutes=1)
    for k in range(15, -1, -1):
        window = history.on_invocation(7, M - 10 * k, ends_at=M - 10 * k + 1)
    assert window.prewarm_at is not None, history.pattern(7)
    return {"policy": history.state_dump(7), "minute": M}, window


def test_a_predicted_call_is_prewarmed_a_load_time_ahead(every_ten_minutes):
    state, window = every_ten_minutes
    # The look-ahead: the next pass (5 s) and the load (at least a second), in minutes.
    lead = 6 / 60
    cold = in_memory(state=DeploymentState.COLD, keepalive="adaptive", keepalive_idle_s=60, keepalive_state=state)
    assert decide(cold, Activity(), int((window.prewarm_at - lead - 0.01) * MINUTE_MS)).action == ""
    assert decide(cold, Activity(), int((window.prewarm_at - lead + 0.01) * MINUTE_MS)).action == "prewarm"
    warm = in_memory(keepalive="adaptive", keepalive_idle_s=60, keepalive_state=state)
    assert decide(warm, Activity(), int((window.unload_after + 0.1) * MINUTE_MS)).action == "scale_to_zero"
    # Due for a pre-warm by the time a load would be done: not unloaded in between.
    assert decide(warm, Activity(), int((window.prewarm_at - lead + 0.01) * MINUTE_MS)).action == ""


@pytest.fixture
def warm(acme, digits_onnx):
    """A ready deployment with room for three instances per replica, on two servers."""
    version = model_version_upload(tenant=acme, model_name="digits", chunks=[digits_onnx])
    deployment = Deployment.unscoped.create(tenant=acme, name="digits", model_version=version,
                                            state=DeploymentState.READY, keepalive="fixed", instances=1,
                                            max_instances=3, replicas=2,
                                            ready_at=datetime.fromtimestamp(M * 60, tz=UTC))
    for name in ("triton-a", "triton-b"):
        server = TritonServer.objects.create(name=name, http_url="http://127.0.0.1:1", repository_path="/tmp/r",
                                             healthy=True)
        Replica.objects.create(deployment=deployment, server=server, state=ReplicaState.READY, memory_mb=100)
    return deployment


def as_the_pass_reads(deployment: Deployment, **fields) -> Deployment:
    Deployment.unscoped.filter(pk=deployment.pk).update(**fields)
    return Deployment.unscoped.prefetch_related("replica_set").get(pk=deployment.pk)


@pytest.mark.parametrize(("ready_replicas", "upstream_s", "instances"), [
    (1, 1.5, 3),  # 1.5 requests in service, at most 0.7 per instance
    (2, 1.5, 2),  # the same spread over two replicas
    (1, 0.5, None),  # one instance is enough
    (1, 10.0, 3),  # never above max_instances
])
def test_the_instance_count_follows_demand(warm, ready_replicas, upstream_s, instances):
    if ready_replicas == 1:
        warm.replica_set.filter(server__name="triton-b").update(state=ReplicaState.LOADING)
    deployment = as_the_pass_reads(warm)
    decision = decide(deployment, Activity(upstream_us=int(upstream_s * 1_000_000), interval_s=1.0), M * MINUTE_MS)
    assert (decision.action, decision.instances) == (("instances", instances) if instances else ("", None))
    if instances:
        assert decision.label(deployment) == f"instances 1->{instances}"


def test_the_first_pass_sets_no_instance_count(warm):
    deployment = as_the_pass_reads(warm)
    assert decide(deployment, Activity(upstream_us=10_000_000), M * MINUTE_MS) == ScaleDecision()


def test_fewer_instances_wait_for_the_down_delay_and_more_reset_it(warm):
    start = M * MINUTE_MS
    deployment = as_the_pass_reads(warm, instances=3)
    idle = Activity(upstream_us=0, interval_s=1.0)

    first = decide(deployment, idle, start)
    assert (first.action, first.keepalive_state) == ("", {"low_since": start})
    deployment = as_the_pass_reads(warm, keepalive_state=first.keepalive_state)
    assert decide(deployment, idle, start + 59_000) == ScaleDecision()
    down = decide(deployment, idle, start + 60_000)
    assert (down.action, down.instances, down.keepalive_state) == ("instances", 1, {})

    # Demand back at three instances in between: the delay starts again.
    busy = decide(deployment, Activity(upstream_us=3_000_000, interval_s=1.0), start + 30_000)
    assert (busy.action, busy.keepalive_state) == ("", {})
    deployment = as_the_pass_reads(warm, keepalive_state={})
    assert decide(deployment, idle, start + 61_000).keepalive_state == {"low_since": start + 61_000}


def test_min_instances_is_the_floor_of_the_instance_count(warm):
    deployment = as_the_pass_reads(warm, instances=3, min_instances=2, keepalive_state={"low_since": 0})
    decision = decide(deployment, Activity(upstream_us=0, interval_s=1.0), M * MINUTE_MS)
    assert (decision.action, decision.instances) == ("instances", 2)


@pytest.fixture
def queued(monkeypatch) -> list[tuple]:
    """The tasks the pass queues, instead of sending them."""
    sent = []
    for task in ("deployment_wake", "deployment_scale_down", "deployment_reconfigure"):
        monkeypatch.setattr(queue, task, lambda *args, task=task: sent.append((task, *args)))
    return sent


def test_the_pass_saves_what_it_saw_and_queues_the_unload(warm, queued):
    r = redis_client()
    call_ms = M * MINUTE_MS + 30_000
    r.hset(activity_name(warm.pk), mapping={"f": call_ms, "l": call_ms, "us": 2_000})
    assert autoscaler.autoscale_run(call_ms + 1000) == {}
    seen = Deployment.unscoped.get(pk=warm.pk)
    assert seen.keepalive_state["minute"] == M
    assert seen.last_used_at == datetime.fromtimestamp(call_ms / 1000, tz=UTC)
    assert not r.exists(activity_name(warm.pk)) and int(r.get(AUTOSCALE_LAST_PASS)) == call_ms + 1000
    assert queued == []

    # Fixed 600 s after the call's minute ends.
    assert autoscaler.autoscale_run((M + 11) * MINUTE_MS + 1) == {warm.pk: "scale_to_zero"}
    assert queued == [("deployment_scale_down", warm.pk, "idle (fixed keep-alive)")]


def test_the_pass_queues_the_instance_change(warm, queued):
    r = redis_client()
    now = M * MINUTE_MS
    r.set(AUTOSCALE_LAST_PASS, now - 1000)
    r.hincrby(activity_name(warm.pk), "us", 3_000_000)
    assert autoscaler.autoscale_run(now) == {warm.pk: "instances 1->3"}
    assert queued == [("deployment_reconfigure", warm.pk, 3)]

"""The serverless lifecycle on the real stack: scale to zero, a call held through its cold
start (one load shared by concurrent calls, a timeout answered 503), the autoscaler's
keep-alive and pre-warm, instance changes under load."""
import json
import math
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from gateway.contract.keys import AUTOSCALE_LAST_PASS, activity_name, route_entry_name
from graph_editor.services import model_version_upload
from tenants.directory import redis_client
from tenants.services import api_key_create
from tests.gateway.test_gateway import call, infer_body, wait_usage
from tests.workers.test_services import wait_for_state
from workers import autoscaler
from workers.keepalive import HybridHistogram
from workers.models import Deployment, DeploymentState
from workers.services import (
    deployment_create,
    deployment_reconfigure_run,
    deployment_scale_to_zero,
)
from workers.triton import client as triton

pytestmark = pytest.mark.integration


def deploy(tenant, onnx: bytes, name: str = "digits", **settings) -> Deployment:
    version = model_version_upload(tenant=tenant, model_name=name, chunks=[onnx])
    deployment = deployment_create(tenant=tenant, model_version_id=version.pk, name=name, **settings)
    ready = wait_for_state(deployment.pk, {DeploymentState.READY, DeploymentState.FAILED})
    assert ready.state == DeploymentState.READY, ready.error
    return ready


def loaded_in(url: str, triton_name: str) -> bool:
    return any(m["name"] == triton_name and m.get("state") == "READY" for m in triton.repository_index(url))


def loads_logged(stack, triton_name: str, log: str = "triton") -> int:
    return stack.log(log).count(f"successfully loaded '{triton_name}'")


def scale_to_zero(tenant, deployment: Deployment) -> Deployment:
    deployment_scale_to_zero(tenant=tenant, deployment_id=deployment.pk)
    cold = wait_for_state(deployment.pk, {DeploymentState.COLD}, timeout=20)
    assert not cold.replica_set.exists()
    return cold


def test_a_cold_deployment_wakes_on_a_call_and_concurrent_calls_share_one_load(stack, acme, digits_onnx):
    deployment = deploy(acme, digits_onnx)
    _, key = api_key_create(tenant=acme, label="client", scopes=["infer"])
    assert call(stack, "/v2/models/digits/infer", key=key, body=infer_body())[0] == 200

    scale_to_zero(acme, deployment)
    assert not loaded_in(stack.triton_url, deployment.triton_name)
    route = redis_client().hgetall(route_entry_name(acme.pk, "digits"))
    assert route["state"] == "cold" and route["http_url"] == ""
    loads_before = loads_logged(stack, deployment.triton_name)

    # Eight calls at once: all held, all answered, by one load.
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: call(stack, "/v2/models/digits/infer", key=key, body=infer_body(2)),
                                range(8)))
    elapsed = time.monotonic() - started
    assert [status for status, _, _ in answers] == [200] * 8, answers[0][2]
    assert all(len(json.loads(body)["outputs"][0]["data"]) == 2 for _, _, body in answers)
    assert elapsed < 5, f"the cold start took {elapsed:.2f} s"
    assert loads_logged(stack, deployment.triton_name) == loads_before + 1
    warm = Deployment.unscoped.get(pk=deployment.pk)
    assert warm.state == DeploymentState.READY and warm.replica_set.count() == 1

    # A warm call is not a cold start; the held ones are, with how long they waited.
    assert call(stack, "/v2/models/digits/infer", key=key, body=infer_body())[0] == 200
    events = wait_usage(acme, 10)
    cold = [e for e in events if e.cold_start]
    assert len(cold) == 8 and all(0 < e.cold_start_ms < elapsed * 1000 + 100 for e in cold)
    assert not events[0].cold_start and not events[-1].cold_start

    # Shown per deployment through the API.
    from tests.api_helpers import key_client

    detail = key_client(acme).get(f"/api/v1/deployments/{deployment.pk}").json()
    stats = detail["cold_starts"]
    assert stats["requests"] == 10 and stats["cold_starts"] == 8 and stats["share"] == 0.8
    assert 0 < stats["p50_ms"] <= stats["p99_ms"]


def test_unload_through_the_api_then_metadata_wakes_it_too(stack, acme, digits_onnx):
    from tests.api_helpers import key_client

    deployment = deploy(acme, digits_onnx)
    client = key_client(acme)
    assert client.post(f"/api/v1/deployments/{deployment.pk}/unload").status_code == 202
    wait_for_state(deployment.pk, {DeploymentState.COLD}, timeout=20)
    # Unloading a cold deployment again is harmless.
    assert client.post(f"/api/v1/deployments/{deployment.pk}/unload").status_code == 202
    _, key = api_key_create(tenant=acme, label="client", scopes=["infer"])
    status, _, body = call(stack, "/v2/models/digits", key=key)
    assert status == 200 and json.loads(body)["name"] == "digits"
    assert Deployment.unscoped.get(pk=deployment.pk).state == DeploymentState.READY


def test_a_call_held_past_the_timeout_gets_503_with_retry_after(stack, acme, digits_onnx):
    deployment = deploy(acme, digits_onnx)
    scale_to_zero(acme, deployment)
    _, key = api_key_create(tenant=acme, label="client", scopes=["infer"])
    # No worker can load it: the route points at a deployment the workers do not know.
    redis_client().hset(route_entry_name(acme.pk, "digits"), mapping={"deployment_id": "999999"})
    proc, port = stack.gateway_start("gateway-short-hold", env={"GATEWAY_COLD_START_TIMEOUT_S": "0.6"})
    try:
        started = time.monotonic()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v2/models/digits/infer", data=infer_body(),
                                         headers={"Authorization": f"Bearer {key}"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        held = time.monotonic() - started
    finally:
        proc.terminate()
        proc.wait(10)
    assert refused.value.code == 503 and refused.value.headers["Retry-After"] == "2"
    assert json.loads(refused.value.read())["code"] == "cold_start_timeout"
    assert 0.5 < held < 3


def test_the_autoscaler_scales_an_idle_deployment_to_zero(stack, acme, digits_onnx, settings):
    settings.KEEPALIVE_MINUTE_S = 1.0
    deployment = deploy(acme, digits_onnx, keepalive="fixed", keepalive_idle_s=60)
    _, key = api_key_create(tenant=acme, label="client", scopes=["infer"])
    assert call(stack, "/v2/models/digits/infer", key=key, body=infer_body())[0] == 200
    now = autoscaler.redis_now_ms()
    assert autoscaler.autoscale_run(now) == {}
    seen = Deployment.unscoped.get(pk=deployment.pk)
    assert seen.last_used_at is not None
    # The call is the invocation-minute m (a minute of the policy's clock lasts 1 s here),
    # ending at m + 1; fixed 60 s is one minute more.
    minute = seen.keepalive_state["minute"]
    assert minute in (now // 1000, now // 1000 - 1)
    assert autoscaler.autoscale_run(minute * 1000 + 1900) == {}
    assert autoscaler.autoscale_run(minute * 1000 + 2100) == {deployment.pk: "scale_to_zero"}
    wait_for_state(deployment.pk, {DeploymentState.COLD}, timeout=20)
    assert not loaded_in(stack.triton_url, deployment.triton_name)


def test_the_autoscaler_prewarms_before_the_predicted_call(stack, acme, digits_onnx, settings):
    """A deployment called every 10 minutes (here 10 s: a minute of the policy's clock lasts
    1 s) is unloaded after each call and loaded again just before the next one."""
    settings.KEEPALIVE_MINUTE_S = 1.0
    deployment = deploy(acme, digits_onnx, keepalive="adaptive", keepalive_idle_s=60)
    now_minute = math.floor(autoscaler.redis_now_ms() / 1000)
    # Its history: 15 calls, each ten minutes after the one before, the last ten minutes ago.
    history = HybridHistogram(fallback_minutes=1)
    for k in range(15, 0, -1):
        minute = now_minute - 10 * k
        history.on_invocation(deployment.pk, minute, ends_at=minute + 1)
    Deployment.unscoped.filter(pk=deployment.pk).update(keepalive_state={
        "policy": history.state_dump(deployment.pk), "minute": now_minute - 10})

    _, key = api_key_create(tenant=acme, label="client", scopes=["infer"])
    assert call(stack, "/v2/models/digits/infer", key=key, body=infer_body())[0] == 200
    autoscaler.autoscale_run(autoscaler.redis_now_ms())
    # The call's minute as the autoscaler saw it (the clock may have ticked since now_minute).
    minute = Deployment.unscoped.get(pk=deployment.pk).keepalive_state["minute"]
    expected = history.on_invocation(deployment.pk, minute, ends_at=minute + 1)
    assert expected.prewarm_at is not None, history.pattern(deployment.pk)
    after_call = math.ceil(expected.unload_after) * 1000 + 100
    assert autoscaler.autoscale_run(after_call) == {deployment.pk: "scale_to_zero"}
    wait_for_state(deployment.pk, {DeploymentState.COLD}, timeout=20)
    assert autoscaler.autoscale_run(int(expected.prewarm_at * 1000) - 200) == {}
    assert autoscaler.autoscale_run(int(expected.prewarm_at * 1000) + 200) == {deployment.pk: "prewarm"}
    warm = wait_for_state(deployment.pk, {DeploymentState.READY}, timeout=20)
    assert loaded_in(stack.triton_url, warm.triton_name)
    # The predicted call finds it warm.
    assert call(stack, "/v2/models/digits/infer", key=key, body=infer_body())[0] == 200
    events = wait_usage(acme, 2)
    assert not events[-1].cold_start


def test_instances_follow_demand_without_dropping_requests(stack, acme, digits_onnx, settings):
    deployment = deploy(acme, digits_onnx, max_instances=2)
    assert deployment.instances == 1
    _, key = api_key_create(tenant=acme, label="client", scopes=["infer"])
    failures, answered, stop = [], [], threading.Event()

    def hammer():
        while not stop.is_set():
            status, _, body = call(stack, "/v2/models/digits/infer", key=key, body=infer_body())
            (answered if status == 200 else failures).append((status, body[:200]))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        # Demand: the upstream time of the last pass over its length is the requests in
        # service; two in service need two instances (at most 0.7 each).
        r = redis_client()
        now = autoscaler.redis_now_ms()
        r.set(AUTOSCALE_LAST_PASS, now - 1000)
        r.hincrby(activity_name(deployment.pk), "us", 1_500_000)
        done = autoscaler.autoscale_run(now)
        assert done == {deployment.pk: "instances 1->2"}
        deadline = time.monotonic() + 20
        while Deployment.unscoped.get(pk=deployment.pk).replica_set.get().instances != 2:
            assert time.monotonic() < deadline, "the instance change did not land"
            time.sleep(0.1)
        config = json.loads(urllib.request.urlopen(
            f"{stack.triton_url}/v2/models/{deployment.triton_name}/config").read())
        assert config["instance_group"][0]["count"] == 2
        # And back to one, by hand this time, still under load.
        deployment_reconfigure_run(deployment_id=deployment.pk, instances=1)
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == [] and len(answered) > 20
    config = json.loads(urllib.request.urlopen(f"{stack.triton_url}/v2/models/{deployment.triton_name}/config").read())
    assert config["instance_group"][0]["count"] == 1

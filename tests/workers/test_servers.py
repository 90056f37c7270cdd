"""Many Triton servers on the real stack: placement by free memory, eviction of the least
recently used idle deployment, replicas balanced by the gateway, and a server that dies."""
import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from graph_editor.services import model_version_upload
from tenants.services import api_key_create
from tests.gateway.test_gateway import call, infer_body
from tests.workers.test_lifecycle import deploy, loaded_in
from tests.workers.test_services import wait_for_state
from workers.models import Deployment, DeploymentState, Replica, TritonServer
from workers.services import deployment_create, deployment_undeploy, servers_check_run

pytestmark = pytest.mark.integration


def inferences_on(url: str, triton_name: str) -> int:
    try:
        stats = json.loads(urllib.request.urlopen(f"{url}/v2/models/{triton_name}/stats", timeout=5).read())
    except urllib.error.HTTPError:
        return 0
    return sum(s["inference_stats"]["success"]["count"] for s in stats["model_stats"])


def wait_replicas(deployment: Deployment, count: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while Replica.objects.filter(deployment=deployment, state="ready").count() < count:
        assert time.monotonic() < deadline, f"{count} replicas did not load"
        time.sleep(0.1)


@pytest.fixture
def second_server(stack):
    proc, url = stack.triton_start("triton-b")
    yield TritonServer.objects.get(name="triton-b"), url
    stack.kill("triton-b")


def test_placement_prefers_room_and_evicts_the_least_recently_used_idle_deployment(stack, second_server, acme,
                                                                                   digits_onnx):
    server_b, url_b = second_server
    # Only server B takes deployments here, and it has room for exactly one.
    TritonServer.objects.exclude(pk=server_b.pk).update(enabled=False)
    first = deploy(acme, digits_onnx, name="first")
    replica = first.replica_set.get()
    assert replica.server_id == server_b.pk and replica.memory_mb > 0
    TritonServer.objects.filter(pk=server_b.pk).update(memory_mb=replica.memory_mb + replica.memory_mb // 2)

    # A second deployment finds no room: the idle first one is evicted (scaled to zero).
    second = deploy(acme, digits_onnx, name="second")
    assert second.replica_set.get().server_id == server_b.pk
    evicted = Deployment.unscoped.get(pk=first.pk)
    assert evicted.state == DeploymentState.COLD and not evicted.replica_set.exists()
    assert not loaded_in(url_b, first.triton_name) and loaded_in(url_b, second.triton_name)

    # Calling the evicted one wakes it, evicting the other in turn.
    _, key = api_key_create(tenant=acme, label="client", scopes=["infer"])
    assert call(stack, "/v2/models/first/infer", key=key, body=infer_body())[0] == 200
    assert Deployment.unscoped.get(pk=second.pk).state == DeploymentState.COLD
    assert loaded_in(url_b, first.triton_name) and not loaded_in(url_b, second.triton_name)

    # A deployment kept warm (min_instances) is never evicted: with no room, the new one waits.
    Deployment.unscoped.filter(pk=first.pk).update(min_instances=1)
    third_version = model_version_upload(tenant=acme, model_name="third", chunks=[digits_onnx])
    third = deployment_create(tenant=acme, model_version_id=third_version.pk, name="third")
    time.sleep(3)
    waiting = Deployment.unscoped.get(pk=third.pk)
    assert waiting.state == DeploymentState.PENDING and "MB free" in waiting.error
    assert Deployment.unscoped.get(pk=first.pk).state == DeploymentState.READY
    # Its load would wait minutes more for room: undeployed, it leaves the stack quiet.
    deployment_undeploy(tenant=acme, deployment_id=third.pk)


def test_replicas_on_two_servers_share_the_calls(stack, second_server, acme, digits_onnx):
    server_b, url_b = second_server
    deployment = deploy(acme, digits_onnx, replicas=2)
    wait_replicas(deployment, 2)
    _, key = api_key_create(tenant=acme, label="client", scopes=["infer"])
    time.sleep(0.2)
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: call(stack, "/v2/models/digits/infer", key=key, body=infer_body())[0],
                                 range(64)))
    assert statuses == [200] * 64
    on_a = inferences_on(stack.triton_url, deployment.triton_name)
    on_b = inferences_on(url_b, deployment.triton_name)
    assert on_a + on_b == 64 and on_a >= 8 and on_b >= 8, (on_a, on_b)


def test_a_dead_server_gets_fast_503s_then_its_deployments_move(stack, second_server, acme, digits_onnx):
    server_b, url_b = second_server
    TritonServer.objects.exclude(pk=server_b.pk).update(enabled=False)
    deployment = deploy(acme, digits_onnx)
    assert deployment.replica_set.get().server_id == server_b.pk
    TritonServer.objects.exclude(pk=server_b.pk).update(enabled=True)
    _, key = api_key_create(tenant=acme, label="client", scopes=["infer"])
    first = call(stack, "/v2/models/digits/infer", key=key, body=infer_body())
    assert first[0] == 200, first

    stack.kill("triton-b")
    # Before the health check notices: quick 503s with Retry-After, not hangs.
    for _ in range(3):
        started = time.monotonic()
        status, headers, body = call(stack, "/v2/models/digits/infer", key=key, body=infer_body())
        assert status == 503 and headers["Retry-After"] and json.loads(body)["code"] == "server_unavailable"
        assert time.monotonic() - started < 1
    # The health check takes the server out and places the deployment elsewhere.
    assert servers_check_run()["triton-b"] is False
    moved = wait_for_state(deployment.pk, {DeploymentState.READY}, timeout=30)
    assert moved.replica_set.get().server.name == stack.triton_name
    assert call(stack, "/v2/models/digits/infer", key=key, body=infer_body())[0] == 200


def test_a_replica_on_a_dead_server_is_skipped_for_the_live_one(stack, second_server, acme, digits_onnx):
    server_b, url_b = second_server
    deployment = deploy(acme, digits_onnx, replicas=2)
    wait_replicas(deployment, 2)
    _, key = api_key_create(tenant=acme, label="client", scopes=["infer"])
    stack.kill("triton-b")
    statuses = [call(stack, "/v2/models/digits/infer", key=key, body=infer_body())[0] for _ in range(10)]
    assert statuses == [200] * 10
    servers_check_run()
    remaining = Deployment.unscoped.get(pk=deployment.pk)
    assert [r.server.name for r in remaining.replica_set.all()] == [stack.triton_name]

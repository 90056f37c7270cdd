"""A graph version deployed as one Deployment: served by Triton as the graph fused into one
ONNX model, called through the gateway like any model. Service and API tests here run
without Triton; the integration tests deploy the digits graph (UINT8 images -> cast ->
scale -> reshape -> the digits classifier -> topk -> label lookup) on the real stack and
compare its answers over HTTP and gRPC with the fused model run locally."""
import json
import time

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from django.urls import reverse
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from billing.models import UsageEvent
from gateway.contract.errors import Conflict, NotFound, PlatformError
from gateway.contract.keys import route_entry_name
from graph_editor.graphs.fuse import graph_fuse
from graph_editor.models import ModelVersion
from graph_editor.services import model_version_upload
from graph_editor.services_graphs import graph_create, graph_version_create
from tenants.directory import redis_client
from tenants.services import api_key_create
from tests.api_helpers import key_client
from tests.gateway.test_gateway import call, wait_usage
from tests.graph_editor.test_graph_fuse import images, three_node_spec
from tests.workers.test_services import wait_for_state
from workers.directory import directory_put_deployment
from workers.models import Deployment, DeploymentState, Executor, TritonServer
from workers.services import (
    deployment_create,
    deployment_load_run,
    deployment_scale_to_zero,
    deployment_settings_update,
)
from workers.services.fused import deployment_onnx_path
from workers.services.triton_config import deployment_config_pbtxt

GRAPH_INPUTS = [{"name": "image", "datatype": "UINT8", "shape": [-1, 8, 8]}]


@pytest.fixture(autouse=True)
def storage(request, settings, tmp_path):
    # The stack's worker reads uploads (and writes fused models) where it was started.
    if request.node.get_closest_marker("integration") is None:
        settings.MODEL_STORAGE_DIR = tmp_path / "models"


def digits_graph(tenant, digits_onnx, name: str = "digits-graph"):
    """The three-node digits graph saved as version 1 of a graph of `tenant`."""
    classifier = model_version_upload(tenant=tenant, model_name=f"{name}-clf", chunks=[digits_onnx])
    graph = graph_create(tenant=tenant, name=name)
    return graph_version_create(tenant=tenant, graph_id=graph.pk, spec=three_node_spec(classifier.pk), message="v1")


@pytest.fixture
def graph_version(acme, digits_onnx):
    return digits_graph(acme, digits_onnx)


def fused_answers(tenant, version, image: np.ndarray) -> dict[str, np.ndarray]:
    """The graph fused and run locally with onnxruntime: what the deployment must answer."""
    session = ort.InferenceSession(graph_fuse(tenant=tenant, spec=version.spec).model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"image": image}), strict=True))


def texts(values) -> list:
    return [v.decode() if isinstance(v, bytes) else v for v in np.asarray(values).ravel().tolist()]


def assert_answers(got_name, got_score, want: dict) -> None:
    assert texts(got_name) == texts(want["name"])
    np.testing.assert_allclose(np.asarray(got_score).reshape(want["score"].shape), want["score"], rtol=1e-5)


# -- services, without Triton ---------------------------------------------------------

@pytest.mark.django_db
def test_a_graph_version_deploys_fused_with_the_graphs_signature(acme, graph_version):
    deployment = deployment_create(tenant=acme, graph_version_id=graph_version.pk)
    assert deployment.name == "digits-graph"  # the graph's name unless told otherwise
    assert (deployment.model_version_id, deployment.graph_version_id) == (None, graph_version.pk)
    assert deployment.executor == Executor.FUSED and deployment.state == DeploymentState.PENDING
    signature = deployment.target_signature()
    assert signature["inputs"] == GRAPH_INPUTS and signature["has_batch_dim"]
    assert [o["name"] for o in signature["outputs"]] == ["name", "score"]
    assert deployment.max_batch_size == 64  # batched: every input and output has the batch dim first
    classifier = ModelVersion.unscoped.get(pk=graph_version.spec["nodes"][4]["model_version"])
    assert Deployment.unscoped.get(pk=deployment.pk).target_size_bytes == classifier.size_bytes > 0
    assert deployment.target_label == "graph digits-graph v1"

    directory_put_deployment(Deployment.unscoped.get(pk=deployment.pk))
    route = redis_client().hgetall(route_entry_name(acme.pk, "digits-graph"))
    assert route["deployment_id"] == str(deployment.pk) and route["model_version_id"] == ""
    assert "image" in route["sig"] and "UINT8" in route["sig"]


@pytest.mark.django_db
@pytest.mark.parametrize("targets", [{}, "both"])
def test_exactly_one_target_is_named(acme, graph_version, targets):
    if targets == "both":
        targets = {"graph_version_id": graph_version.pk, "model_version_id": graph_version.spec["nodes"][4]
                   ["model_version"]}
    with pytest.raises(PlatformError) as refused:
        deployment_create(tenant=acme, name="either", **targets)
    assert refused.value.code == "invalid_target"
    assert not Deployment.objects.for_tenant(acme).exists()


@pytest.mark.django_db
def test_another_tenants_graph_version_is_not_found(acme, globex, digits_onnx):
    theirs = digits_graph(globex, digits_onnx)
    with pytest.raises(NotFound):
        deployment_create(tenant=acme, graph_version_id=theirs.pk)
    assert not Deployment.unscoped.exists()


@pytest.mark.django_db
def test_the_fused_model_is_written_once_and_answers_like_the_graph(acme, graph_version, monkeypatch):
    import workers.services.fused as fused

    deployment = Deployment.unscoped.get(pk=deployment_create(tenant=acme, graph_version_id=graph_version.pk).pk)
    fusing = []
    monkeypatch.setattr(fused, "graph_fuse", lambda **kw: fusing.append(1) or graph_fuse(**kw))
    path = deployment_onnx_path(deployment)
    assert path == deployment.fused_path and path.exists()
    assert deployment_onnx_path(deployment) == path and fusing == [1]  # a later load copies the same file
    image = images(5)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"image": image}), strict=True))
    want = fused_answers(acme, graph_version, image)
    assert_answers(got["name"], got["score"], want)


@pytest.mark.django_db
def test_a_graph_that_cannot_be_fused_fails_its_deployment_with_the_reason(acme, graph_version, monkeypatch):
    import workers.services.fused as fused

    def unfusable(**kwargs):
        raise PlatformError("step 'clf' is at opset 9 and could not be converted", code="unfusable")

    monkeypatch.setattr(fused, "graph_fuse", unfusable)
    TritonServer.objects.create(name="local", http_url="http://127.0.0.1:1", repository_path="/tmp/unused",
                                backends=["python"], healthy=True)
    deployment = deployment_create(tenant=acme, graph_version_id=graph_version.pk)
    deployment_load_run(deployment_id=deployment.pk)  # fails before Triton is asked
    failed = Deployment.unscoped.get(pk=deployment.pk)
    assert failed.state == DeploymentState.FAILED and not failed.replica_set.exists()
    assert failed.error == "The graph could not be compiled: step 'clf' is at opset 9 and could not be converted"


@pytest.mark.django_db
def test_the_triton_config_of_a_graph_deployment_is_its_signature_batched(acme, graph_version):
    deployment = Deployment.unscoped.get(pk=deployment_create(tenant=acme, graph_version_id=graph_version.pk).pk)
    server = TritonServer.objects.create(name="local", http_url="http://127.0.0.1:1", repository_path="/tmp/x",
                                         backends=["python"])
    config = text_format.Parse(deployment_config_pbtxt(deployment, server, 2), mc.ModelConfig())
    assert config.max_batch_size == 64 and config.instance_group[0].count == 2
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [("image", mc.TYPE_UINT8, [8, 8])]
    assert [(o.name, o.data_type, list(o.dims)) for o in config.output] == [
        ("name", mc.TYPE_STRING, [1]), ("score", mc.TYPE_FP32, [1])]


@pytest.mark.django_db
def test_a_graph_deployments_settings_change_like_a_models(acme, graph_version):
    deployment = deployment_create(tenant=acme, graph_version_id=graph_version.pk)
    changed = deployment_settings_update(tenant=acme, deployment_id=deployment.pk, max_batch_size=8,
                                         preferred_batch_sizes=[4, 8], min_instances=1)
    assert (changed.max_batch_size, changed.preferred_batch_sizes, changed.min_instances) == (8, [4, 8], 1)


@pytest.mark.django_db
def test_a_model_whose_version_a_deployed_graph_uses_cannot_be_deleted(acme, graph_version, digits_onnx):
    from graph_editor.services import model_delete

    classifier = ModelVersion.unscoped.get(pk=graph_version.spec["nodes"][4]["model_version"])
    other = model_version_upload(tenant=acme, model_name="unused", chunks=[digits_onnx])
    deployment_create(tenant=acme, graph_version_id=graph_version.pk)
    with pytest.raises(Conflict):
        model_delete(tenant=acme, model_id=classifier.model_id)
    assert ModelVersion.unscoped.filter(pk=classifier.pk).exists()
    model_delete(tenant=acme, model_id=other.model_id)  # a model no deployment uses goes


@pytest.mark.django_db
def test_a_deployed_graph_cannot_be_deleted_and_goes_with_its_history_once_undeployed(acme, graph_version):
    from graph_editor.models import Graph
    from graph_editor.services_graphs import graph_delete

    deployment = deployment_create(tenant=acme, graph_version_id=graph_version.pk, name="pipeline")
    with pytest.raises(Conflict, match="deployed as pipeline"):
        graph_delete(tenant=acme, graph_id=graph_version.graph_id)
    assert Graph.objects.for_tenant(acme).filter(pk=graph_version.graph_id).exists()
    Deployment.unscoped.filter(pk=deployment.pk).update(state=DeploymentState.UNDEPLOYED)
    graph_delete(tenant=acme, graph_id=graph_version.graph_id)
    assert not Graph.objects.for_tenant(acme).filter(pk=graph_version.graph_id).exists()
    assert not Deployment.unscoped.filter(pk=deployment.pk).exists()


@pytest.mark.django_db
def test_an_undeployed_models_history_goes_with_it(acme, digits_onnx):
    from graph_editor.services import model_delete

    version = model_version_upload(tenant=acme, model_name="old", chunks=[digits_onnx])
    deployment = deployment_create(tenant=acme, model_version_id=version.pk)
    Deployment.unscoped.filter(pk=deployment.pk).update(state=DeploymentState.UNDEPLOYED)
    model_delete(tenant=acme, model_id=version.model_id)
    assert not ModelVersion.unscoped.filter(pk=version.pk).exists()
    assert not Deployment.unscoped.filter(pk=deployment.pk).exists()


# -- the REST API ---------------------------------------------------------------------

@pytest.mark.django_db
def test_the_api_deploys_a_graph_version_and_shows_it(acme, graph_version):
    client = key_client(acme)
    response = client.post("/api/v1/deployments", {"graph_version": graph_version.pk, "name": "pipeline"},
                           format="json")
    assert response.status_code == 202, response.json()
    created = response.json()
    assert (created["graph_version"], created["graph_name"], created["graph_version_number"]) == (
        graph_version.pk, "digits-graph", 1)
    assert (created["model_version"], created["model_name"], created["version"]) == (None, None, None)
    assert created["executor"] == "fused" and created["max_batch_size"] == 64
    assert created["infer_url"].endswith("/v2/models/pipeline/infer")
    assert client.get(f"/api/v1/deployments/{created['id']}").json() == created
    assert [d["name"] for d in client.get("/api/v1/deployments").json()] == ["pipeline"]


@pytest.mark.django_db
@pytest.mark.parametrize("body, message", [
    ("both", "non_field_errors: Deploy either a model version or a graph version: give exactly one of model_version "
             "and graph_version."),
    ("neither", "model_version: This field is required."),
])
def test_the_api_wants_exactly_one_target(acme, graph_version, body, message):
    classifier = graph_version.spec["nodes"][4]["model_version"]
    payload = {"graph_version": graph_version.pk, "model_version": classifier} if body == "both" else {"name": "x"}
    response = key_client(acme).post("/api/v1/deployments", payload, format="json")
    assert response.status_code == 400
    assert response.json() == {"error": {"code": "invalid_request", "message": message}}
    assert not Deployment.objects.for_tenant(acme).exists()


@pytest.mark.django_db
def test_the_api_refuses_another_tenants_graph_version_as_not_found(acme, globex, digits_onnx):
    theirs = digits_graph(globex, digits_onnx)
    response = key_client(acme).post("/api/v1/deployments", {"graph_version": theirs.pk}, format="json")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert not Deployment.unscoped.exists()


@pytest.mark.django_db
def test_the_deployments_page_shows_a_graph_deployment(acme, alice, graph_version, client):
    deployment_create(tenant=acme, graph_version_id=graph_version.pk)
    client.force_login(alice)
    page = client.get(reverse("deployments"))
    assert page.status_code == 200
    assert "digits-graph" in page.content.decode() and "graph, fused" in page.content.decode()


# -- the real stack -------------------------------------------------------------------

def deploy_graph(tenant, version, **settings) -> Deployment:
    deployment = deployment_create(tenant=tenant, graph_version_id=version.pk, name="digits-graph", **settings)
    ready = wait_for_state(deployment.pk, {DeploymentState.READY, DeploymentState.FAILED})
    assert ready.state == DeploymentState.READY, ready.error
    return ready


def http_infer(stack, key: str, image: np.ndarray, binary: bool):
    client = triton_http.InferenceServerClient(url=stack.gateway_url.removeprefix("http://"))
    infer_input = triton_http.InferInput("image", list(image.shape), "UINT8")
    infer_input.set_data_from_numpy(image, binary_data=binary)
    outputs = [triton_http.InferRequestedOutput(n, binary_data=binary) for n in ("name", "score")]
    result = client.infer("digits-graph", [infer_input], outputs=outputs, headers={"Authorization": f"Bearer {key}"})
    return result.as_numpy("name"), result.as_numpy("score")


def grpc_infer(stack, key: str, image: np.ndarray):
    client = triton_grpc.InferenceServerClient(url=f"127.0.0.1:{stack.gateway_grpc_port}")
    infer_input = triton_grpc.InferInput("image", list(image.shape), "UINT8")
    infer_input.set_data_from_numpy(image)
    outputs = [triton_grpc.InferRequestedOutput(n) for n in ("name", "score")]
    result = client.infer("digits-graph", [infer_input], outputs=outputs, headers={"authorization": f"Bearer {key}"})
    return result.as_numpy("name"), result.as_numpy("score")


@pytest.mark.integration
def test_a_deployed_graph_answers_over_http_and_grpc_like_its_fused_model_one_event_per_call(
        stack, acme, graph_version):
    deployment = deploy_graph(acme, graph_version)
    assert deployment.executor == Executor.FUSED and deployment.fused_path.exists()
    api_key, key = api_key_create(tenant=acme, label="client", scopes=["infer"])
    image = images(6)
    want = fused_answers(acme, graph_version, image)

    assert_answers(*http_infer(stack, key, image, binary=True), want)
    assert_answers(*http_infer(stack, key, image, binary=False), want)
    assert_answers(*grpc_infer(stack, key, image), want)

    events = wait_usage(acme, 3)
    time.sleep(1)  # nothing more arrives: one event per graph call, not one per step
    events = list(UsageEvent.objects.for_tenant(acme))
    assert len(events) == 3
    assert sorted(e.protocol for e in events) == ["grpc", "http", "http"]
    assert {(e.endpoint, e.status, e.deployment_id, e.deployment_name, e.api_key_id, e.model_version_id)
            for e in events} == {("infer", 200, deployment.pk, "digits-graph", api_key.pk, None)}


@pytest.mark.integration
def test_a_deployed_graph_scales_to_zero_and_wakes_on_the_next_call(stack, acme, graph_version):
    deployment = deploy_graph(acme, graph_version)
    _, key = api_key_create(tenant=acme, label="client", scopes=["infer"])
    written = deployment.fused_path.stat().st_mtime_ns

    deployment_scale_to_zero(tenant=acme, deployment_id=deployment.pk)
    cold = wait_for_state(deployment.pk, {DeploymentState.COLD}, timeout=20)
    assert not cold.replica_set.exists()
    assert redis_client().hgetall(route_entry_name(acme.pk, "digits-graph"))["state"] == "cold"

    image = images(3)
    body = json.dumps({"inputs": [{"name": "image", "shape": list(image.shape), "datatype": "UINT8",
                                   "data": image.ravel().tolist()}]}).encode()
    status, _, answer = call(stack, "/v2/models/digits-graph/infer", key=key, body=body)
    assert status == 200, answer
    outputs = {o["name"]: o["data"] for o in json.loads(answer)["outputs"]}
    assert outputs["name"] == texts(fused_answers(acme, graph_version, image)["name"])
    assert Deployment.unscoped.get(pk=deployment.pk).state == DeploymentState.READY
    assert deployment.fused_path.stat().st_mtime_ns == written  # woken from the model fused at the first load
    [event] = wait_usage(acme, 1)
    assert event.cold_start and event.model_version_id is None

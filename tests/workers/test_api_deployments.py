"""Deployments through the REST API: validation and listing here; the whole lifecycle
against a real Triton, Celery worker and gateway in the integration tests."""
import json
import urllib.request

import pytest
from django.conf import settings as django_settings
from onnx import TensorProto, helper

from graph_editor.samples import digits_dataset
from tests.api_helpers import key_client, owner_client, poll_deployment, upload_model
from workers.models import Deployment
from workers.services import deployment_unload_run


@pytest.fixture(autouse=True)
def storage(request, settings, tmp_path):
    # The stack's worker reads uploads from the storage it was started with.
    if request.node.get_closest_marker("integration") is None:
        settings.MODEL_STORAGE_DIR = tmp_path / "models"


@pytest.fixture
def digits_version(acme, digits_onnx) -> dict:
    return upload_model(key_client(acme), "digits", digits_onnx).json()


def custom_operator_onnx() -> bytes:
    """A valid ONNX file (the checker accepts custom domains) that onnxruntime cannot run:
    no runtime implements com.example:Frobnicate."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])
    graph = helper.make_graph([helper.make_node("Frobnicate", ["x"], ["y"], domain="com.example")], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    return model.SerializeToString()


@pytest.mark.django_db
@pytest.mark.parametrize("auth", ["key", "session"])
def test_deploy_list_get_and_undeploy(acme, alice, digits_version, auth):
    client = owner_client(auth, acme, alice)
    response = client.post("/api/v1/deployments", {"model_version": digits_version["id"]}, format="json")
    assert response.status_code == 202, response.json()
    created = response.json()
    assert created["name"] == "digits"  # the model's name unless told otherwise
    assert created["state"] == "pending" and created["error"] == "" and created["server"] is None
    assert (created["model_version"], created["model_name"], created["version"]) == (digits_version["id"], "digits", 1)
    assert created["infer_url"] == f"{django_settings.GATEWAY_URL}/v2/models/digits/infer"
    assert created["ready_at"] is None and created["load_seconds"] is None

    named = client.post("/api/v1/deployments", {"model_version": digits_version["id"], "name": "digits-canary"},
                        format="json").json()
    assert named["infer_url"].endswith("/v2/models/digits-canary/infer")
    assert [d["name"] for d in client.get("/api/v1/deployments").json()] == ["digits-canary", "digits"]
    assert client.get(f"/api/v1/deployments/{created['id']}").json() == created

    undeploying = client.delete(f"/api/v1/deployments/{created['id']}")
    assert undeploying.status_code == 202 and undeploying.json()["state"] == "unloading"
    deployment_unload_run(deployment_id=created["id"])  # what the worker does next
    assert client.get(f"/api/v1/deployments/{created['id']}").json()["state"] == "undeployed"
    assert [d["name"] for d in client.get("/api/v1/deployments").json()] == ["digits-canary"]
    history = client.get("/api/v1/deployments?history=1").json()
    assert [(d["name"], d["state"]) for d in history] == [("digits-canary", "pending"), ("digits", "undeployed")]
    # Undeploying twice is harmless, and the name is free again.
    assert client.delete(f"/api/v1/deployments/{created['id']}").json()["state"] == "undeployed"
    again = client.post("/api/v1/deployments", {"model_version": digits_version["id"]}, format="json")
    assert again.status_code == 202 and again.json()["id"] != created["id"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "payload, status, code, message",
    [
        ({}, 400, "invalid_request", "model_version: This field is required."),
        ({"model_version": "first"}, 400, "invalid_request", "model_version: A valid integer is required."),
        ({"model_version": 987654}, 404, "not_found", "No such model version in this tenant."),
        ({"model_version": "{id}", "name": "Not A Name"}, 400, "invalid_name",
         "Invalid deployment name 'Not A Name': use 1-63 lowercase letters, digits and hyphens."),
    ],
)
def test_a_bad_deploy_request_is_refused_with_its_reason(acme, digits_version, payload, status, code, message):
    payload = {k: v.format(id=digits_version["id"]) if isinstance(v, str) else v for k, v in payload.items()}
    response = key_client(acme).post("/api/v1/deployments", payload, format="json")
    assert response.status_code == status
    assert response.json() == {"error": {"code": code, "message": message}}
    assert not Deployment.unscoped.exists()


@pytest.mark.django_db
def test_a_name_in_use_is_a_conflict(acme, digits_version):
    client = key_client(acme)
    client.post("/api/v1/deployments", {"model_version": digits_version["id"]}, format="json")
    response = client.post("/api/v1/deployments", {"model_version": digits_version["id"]}, format="json")
    assert response.status_code == 409
    assert "A deployment named 'digits' already exists" in response.json()["error"]["message"]
    assert Deployment.unscoped.count() == 1


@pytest.mark.django_db
def test_history_must_be_a_boolean(acme):
    response = key_client(acme).get("/api/v1/deployments?history=sometimes")
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "history: Must be a valid boolean."


def gateway_infer(stack, infer_url: str, raw_key: str) -> dict:
    url = infer_url.replace(django_settings.GATEWAY_URL, stack.gateway_url)
    features = digits_dataset()[0][:2]
    body = json.dumps({"inputs": [{"name": "X", "shape": list(features.shape), "datatype": "FP32",
                                   "data": features.ravel().tolist()}]}).encode()
    request = urllib.request.Request(url, data=body, headers={"Authorization": f"Bearer {raw_key}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_deployment_through_the_api_becomes_ready_serves_and_undeploys(stack, acme, digits_onnx):
    from tenants.services import api_key_create

    client = key_client(acme)
    version = upload_model(client, "digits", digits_onnx).json()
    created = client.post("/api/v1/deployments", {"model_version": version["id"]}, format="json").json()
    assert created["state"] == "pending"

    ready = poll_deployment(client, created["id"], {"ready", "failed"})
    assert ready["state"] == "ready", ready["error"]
    assert ready["server"] == stack.triton_name and ready["error"] == ""
    assert ready["load_seconds"] > 0 and ready["ready_at"] is not None
    entry = stack.triton_repository / Deployment.unscoped.get(pk=created["id"]).triton_name
    assert (entry / "config.pbtxt").is_file()

    _, infer_key = api_key_create(tenant=acme, label="client", scopes=["infer"])
    answer = gateway_infer(stack, ready["infer_url"], infer_key)
    assert answer["model_name"] == "digits"
    assert {o["name"] for o in answer["outputs"]} == {"label", "probabilities"}

    undeploying = client.delete(f"/api/v1/deployments/{created['id']}")
    assert undeploying.status_code == 202 and undeploying.json()["state"] in ("unloading", "undeployed")
    poll_deployment(client, created["id"], {"undeployed"})
    assert not entry.exists()
    assert client.get("/api/v1/deployments").json() == []


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_deployment_triton_cannot_load_ends_failed_with_the_reason_and_leaves_no_entry(stack, acme):
    client = key_client(acme)
    version = upload_model(client, "custom", custom_operator_onnx())
    assert version.status_code == 201, version.json()
    created = client.post("/api/v1/deployments", {"model_version": version.json()["id"]}, format="json").json()

    failed = poll_deployment(client, created["id"], {"ready", "failed"})
    assert failed["state"] == "failed"
    assert failed["error"].startswith("Triton could not load the model")
    assert "Frobnicate" in failed["error"]  # onnxruntime's own reason, passed through from Triton
    assert failed["ready_at"] is None
    assert not (stack.triton_repository / Deployment.unscoped.get(pk=created["id"]).triton_name).exists()

    # A failed deployment still holds its name until it is undeployed.
    assert client.delete(f"/api/v1/deployments/{created['id']}").status_code == 202
    poll_deployment(client, created["id"], {"undeployed"})

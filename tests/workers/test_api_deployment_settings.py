"""Deployment settings through the REST API (instances, hardware, max batch size) and the
tenant's deploy-time limits on them: a deployment beyond them is 403 quota_exceeded with
the reason, and nothing is recorded."""
import pytest
from onnx import TensorProto, helper

from tenants.quotas import quota_set
from tests.api_helpers import key_client, owner_client, upload_model
from tests.tenants.test_api_quotas import standard  # noqa: F401
from workers.models import Deployment

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def storage(settings, tmp_path):
    settings.MODEL_STORAGE_DIR = tmp_path / "models"


@pytest.fixture
def digits_version(acme, standard, digits_onnx) -> dict:  # noqa: F811
    return upload_model(key_client(acme), "digits", digits_onnx).json()


def unbatched_onnx() -> bytes:
    """A model whose input has a fixed first dimension: it cannot be batched."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def deploy(client, version_id: int, **choices):
    return client.post("/api/v1/deployments", {"model_version": version_id, **choices}, format="json")


@pytest.mark.parametrize("auth", ["key", "session"])
def test_settings_are_recorded_and_shown_in_list_and_detail(acme, alice, digits_version, auth):
    client = owner_client(auth, acme, alice)
    response = deploy(client, digits_version["id"], name="digits-gpu", instances=3, hardware="gpu", max_batch_size=16)
    assert response.status_code == 202, response.json()
    created = response.json()
    assert (created["instances"], created["hardware"], created["max_batch_size"]) == (3, "gpu", 16)
    assert client.get(f"/api/v1/deployments/{created['id']}").json() == created
    [listed] = client.get("/api/v1/deployments").json()
    assert (listed["instances"], listed["hardware"], listed["max_batch_size"]) == (3, "gpu", 16)
    stored = Deployment.objects.for_tenant(acme).get(pk=created["id"])
    assert (stored.instances, stored.hardware, stored.max_batch_size) == (3, "gpu", 16)


def test_without_settings_a_deployment_is_one_cpu_instance_batching_as_its_model_allows(acme, digits_version):
    client = key_client(acme)
    batched = deploy(client, digits_version["id"]).json()
    assert (batched["instances"], batched["hardware"], batched["max_batch_size"]) == (1, "cpu", 64)

    fixed = upload_model(client, "fixed", unbatched_onnx()).json()
    assert fixed["has_batch_dim"] is False
    unbatched = deploy(client, fixed["id"])
    assert unbatched.status_code == 202, unbatched.json()
    assert unbatched.json()["max_batch_size"] == 0
    refused = deploy(client, fixed["id"], name="fixed-2", max_batch_size=4)
    assert refused.status_code == 400
    assert refused.json() == {"error": {"code": "invalid_batch_size",
                                        "message": "This model has no batch dimension: its max_batch_size must be 0."}}


@pytest.mark.parametrize("choices, message", [
    ({"instances": 0}, "instances: Ensure this value is greater than or equal to 1."),
    ({"instances": "two"}, "instances: A valid integer is required."),
    ({"instances": 1.5}, "instances: A valid integer is required."),
    ({"instances": True}, "instances: A valid integer is required."),
    ({"instances": 40000}, "instances: Ensure this value is less than or equal to 32767."),
    ({"hardware": "tpu"}, 'hardware: "tpu" is not a valid choice.'),
    ({"max_batch_size": -1}, "max_batch_size: Ensure this value is greater than or equal to 0."),
    ({"max_batch_size": "big"}, "max_batch_size: A valid integer is required."),
    ({"max_batch_size": True}, "max_batch_size: A valid integer is required."),
    ({"max_batch_size": 2**31}, "max_batch_size: Ensure this value is less than or equal to 2147483647."),
])
def test_bad_settings_are_400_with_a_readable_message(acme, digits_version, choices, message):
    response = deploy(key_client(acme), digits_version["id"], **choices)
    assert response.status_code == 400
    assert response.json() == {"error": {"code": "invalid_request", "message": message}}
    assert not Deployment.unscoped.exists()


@pytest.mark.parametrize("limits, choices, message", [
    ({"allowed_hardware": ["cpu"]}, {"hardware": "gpu"},
     "Your plan does not include GPU deployments (allowed: cpu)."),
    ({}, {"instances": 5}, "At most 4 instances per deployment; asked for 5."),
    ({"max_instances": 8}, {"instances": 9}, "At most 8 instances per deployment; asked for 9."),
    ({}, {"max_batch_size": 257}, "The largest batch size allowed is 256; asked for 257."),
    ({"max_model_memory_mb": 100}, {"instances": 2}, "This deployment needs about"),
])
def test_a_deployment_beyond_the_tenants_limits_is_403_quota_exceeded(acme, digits_version, limits, choices,
                                                                      message):
    if limits:
        quota_set(level="tenant", target=acme, values=limits)
    response = deploy(key_client(acme), digits_version["id"], **choices)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "quota_exceeded"
    assert response.json()["error"]["message"].startswith(message)
    assert not Deployment.unscoped.exists()


def test_deployments_beyond_max_deployments_are_403_until_one_is_undeployed(acme, digits_version):
    client = key_client(acme)
    quota_set(level="tenant", target=acme, values={"max_deployments": 2})
    first = deploy(client, digits_version["id"], name="one").json()
    assert deploy(client, digits_version["id"], name="two").status_code == 202
    third = deploy(client, digits_version["id"], name="three")
    assert third.status_code == 403
    assert third.json() == {"error": {"code": "quota_exceeded", "message": "Your tenant may have at most 2 "
                                      "deployments; undeploy one or ask for a higher limit."}}
    client.delete(f"/api/v1/deployments/{first['id']}")  # unloading still counts...
    assert deploy(client, digits_version["id"], name="three").status_code == 403
    Deployment.unscoped.filter(pk=first["id"]).update(state="undeployed")  # ...until it is gone
    assert deploy(client, digits_version["id"], name="three").status_code == 202


def test_another_tenants_limits_do_not_apply(acme, globex, digits_version, digits_onnx):
    quota_set(level="tenant", target=globex, values={"max_deployments": 1, "allowed_hardware": ["cpu"]})
    client = key_client(acme)
    assert deploy(client, digits_version["id"], name="a", hardware="gpu").status_code == 202
    assert deploy(client, digits_version["id"], name="b", hardware="gpu").status_code == 202

"""Scaling settings and the unload action through the REST API: validated, within the
tenant's limits, recorded, and closed to members and to other tenants."""
import pytest

from tenants.quotas import quota_set
from tests.api_helpers import key_client, session_client
from tests.tenants.test_api_quotas import standard  # noqa: F401
from tests.workers.test_api_deployment_settings import deploy, digits_version, storage  # noqa: F401
from workers.models import Deployment, DeploymentState

pytestmark = pytest.mark.django_db


@pytest.fixture
def deployment(acme, digits_version) -> dict:  # noqa: F811
    response = deploy(key_client(acme), digits_version["id"])
    assert response.status_code == 202, response.json()
    return response.json()


def test_defaults_come_from_the_model_and_scale_to_zero(deployment):
    assert {k: deployment[k] for k in ("min_instances", "max_instances", "replicas", "keepalive", "keepalive_idle_s",
                                       "max_batch_size", "max_queue_delay_us", "preferred_batch_sizes")} == {
        "min_instances": 0, "max_instances": 1, "replicas": 1, "keepalive": "adaptive", "keepalive_idle_s": 600,
        "max_batch_size": 64, "max_queue_delay_us": 500, "preferred_batch_sizes": []}
    assert deployment["cold_starts"] == {"requests": 0, "cold_starts": 0, "share": 0.0, "p50_ms": None,
                                         "p99_ms": None}
    assert deployment["placement"] == [] and deployment["server"] is None


def test_settings_are_changed_and_recorded(acme, deployment):
    client = key_client(acme)
    response = client.patch(f"/api/v1/deployments/{deployment['id']}", {
        "min_instances": 1, "max_instances": 3, "keepalive": "fixed", "keepalive_idle_s": 120,
        "max_queue_delay_us": 2000, "preferred_batch_sizes": [32, 8, 8]}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["min_instances"], body["max_instances"], body["keepalive"], body["keepalive_idle_s"],
            body["max_queue_delay_us"], body["preferred_batch_sizes"]) == (1, 3, "fixed", 120, 2000, [8, 32])
    stored = Deployment.objects.for_tenant(acme).get(pk=deployment["id"])
    assert (stored.min_instances, stored.max_instances, stored.preferred_batch_sizes) == (1, 3, [8, 32])
    # A deploy with settings takes them at once.
    created = deploy(client, deployment["model_version"], name="warm", min_instances=2, max_instances=2,
                     keepalive="fixed")
    assert created.status_code == 202, created.json()
    assert (created.json()["min_instances"], created.json()["instances"]) == (2, 2)


@pytest.mark.parametrize("changes, code, message", [
    ({"min_instances": 2}, "invalid_instances", "min_instances (2) cannot exceed max_instances (1)."),
    ({"keepalive": "never"}, "invalid_request", None),
    ({"preferred_batch_sizes": [128]}, "invalid_batch_size",
     "Each preferred batch size must be between 1 and max_batch_size (64)."),
    ({"max_batch_size": 0, "preferred_batch_sizes": [4]}, "invalid_batch_size",
     "preferred_batch_sizes need batching: set max_batch_size above 0."),
    ({"replicas": 0}, "invalid_request", None),
])
def test_bad_settings_are_400_and_change_nothing(acme, deployment, changes, code, message):
    response = key_client(acme).patch(f"/api/v1/deployments/{deployment['id']}", changes, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == code
    if message:
        assert error["message"] == message
    stored = Deployment.objects.for_tenant(acme).get(pk=deployment["id"])
    assert (stored.min_instances, stored.max_instances, stored.keepalive, stored.replicas,
            stored.preferred_batch_sizes) == (0, 1, "adaptive", 1, [])


def test_settings_beyond_the_tenants_limits_are_403(acme, deployment):
    quota_set(level="tenant", target=acme, values={"max_instances": 2})
    response = key_client(acme).patch(f"/api/v1/deployments/{deployment['id']}", {"max_instances": 3},
                                      format="json")
    assert response.status_code == 403
    assert response.json()["error"] == {"code": "quota_exceeded",
                                         "message": "At most 2 instances per deployment; asked for 3."}
    assert Deployment.objects.for_tenant(acme).get(pk=deployment["id"]).max_instances == 1


def test_unload_refuses_what_it_cannot_do(acme, deployment):
    client = key_client(acme)
    pending = client.post(f"/api/v1/deployments/{deployment['id']}/unload")
    assert pending.status_code == 409
    assert pending.json()["error"]["message"] == "Only a ready deployment can be unloaded; this one is pending."
    Deployment.objects.for_tenant(acme).filter(pk=deployment["id"]).update(state=DeploymentState.READY,
                                                                             min_instances=1, max_instances=1)
    warm = client.post(f"/api/v1/deployments/{deployment['id']}/unload")
    assert warm.status_code == 409
    assert "set min_instances to 0" in warm.json()["error"]["message"]


def test_members_read_but_cannot_change_or_unload(acme, carol, deployment):
    client = session_client(carol)
    assert client.get(f"/api/v1/deployments/{deployment['id']}").status_code == 200
    assert client.patch(f"/api/v1/deployments/{deployment['id']}", {"max_instances": 1},
                        format="json").status_code == 403
    assert client.post(f"/api/v1/deployments/{deployment['id']}/unload").status_code == 403
    infer_only = key_client(acme, scopes=("infer",))
    assert infer_only.patch(f"/api/v1/deployments/{deployment['id']}", {}, format="json").status_code == 403


def test_another_tenant_gets_404_on_settings_and_unload(globex, deployment):
    client = key_client(globex)
    assert client.patch(f"/api/v1/deployments/{deployment['id']}", {"max_instances": 1},
                        format="json").status_code == 404
    assert client.post(f"/api/v1/deployments/{deployment['id']}/unload").status_code == 404
    assert client.get(f"/api/v1/deployments/{deployment['id']}").status_code == 404

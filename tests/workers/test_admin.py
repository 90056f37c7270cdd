"""The Django admin for Triton servers and deployments."""
import pytest

from graph_editor.services import model_version_upload
from workers.models import Deployment, DeploymentState, TritonServer

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def storage(settings, tmp_path):
    settings.MODEL_STORAGE_DIR = tmp_path / "models"


@pytest.fixture
def deployments(acme, digits_onnx):
    version = model_version_upload(tenant=acme, model_name="digits", chunks=[digits_onnx])
    return {
        state: Deployment.unscoped.create(tenant=acme, name=f"digits-{state}", model_version=version, state=state,
                                          error="Triton could not load the model" if state == "failed" else "")
        for state in (DeploymentState.READY, DeploymentState.FAILED)
    }


def test_servers_are_listed_searched_and_added_here(admin_client):
    TritonServer.objects.create(name="gpu-a", http_url="http://10.0.0.5:8000", repository_path="/models",
                                backends=["onnxruntime", "python"], gpus=1, healthy=True)
    assert len(admin_client.get("/admin/workers/tritonserver/?gpus__exact=1").context["cl"].result_list) == 1
    assert len(admin_client.get("/admin/workers/tritonserver/?q=gpu-b").context["cl"].result_list) == 0
    response = admin_client.post("/admin/workers/tritonserver/add/", {
        "name": "gpu-b", "http_url": "http://10.0.0.6:8000", "grpc_url": "10.0.0.6:8001",
        "repository_path": "/srv/models", "backends": '["onnxruntime"]', "enabled": "on",
        "memory_mb": "16384", "gpus": "1",
    })
    assert response.status_code == 302
    added = TritonServer.objects.get(name="gpu-b")
    assert added.backends == ["onnxruntime"] and added.healthy is False  # health is measured, not declared


@pytest.mark.parametrize("url, names", [
    ("/admin/workers/deployment/", {"digits-ready", "digits-failed"}),
    ("/admin/workers/deployment/?state__exact=failed", {"digits-failed"}),
    ("/admin/workers/deployment/?q=could+not+load", {"digits-failed"}),
])
def test_deployments_are_listed_filtered_and_searched(admin_client, deployments, url, names):
    assert {d.name for d in admin_client.get(url).context["cl"].result_list} == names


def test_deployments_are_not_added_edited_or_deleted_here(admin_client, deployments):
    ready = deployments[DeploymentState.READY]
    assert admin_client.get("/admin/workers/deployment/add/").status_code == 403
    assert admin_client.post(f"/admin/workers/deployment/{ready.pk}/change/", {"state": "failed"}).status_code == 403
    assert admin_client.get(f"/admin/workers/deployment/{ready.pk}/delete/").status_code == 403
    assert Deployment.unscoped.get(pk=ready.pk).state == DeploymentState.READY


def test_undeploy_and_retry_actions_go_through_the_lifecycle(admin_client, deployments):
    ready, failed = deployments[DeploymentState.READY], deployments[DeploymentState.FAILED]
    response = admin_client.post("/admin/workers/deployment/", {
        "action": "retry", "_selected_action": [ready.pk, failed.pk]}, follow=True)
    page = response.content.decode().replace("&#x27;", "'")
    assert "Deployment 'digits-ready': Only a failed deployment can be retried; this one is ready." in page
    assert "Retrying 1 deployment(s)." in page
    assert Deployment.unscoped.get(pk=failed.pk).state == DeploymentState.PENDING

    admin_client.post("/admin/workers/deployment/", {"action": "undeploy", "_selected_action": [ready.pk]})
    assert Deployment.unscoped.get(pk=ready.pk).state == DeploymentState.UNLOADING

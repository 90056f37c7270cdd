import uuid

import pytest
from django.utils import timezone

from billing.models import UsageEvent
from graph_editor.services import model_version_upload
from tenants.services import api_key_create
from workers.models import Deployment, DeploymentState


@pytest.fixture(autouse=True)
def storage(settings, tmp_path):
    settings.MODEL_STORAGE_DIR = tmp_path / "models"


@pytest.fixture
def acme_objects(acme, digits_onnx):
    version = model_version_upload(tenant=acme, model_name="digits", chunks=[digits_onnx])
    deployment = Deployment.unscoped.create(tenant=acme, name="digits", model_version=version,
                                            state=DeploymentState.READY)
    api_key, _ = api_key_create(tenant=acme, label="acme key", scopes=["infer"])
    UsageEvent.unscoped.create(tenant=acme, api_key=api_key, request_id=uuid.uuid4(), deployment_name="digits",
                               status=200, latency_ms=2.5, upstream_ms=2.0, bytes_in=10, bytes_out=20,
                               occurred_at=timezone.now())
    return {"model": version.model, "version": version, "deployment": deployment, "key": api_key}

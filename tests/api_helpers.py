"""Clients and small builders for the REST API tests."""
import time
import uuid
from pathlib import Path

from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from rest_framework.test import APIClient

from tenants.services import api_key_create


def key_client(tenant, scopes=("manage",)) -> APIClient:
    _, raw = api_key_create(tenant=tenant, label="api test", scopes=list(scopes))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def session_client(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def owner_client(auth: str, tenant, owner) -> APIClient:
    """The tenant's owner, through a `manage` key ("key") or a signed-in session ("session")."""
    return key_client(tenant) if auth == "key" else session_client(owner)


def upload_model(client: APIClient, name: str, content: bytes, filename: str = "model.onnx", **extra):
    return client.post("/api/v1/models", {"name": name, "file": SimpleUploadedFile(filename, content), **extra},
                       format="multipart")


def files_under(directory: Path) -> list[Path]:
    return [p for p in Path(directory).rglob("*") if p.is_file()] if Path(directory).exists() else []


def usage_event_create(tenant, *, deployment_name="digits", status=200, minutes_ago: float = 0, **fields):
    from billing.models import UsageEvent

    values = {"latency_ms": 2.5, "upstream_ms": 2.0, "bytes_in": 10, "bytes_out": 20, **fields}
    return UsageEvent.unscoped.create(
        tenant=tenant, request_id=uuid.uuid4(), deployment_name=deployment_name, status=status,
        occurred_at=timezone.now() - timezone.timedelta(minutes=minutes_ago), **values,
    )


def poll_deployment(client: APIClient, deployment_id: int, states: set[str], timeout: float = 30.0) -> dict:
    """GET the deployment until its state is one of `states`, as a client would."""
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/api/v1/deployments/{deployment_id}").json()
        if body["state"] in states or time.monotonic() > deadline:
            assert body["state"] in states, f"deployment stuck in {body['state']}: {body['error']}"
            return body
        time.sleep(0.2)

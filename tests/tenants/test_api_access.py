"""Who may call which endpoint: credentials, scopes, roles, and tenancy (another
tenant's object is 404, never 403, and lists hold only the caller's own)."""
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from graph_editor.models import MLModel
from graph_editor.services import model_version_upload
from tenants.models import ApiKey
from tenants.services import api_key_create, api_key_revoke
from tests.api_helpers import key_client, session_client, usage_event_create
from workers.models import Deployment, DeploymentState

pytestmark = pytest.mark.django_db

READS = [
    "/api/v1/tenant",
    "/api/v1/keys",
    "/api/v1/models",
    "/api/v1/models/{model}",
    "/api/v1/models/{model}/versions",
    "/api/v1/versions/{version}",
    "/api/v1/deployments",
    "/api/v1/deployments?history=1",
    "/api/v1/deployments/{deployment}",
    "/api/v1/usage",
    "/api/v1/usage/summary",
    "/api/v1/usage/timeseries",
]
WRITES = [
    ("post", "/api/v1/keys", {"label": "x", "scopes": ["infer"]}),
    ("post", "/api/v1/keys/{key}/revoke", None),
    ("post", "/api/v1/models", "upload"),
    ("delete", "/api/v1/models/{model}", None),
    ("post", "/api/v1/deployments", {"model_version": "{version}", "name": "digits-b"}),
    ("delete", "/api/v1/deployments/{deployment}", None),
]
# Every endpoint that names one object, and the create that names another object.
OBJECT_ENDPOINTS = [
    ("get", "/api/v1/models/{model}", None),
    ("delete", "/api/v1/models/{model}", None),
    ("get", "/api/v1/models/{model}/versions", None),
    ("get", "/api/v1/versions/{version}", None),
    ("get", "/api/v1/deployments/{deployment}", None),
    ("delete", "/api/v1/deployments/{deployment}", None),
    ("post", "/api/v1/keys/{key}/revoke", None),
    ("post", "/api/v1/deployments", {"model_version": "{version}"}),
]
ALL_ENDPOINTS = [("get", path, None) for path in READS] + WRITES


@pytest.fixture(autouse=True)
def storage(settings, tmp_path):
    settings.MODEL_STORAGE_DIR = tmp_path / "models"


@pytest.fixture
def acme_objects(acme, digits_onnx):
    version = model_version_upload(tenant=acme, model_name="digits", chunks=[digits_onnx])
    deployment = Deployment.unscoped.create(tenant=acme, name="digits", model_version=version,
                                            state=DeploymentState.READY)
    api_key, _ = api_key_create(tenant=acme, label="acme key", scopes=["infer"])
    usage_event_create(acme)
    return {"model": version.model.pk, "version": version.pk, "deployment": deployment.pk, "key": api_key.pk}


def call(client: APIClient, method: str, path: str, payload, ids: dict, digits_onnx: bytes):
    url = path.format(**ids)
    if payload == "upload":
        return client.post(url, {"name": "other", "file": SimpleUploadedFile("m.onnx", digits_onnx)},
                           format="multipart")
    if isinstance(payload, dict):
        payload = {k: v.format(**ids) if isinstance(v, str) else v for k, v in payload.items()}
        return getattr(client, method)(url, payload, format="json")
    return getattr(client, method)(url)


def assert_acme_untouched(ids: dict) -> None:
    assert MLModel.unscoped.filter(pk=ids["model"]).exists()
    assert Deployment.unscoped.get(pk=ids["deployment"]).state == DeploymentState.READY
    assert Deployment.unscoped.count() == 1
    assert ApiKey.unscoped.get(pk=ids["key"]).revoked_at is None


@pytest.mark.parametrize("auth", ["key", "session"])
@pytest.mark.parametrize("path", READS)
def test_the_owner_can_read_every_endpoint(acme, alice, acme_objects, path, auth):
    client = key_client(acme) if auth == "key" else session_client(alice)
    response = client.get(path.format(**acme_objects))
    assert response.status_code == 200, response.json()


@pytest.mark.parametrize("auth", ["key", "session"])
@pytest.mark.parametrize("method, path, payload", OBJECT_ENDPOINTS)
def test_another_tenant_gets_404_for_every_object(globex, bob, acme_objects, digits_onnx, method, path, payload,
                                                  auth):
    client = key_client(globex) if auth == "key" else session_client(bob)
    response = call(client, method, path, payload, acme_objects, digits_onnx)
    assert response.status_code == 404, response.json()
    assert response.json()["error"]["code"] == "not_found"
    assert "in this tenant" in response.json()["error"]["message"]
    assert_acme_untouched(acme_objects)


@pytest.mark.parametrize("path", ["/api/v1/models", "/api/v1/deployments?history=1", "/api/v1/usage"])
def test_another_tenants_lists_hold_none_of_acmes_objects(globex, acme_objects, path):
    body = key_client(globex).get(path).json()
    assert (body["results"] if path == "/api/v1/usage" else body) == []


def test_another_tenants_keys_and_usage_totals_are_its_own(globex, acme_objects):
    client = key_client(globex)
    assert [k["label"] for k in client.get("/api/v1/keys").json()] == ["api test"]
    assert client.get("/api/v1/usage/summary").json()["total_requests"] == 0
    assert sum(p["requests"] for p in client.get("/api/v1/usage/timeseries").json()) == 0


@pytest.mark.parametrize("method, path, payload", ALL_ENDPOINTS)
def test_without_credentials_every_endpoint_is_401(acme_objects, digits_onnx, method, path, payload):
    response = call(APIClient(), method, path, payload, acme_objects, digits_onnx)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    assert response["WWW-Authenticate"] == "Bearer"
    assert_acme_untouched(acme_objects)


@pytest.mark.parametrize("header", ["Bearer ik_0000_not-a-key", "Bearer revoked", "Token abc", "Bearer"])
def test_an_invalid_or_revoked_key_is_401(acme, acme_objects, header):
    if header == "Bearer revoked":
        api_key, raw = api_key_create(tenant=acme, label="old", scopes=["manage"])
        api_key_revoke(tenant=acme, key_id=api_key.pk)
        header = f"Bearer {raw}"
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/v1/models")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


@pytest.mark.parametrize("method, path, payload", ALL_ENDPOINTS)
def test_an_infer_only_key_is_403_naming_the_missing_scope(acme, acme_objects, digits_onnx, method, path, payload):
    response = call(key_client(acme, scopes=["infer"]), method, path, payload, acme_objects, digits_onnx)
    assert response.status_code == 403
    assert response.json() == {"error": {"code": "permission_denied",
                                          "message": "This API key lacks the 'manage' scope."}}
    assert_acme_untouched(acme_objects)


@pytest.mark.parametrize("path", READS)
def test_a_member_can_read(carol, acme_objects, path):
    assert session_client(carol).get(path.format(**acme_objects)).status_code == 200


@pytest.mark.parametrize("method, path, payload", WRITES)
def test_a_member_cannot_write(carol, acme_objects, digits_onnx, method, path, payload):
    response = call(session_client(carol), method, path, payload, acme_objects, digits_onnx)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert "read-only (member)" in response.json()["error"]["message"]
    assert_acme_untouched(acme_objects)
    assert not MLModel.unscoped.filter(name="other").exists()
    assert ApiKey.unscoped.filter(label="x").count() == 0

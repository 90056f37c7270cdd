"""The REST API as a tenant uses it, and tenancy on every endpoint."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.api_helpers import key_client, session_client


@pytest.mark.django_db
def test_upload_then_list_detail_versions(acme, digits_onnx):
    client = key_client(acme)
    response = client.post("/api/v1/models", {"name": "digits", "description": "8x8 digits",
                                              "file": SimpleUploadedFile("digits.onnx", digits_onnx)},
                           format="multipart")
    assert response.status_code == 201, response.json()
    version = response.json()
    assert version["version"] == 1 and version["has_batch_dim"] is True
    assert version["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 64]}]
    again = client.post("/api/v1/models", {"name": "digits", "file": SimpleUploadedFile("d.onnx", digits_onnx)},
                        format="multipart")
    assert again.json()["version"] == 2
    [listed] = client.get("/api/v1/models").json()
    assert listed["name"] == "digits" and listed["latest_version"]["version"] == 2
    detail = client.get(f"/api/v1/models/{listed['id']}").json()
    assert [v["version"] for v in detail["versions"]] == [2, 1]
    assert client.get(f"/api/v1/versions/{version['id']}").json()["sha256"] == version["sha256"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "data, status, message",
    [
        ({"name": "digits"}, 400, "multipart field 'file'"),
        ({"file": "digits"}, 400, "'name'"),
        ({"name": "junk", "file": b"not a model"}, 400, "not a valid ONNX model"),
        ({"name": "Bad Name!", "file": "digits"}, 400, "Invalid model name"),
    ],
)
def test_bad_uploads_get_clear_errors(acme, digits_onnx, data, status, message, settings):
    payload = dict(data)
    if "file" in payload:
        payload["file"] = SimpleUploadedFile("m.onnx", digits_onnx if payload["file"] == "digits" else payload["file"])
    response = key_client(acme).post("/api/v1/models", payload, format="multipart")
    assert response.status_code == status
    assert message in response.json()["error"]["message"]
    assert not [p for p in settings.MODEL_STORAGE_DIR.rglob("*") if p.is_file()]


@pytest.mark.django_db
def test_too_large_upload_is_413(acme, digits_onnx, settings):
    settings.MODEL_UPLOAD_MAX_BYTES = 2048
    response = key_client(acme).post("/api/v1/models", {"name": "digits", "file": SimpleUploadedFile(
        "digits.onnx", digits_onnx)}, format="multipart")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "file_too_large"


@pytest.mark.django_db
def test_keys_create_show_secret_once_and_revoke(acme, alice):
    client = session_client(alice)
    created = client.post("/api/v1/keys", {"label": "ci", "scopes": ["infer"]}, format="json")
    assert created.status_code == 201
    secret = created.json()["key"]
    assert secret.startswith("ik_")
    listed = client.get("/api/v1/keys").json()
    assert secret not in str(listed) and "secret_hash" not in listed[0]
    revoked = client.post(f"/api/v1/keys/{created.json()['id']}/revoke")
    assert revoked.json()["active"] is False
    bad = client.post("/api/v1/keys", {"label": "x", "scopes": ["root"]}, format="json")
    assert bad.status_code == 400 and "root" in bad.json()["error"]["message"]


@pytest.mark.django_db
def test_deployments_create_list_detail_undeploy(acme, acme_objects, django_capture_on_commit_callbacks):
    client = key_client(acme)
    response = client.post("/api/v1/deployments", {"model_version": acme_objects["version"].pk, "name": "digits-b"},
                           format="json")
    assert response.status_code == 202
    body = response.json()
    assert body["state"] == "pending" and body["infer_url"].endswith("/v2/models/digits-b/infer")
    clash = client.post("/api/v1/deployments", {"model_version": acme_objects["version"].pk}, format="json")
    assert clash.status_code == 409 and "already exists" in clash.json()["error"]["message"]
    names = {d["name"] for d in client.get("/api/v1/deployments").json()}
    assert names == {"digits", "digits-b"}
    gone = client.delete(f"/api/v1/deployments/{body['id']}")
    assert gone.status_code == 202 and gone.json()["state"] == "unloading"


@pytest.mark.django_db
def test_usage_summary_list_and_timeseries(acme, acme_objects):
    client = key_client(acme)
    assert client.get("/api/v1/usage/summary").json()["total_requests"] == 1
    events = client.get("/api/v1/usage").json()
    assert events["count"] == 1 and events["results"][0]["deployment_name"] == "digits"
    [point] = client.get("/api/v1/usage/timeseries?minutes=5").json()
    assert point["requests"] == 1 and point["errors"] == 0
    assert client.get("/api/v1/usage/timeseries?minutes=0").status_code == 400


@pytest.mark.django_db
def test_tenant_endpoint_reports_the_callers_tenant_and_role(acme, alice):
    body = session_client(alice).get("/api/v1/tenant").json()
    assert body == {"id": acme.pk, "name": "Acme Corp", "slug": "acme", "role": "owner"}


TENANT_SCOPED = [
    ("get", "/api/v1/models/{model}"),
    ("delete", "/api/v1/models/{model}"),
    ("get", "/api/v1/models/{model}/versions"),
    ("get", "/api/v1/versions/{version}"),
    ("get", "/api/v1/deployments/{deployment}"),
    ("delete", "/api/v1/deployments/{deployment}"),
    ("post", "/api/v1/keys/{key}/revoke"),
]


@pytest.mark.django_db
@pytest.mark.parametrize("method, path", TENANT_SCOPED)
@pytest.mark.parametrize("auth", ["key", "session"])
def test_another_tenant_gets_404_on_every_object(globex, bob, acme_objects, method, path, auth):
    client = key_client(globex) if auth == "key" else session_client(bob)
    url = path.format(model=acme_objects["model"].pk, version=acme_objects["version"].pk,
                      deployment=acme_objects["deployment"].pk, key=acme_objects["key"].pk)
    response = getattr(client, method)(url)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/v1/models", "/api/v1/deployments", "/api/v1/keys", "/api/v1/usage",
                                  "/api/v1/usage/summary", "/api/v1/usage/timeseries"])
def test_lists_show_only_the_callers_tenant(globex, acme_objects, path):
    body = key_client(globex).get(path).json()
    items = body["results"] if isinstance(body, dict) and "results" in body else body
    if path.endswith("summary"):
        assert body["total_requests"] == 0
    elif path.endswith("keys"):
        assert [k["label"] for k in items] == ["api test"]  # only the caller's own key
    else:
        assert items == []


@pytest.mark.django_db
def test_create_with_another_tenants_version_is_404(globex, acme_objects):
    response = key_client(globex).post("/api/v1/deployments", {"model_version": acme_objects["version"].pk},
                                       format="json")
    assert response.status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize(
    "client_kind, method, path, status, message",
    [
        ("anonymous", "get", "/api/v1/models", 401, ""),
        ("bad key", "get", "/api/v1/models", 401, "Invalid or revoked"),
        ("infer key", "get", "/api/v1/models", 403, "'manage' scope"),
        ("member", "post", "/api/v1/keys", 403, "read-only"),
        ("member", "get", "/api/v1/keys", 200, ""),
    ],
)
def test_authentication_and_roles(acme, carol, client_kind, method, path, status, message):
    from rest_framework.test import APIClient

    if client_kind == "anonymous":
        client = APIClient()
    elif client_kind == "bad key":
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION="Bearer ik_nope_nope")
    elif client_kind == "infer key":
        client = key_client(acme, scopes=["infer"])
    else:
        client = session_client(carol)
    response = getattr(client, method)(path, {"label": "x", "scopes": ["infer"]} if method == "post" else None,
                                       format="json")
    assert response.status_code == status
    if message:
        assert message in response.json()["error"]["message"]


@pytest.mark.django_db
def test_openapi_schema_and_docs(acme, alice):
    client = session_client(alice)
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()
    for path in ["/api/v1/models", "/api/v1/deployments", "/api/v1/keys", "/api/v1/usage/summary"]:
        assert path in schema["paths"]
    docs = client.get("/api/v1/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()

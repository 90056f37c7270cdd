"""GET /api/v1/tenant and the API key endpoints, as an owner uses them."""
import pytest
from rest_framework.test import APIClient

from gateway.contract.keys import key_entry_name
from tenants.directory import redis_client
from tenants.models import ApiKey
from tests.api_helpers import key_client, owner_client, session_client

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("who, role", [("alice", "owner"), ("carol", "member")])
def test_tenant_names_the_callers_tenant_and_the_signed_in_role(acme, alice, carol, who, role):
    body = session_client({"alice": alice, "carol": carol}[who]).get("/api/v1/tenant").json()
    assert body == {"id": acme.pk, "name": "Acme Corp", "slug": "acme", "role": role}


def test_tenant_through_a_key_has_no_role(acme, globex):
    assert key_client(globex).get("/api/v1/tenant").json() == {
        "id": globex.pk, "name": "Globex", "slug": "globex", "role": None}


@pytest.mark.parametrize("auth", ["key", "session"])
def test_a_created_key_shows_its_secret_once_works_and_stops_working_when_revoked(
        acme, alice, auth, django_capture_on_commit_callbacks):
    client = owner_client(auth, acme, alice)
    with django_capture_on_commit_callbacks(execute=True):
        created = client.post("/api/v1/keys", {"label": "ci deploys", "scopes": ["manage", "infer"]}, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    secret = body.pop("key")
    assert secret.startswith(f"ik_{body['prefix']}_")
    assert body["label"] == "ci deploys" and body["scopes"] == ["infer", "manage"] and body["active"] is True
    assert body["revoked_at"] is None and body["last_used_at"] is None

    listed = client.get("/api/v1/keys").json()
    [entry] = [k for k in listed if k["id"] == body["id"]]
    assert entry == body
    assert secret not in str(listed)
    assert all(set(k) == {"id", "label", "prefix", "scopes", "active", "created_at", "revoked_at", "last_used_at"}
               for k in listed)

    new_key = APIClient()
    new_key.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert new_key.get("/api/v1/tenant").json()["slug"] == "acme"
    assert client.get("/api/v1/keys").json()[0]["last_used_at"] is not None

    with django_capture_on_commit_callbacks(execute=True):
        revoked = client.post(f"/api/v1/keys/{body['id']}/revoke")
    assert revoked.status_code == 200
    assert revoked.json()["active"] is False and revoked.json()["revoked_at"] is not None
    # The gateway's directory learns of it too, so the key stops working for inference as well.
    secret_hash = ApiKey.objects.for_tenant(acme).get(pk=body["id"]).secret_hash
    assert redis_client().hget(key_entry_name(secret_hash), "revoked") == "1"
    rejected = new_key.get("/api/v1/tenant")
    assert rejected.status_code == 401
    assert rejected.json() == {"error": {"code": "unauthenticated", "message": "Invalid or revoked API key."}}

    again = client.post(f"/api/v1/keys/{body['id']}/revoke")
    assert again.status_code == 200 and again.json()["revoked_at"] == revoked.json()["revoked_at"]


@pytest.mark.parametrize(
    "payload, message",
    [
        ({"scopes": ["infer"]}, "label: This field is required."),
        ({"label": "", "scopes": ["infer"]}, "label: This field may not be blank."),
        ({"label": "ci"}, "scopes: This field is required."),
        ({"label": "ci", "scopes": []}, "scopes: This list may not be empty."),
        ({"label": "ci", "scopes": ["root"]}, '"root" is not a valid choice.'),
        ({"label": "x" * 121, "scopes": ["infer"]}, "label: Ensure this field has no more than 120 characters."),
    ],
)
def test_a_bad_key_request_says_which_field_is_wrong(acme, payload, message):
    response = key_client(acme).post("/api/v1/keys", payload, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    assert message in response.json()["error"]["message"]
    assert ApiKey.objects.for_tenant(acme).count() == 1  # only the caller's own key


def test_revoking_an_unknown_key_is_404(acme):
    response = key_client(acme).post("/api/v1/keys/987654/revoke")
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "No such API key in this tenant."}}

"""The Django admin for tenants, memberships and API keys."""
import pytest

from gateway.contract.keys import key_entry_name
from tenants.directory import redis_client
from tenants.models import ApiKey
from tenants.services import api_key_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme_key(acme, alice):
    api_key, _ = api_key_create(tenant=acme, label="ci deploys", scopes=["infer"], actor=alice)
    return api_key


@pytest.mark.parametrize(
    "url, shown",
    [
        ("/admin/tenants/tenant/", ["Acme Corp", "Globex"]),
        ("/admin/tenants/tenant/?q=glob", ["Globex"]),
        ("/admin/tenants/membership/?role__exact=member", ["carol"]),
        ("/admin/tenants/membership/?q=alice", ["alice"]),
        ("/admin/tenants/apikey/?q=ci+deploys", ["ci deploys"]),
        ("/admin/tenants/apikey/?active=yes", ["ci deploys"]),
    ],
)
def test_lists_search_and_filter(admin_client, globex, bob, carol, acme_key, url, shown):
    response = admin_client.get(url)
    assert response.status_code == 200
    listed = {str(obj) for obj in response.context["cl"].result_list}
    assert all(any(name in entry for entry in listed) for name in shown)
    assert len(listed) == len(shown)


def test_a_key_cannot_be_added_in_the_admin(admin_client):
    assert admin_client.get("/admin/tenants/apikey/add/").status_code == 403
    assert b'href="/admin/tenants/apikey/add/"' not in admin_client.get("/admin/tenants/apikey/").content


def test_the_key_page_never_shows_the_hash_and_only_the_label_is_editable(admin_client, acme_key):
    url = f"/admin/tenants/apikey/{acme_key.pk}/change/"
    page = admin_client.get(url)
    assert page.status_code == 200
    assert acme_key.secret_hash.encode() not in page.content and b"secret_hash" not in page.content
    assert list(page.context["adminform"].form.fields) == ["label"]

    admin_client.post(url, {"label": "renamed", "scopes": '["manage"]', "revoked_at": "2020-01-01 00:00",
                            "secret_hash": "0" * 64})
    after = ApiKey.unscoped.get(pk=acme_key.pk)
    assert after.label == "renamed"
    assert (after.scopes, after.revoked_at, after.secret_hash) == (["infer"], None, acme_key.secret_hash)


def test_revoking_from_the_admin_goes_through_the_service(admin_client, acme_key,
                                                          django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post("/admin/tenants/apikey/", {"action": "revoke", "_selected_action": [acme_key.pk]},
                                     follow=True)
    assert "Revoked 1 key(s)." in response.content.decode()
    assert ApiKey.unscoped.get(pk=acme_key.pk).revoked_at is not None
    assert redis_client().hget(key_entry_name(acme_key.secret_hash), "revoked") == "1"

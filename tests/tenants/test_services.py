import pytest

from gateway.contract.errors import NotFound, PlatformError
from gateway.contract.hashing import hash_api_key
from gateway.contract.keys import key_entry_name, limits_entry_name
from tenants.directory import redis_client
from tenants.models import ApiKey, Membership
from tenants.scoping import TenantRequired
from tenants.services import api_key_authenticate, api_key_create, api_key_revoke, tenant_create
from tests.tenants.test_api_quotas import standard  # noqa: F401


@pytest.mark.django_db
def test_key_secret_is_shown_once_and_stored_only_as_hash(acme, alice):
    api_key, raw = api_key_create(tenant=acme, label="ci", scopes=["infer"], actor=alice)
    assert raw.startswith(f"ik_{api_key.prefix}_")
    stored = ApiKey.objects.for_tenant(acme).get(pk=api_key.pk)
    assert stored.secret_hash == hash_api_key(raw)
    assert raw not in str(stored.__dict__.values())


@pytest.mark.django_db(transaction=True)
def test_key_is_published_to_the_gateway_directory_and_revocation_follows(acme):
    api_key, raw = api_key_create(tenant=acme, label="ci", scopes=["infer", "manage"])
    entry = redis_client().hgetall(key_entry_name(hash_api_key(raw)))
    assert entry == {"tenant_id": str(acme.pk), "key_id": str(api_key.pk), "scopes": "infer,manage", "revoked": "0"}
    api_key_revoke(tenant=acme, key_id=api_key.pk)
    assert redis_client().hget(key_entry_name(hash_api_key(raw)), "revoked") == "1"
    assert api_key_authenticate(raw_key=raw) is None


@pytest.mark.django_db
def test_a_new_tenants_plan_limits_reach_the_gateway_once_it_commits(standard, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as published:
        initech = tenant_create(name="Initech", slug="initech")
    assert redis_client().hgetall(limits_entry_name(f"t:{initech.pk}")) == {}
    for callback in published:
        callback()
    assert redis_client().hgetall(limits_entry_name(f"t:{initech.pk}")) == {
        "rate": "200.0", "burst": "400", "conc": "64", "payload": str(32 * 2**20)}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "label, scopes, message",
    [
        ("", ["infer"], "label"),
        ("x", [], "at least one scope"),
        ("x", ["infer", "admin"], "Unknown scope"),
    ],
)
def test_key_create_rejects_bad_input(acme, label, scopes, message):
    with pytest.raises(PlatformError, match=message):
        api_key_create(tenant=acme, label=label, scopes=scopes)
    assert not ApiKey.objects.for_tenant(acme).exists()


@pytest.mark.django_db
def test_revoking_another_tenants_key_is_not_found(acme, globex):
    api_key, raw = api_key_create(tenant=acme, label="ci", scopes=["infer"])
    with pytest.raises(NotFound):
        api_key_revoke(tenant=globex, key_id=api_key.pk)
    assert api_key_authenticate(raw_key=raw) is not None


@pytest.mark.django_db
@pytest.mark.parametrize("raw", ["", "nope", "ik_deadbeef_notakey"])
def test_authenticate_rejects_unknown_keys(raw):
    assert api_key_authenticate(raw_key=raw) is None


@pytest.mark.django_db
def test_tenant_owned_queries_without_a_tenant_raise(acme, alice):
    with pytest.raises(TenantRequired):
        list(ApiKey.objects.all())
    with pytest.raises(TenantRequired):
        Membership.objects.filter(user=alice).exists()
    with pytest.raises(TenantRequired):
        ApiKey.objects.for_tenant(None)
    assert Membership.objects.for_tenant(acme).filter(user=alice).exists()

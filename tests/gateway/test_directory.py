import pytest

from gateway.contract.hashing import hash_api_key
from gateway.contract.keys import key_entry_name, limits_entry_name, route_entry_name
from graph_editor.services import model_version_upload
from tenants.directory import redis_client
from tenants.services import api_key_create, api_key_revoke
from tests.tenants.test_api_quotas import standard  # noqa: F401
from workers.models import Deployment, DeploymentState
from workers.projection import directory_sync_all


@pytest.mark.django_db(transaction=True)
def test_sync_rebuilds_a_lost_projection_and_drops_what_nothing_backs(acme, digits_onnx, standard):
    live, live_raw = api_key_create(tenant=acme, label="live", scopes=["infer"])
    revoked, revoked_raw = api_key_create(tenant=acme, label="old", scopes=["infer"])
    api_key_revoke(tenant=acme, key_id=revoked.pk)
    version = model_version_upload(tenant=acme, model_name="digits", chunks=[digits_onnx])
    Deployment.unscoped.create(tenant=acme, name="digits", model_version=version, state=DeploymentState.READY)
    Deployment.unscoped.create(tenant=acme, name="gone", model_version=version, state=DeploymentState.UNDEPLOYED)

    r = redis_client()
    r.flushdb()  # Redis restarted and lost everything
    r.hset(route_entry_name(acme.pk, "stale"), mapping={"state": "ready"})
    result = directory_sync_all()

    # Two keys, one route, and the tenant's limits from the default plan.
    assert result == {"entries": 4, "removed": 1, "expired_leases": 0}
    assert r.hgetall(limits_entry_name(f"t:{acme.pk}")) == {"rate": "200.0", "burst": "400", "conc": "64",
                                                          "payload": str(32 * 2**20)}
    assert r.hget(key_entry_name(hash_api_key(live_raw)), "revoked") == "0"
    assert r.hget(key_entry_name(hash_api_key(revoked_raw)), "revoked") == "1"
    assert r.hget(route_entry_name(acme.pk, "digits"), "state") == "ready"
    assert not r.exists(route_entry_name(acme.pk, "gone"))
    assert not r.exists(route_entry_name(acme.pk, "stale"))

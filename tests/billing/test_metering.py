import time
import uuid

import pytest

from billing.metering import GROUP, consume
from billing.models import UsageEvent
from gateway.contract.keys import USAGE_STREAM
from gateway.contract.usage import EVENT_FIELDS
from tenants.directory import redis_client
from tenants.models import ApiKey
from tenants.services import api_key_create


def event(owner, api_key, **overrides) -> dict:
    """A stream entry as the gateway writes it: one packed field."""
    fields = {
        "rid": str(uuid.uuid4()), "tenant": str(owner.pk), "key": str(api_key.pk), "dep": "", "name": "digits",
        "ver": "", "proto": "http", "ep": "infer", "status": "200", "lat": "1.5", "up": "1.1", "cus": "1100",
        "cold": "0", "bin": "300", "bout": "120", "flags": "", "ts": str(time.time()),
    }
    fields.update(overrides)
    return {"e": "\x1f".join(fields[name] for name in EVENT_FIELDS)}


@pytest.mark.django_db(transaction=True)
def test_stream_entries_become_usage_rows_once_and_leave_the_stream(acme):
    api_key, _ = api_key_create(tenant=acme, label="ci", scopes=["infer"])
    r = redis_client()
    first = event(acme, api_key)
    r.xadd(USAGE_STREAM, first)
    r.xadd(USAGE_STREAM, first)  # a redelivered duplicate must not double-count
    r.xadd(USAGE_STREAM, event(acme, api_key, status="503", up=""))
    assert consume(once=True) == 2
    rows = UsageEvent.objects.for_tenant(acme).order_by("status")
    assert [(row.status, row.deployment_name, row.bytes_in, row.bytes_out) for row in rows] == [
        (200, "digits", 300, 120), (503, "digits", 300, 120)]
    assert rows[1].upstream_ms is None
    assert r.xlen(USAGE_STREAM) == 0
    assert ApiKey.objects.for_tenant(acme).get(pk=api_key.pk).last_used_at is not None
    # A second pass finds nothing new.
    r.xadd(USAGE_STREAM, first)
    assert consume(once=True) == 0
    assert UsageEvent.objects.for_tenant(acme).count() == 2


@pytest.mark.django_db(transaction=True)
def test_malformed_entries_are_dropped_without_blocking_the_rest(acme):
    api_key, _ = api_key_create(tenant=acme, label="ci", scopes=["infer"])
    r = redis_client()
    r.xadd(USAGE_STREAM, {"e": "not-a-uuid\x1f" + str(acme.pk)})
    r.xadd(USAGE_STREAM, {"rid": str(uuid.uuid4()), "tenant": str(acme.pk)})  # not the gateway's format
    r.xadd(USAGE_STREAM, event(acme, api_key))
    assert consume(once=True) == 1
    assert r.xlen(USAGE_STREAM) == 0


@pytest.mark.django_db(transaction=True)
def test_entries_a_crashed_consumer_left_pending_are_claimed(acme):
    api_key, _ = api_key_create(tenant=acme, label="ci", scopes=["infer"])
    r = redis_client()
    r.xgroup_create(USAGE_STREAM, GROUP, id="0", mkstream=True)
    r.xadd(USAGE_STREAM, event(acme, api_key))
    # A consumer reads the entry and dies before acknowledging it.
    assert r.xreadgroup(GROUP, "dead-consumer", {USAGE_STREAM: ">"}, count=10)
    assert consume(once=True, claim_idle_ms=60_000) == 0
    assert consume(once=True, claim_idle_ms=0) == 1
    assert UsageEvent.objects.for_tenant(acme).count() == 1
    assert r.xpending(USAGE_STREAM, GROUP)["pending"] == 0


@pytest.mark.django_db(transaction=True)
def test_events_referring_to_deleted_keys_or_deployments_are_kept_and_unknown_tenants_dropped(acme):
    api_key, _ = api_key_create(tenant=acme, label="ci", scopes=["infer"])
    r = redis_client()
    r.xadd(USAGE_STREAM, event(acme, api_key, key="999999", dep="888888", name="old-deployment"))
    r.xadd(USAGE_STREAM, event(acme, api_key, tenant="777777"))
    assert consume(once=True) == 1
    [row] = UsageEvent.objects.for_tenant(acme)
    assert (row.api_key_id, row.deployment_id, row.deployment_name) == (None, None, "old-deployment")
    assert r.xlen(USAGE_STREAM) == 0

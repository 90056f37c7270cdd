"""Stripe through the official SDK, against the fake Stripe (tests/billing/fake_stripe.py):
customers, meters, prices and the subscription are made once; each owed hour goes once as
a meter event with its deterministic identifier; a duplicate answered 400 counts as sent;
429s back off; an hour too old for a meter event goes as an invoice item; a late change
goes as an -a1 event for the difference; a sync killed mid-call and run again leaves each
identifier in Stripe once and Stripe's totals equal to the rollups; without a key nothing
Stripe runs."""
import json
import os
import re
import signal
import subprocess
import urllib.error
import urllib.request
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing.models import (
    BillingAccount,
    Price,
    PriceVersion,
    StripeMeterEvent,
    StripeMeterEventState,
    StripeObject,
    UsageRollup,
)
from billing.rollups import hour_start
from billing.stripe_sync import stripe_customer_ensure, stripe_meter_events_send, stripe_sync
from tests.billing.rating_fixtures import event, plan_with_prices, roll
from tests.stack import PYTHON, ROOT, database_url, wait

pytestmark = pytest.mark.django_db

NOW = timezone.now()
CPU = "platform_compute_cpu"
REQUESTS = "platform_requests"


@pytest.fixture(autouse=True)
def mirror_window(settings):
    settings.STRIPE_MIRROR_FROM = (NOW - timedelta(days=40)).date().isoformat()


@pytest.fixture
def priced(acme):
    acme.plan = plan_with_prices()
    acme.save()
    return acme


def hours_ago(n: int):
    return hour_start(timezone.now()) - timedelta(hours=n)


def usage(tenant, hour, *, requests: int, compute_ms: float = 1000):
    for minute in range(requests):
        event(tenant, hour + timedelta(minutes=minute), compute_ms=compute_ms)
    roll(hour)


def stripe_totals(fake, tenant) -> dict[str, Decimal]:
    customer = BillingAccount.objects.get(tenant=tenant).stripe_customer_id
    return {name: value for (cus, name), value in fake.meter_totals().items() if cus == customer}


def rollup_totals(tenant) -> dict[str, Decimal]:
    """The tenant's rollups in meter units: requests, and compute in nanoseconds."""
    totals = {}
    for meter, name, scale in (("requests", REQUESTS, 1), ("compute_ms", CPU, 10 ** 6)):
        quantity = sum(UsageRollup.objects.for_tenant(tenant).filter(meter=meter).values_list("quantity", flat=True),
                       Decimal(0))
        if quantity:
            totals[name] = quantity * scale
    return totals


def test_customers_meters_prices_and_the_subscription_are_made_once(fake_stripe, priced):
    stripe_sync()
    assert len(fake_stripe.customers) == 1 and len(fake_stripe.subscriptions) == 1
    assert sorted(m["event_name"] for m in fake_stripe.meters.values()) == [
        "platform_compute_cpu", "platform_compute_gpu", "platform_requests", "platform_reserved_memory"]
    account = BillingAccount.objects.get(tenant=priced)
    customer = fake_stripe.customers[account.stripe_customer_id]
    assert customer["metadata"] == {"tenant_id": str(priced.pk), "tenant_slug": "acme"}
    subscription = fake_stripe.subscriptions[account.stripe_subscription_id]
    assert subscription["customer"] == customer["id"] and account.stripe_subscription_status == "active"

    prices = {item["price"]["metadata"].get("component"): item for item in subscription["items"]["data"]}
    assert set(prices) == {"requests", "compute_cpu", "base_fee"}
    # 1 request free, 2 at 5 per 1,000 (0.5 cent each), then 2.5 per 1,000: in cents per request.
    requests = prices["requests"]["price"]
    assert requests["recurring"]["usage_type"] == "metered" and requests["tiers_mode"] == "graduated"
    assert requests["recurring"]["meter"] == StripeObject.objects.get(kind="meter", key="requests").stripe_id
    assert [(t["up_to"], t["unit_amount_decimal"]) for t in requests["tiers"]] == [
        ("1", "0"), ("3", "0.5"), ("inf", "0.25")]
    # The first second free, then 0.0125 a second: 1.25 cents per 10^9 nanoseconds.
    cpu = prices["compute_cpu"]["price"]
    assert [(t["up_to"], t["unit_amount_decimal"]) for t in cpu["tiers"]] == [
        ("1000000000", "0"), ("inf", "0.00000000125")]
    base = prices["base_fee"]
    assert base["price"]["unit_amount"] == "1000" and base["price"]["recurring"]["usage_type"] == "licensed"
    assert base["quantity"] == 1

    posts = len(fake_stripe.posts("/"))
    stripe_sync()
    stripe_customer_ensure(tenant=priced)
    assert len(fake_stripe.posts("/")) == posts, "a second run made something again"
    keys = [r.idempotency_key for r in fake_stripe.posts("/")]
    assert f"customer-{priced.pk}" in keys and f"subscription-{priced.pk}" in keys
    assert all(re.fullmatch(r"(customer|meter|price|subscription)-[a-z0-9_-]+", key) for key in keys), keys


def test_a_newer_price_version_moves_the_subscription_items_to_its_prices(fake_stripe, priced):
    stripe_sync()
    account = BillingAccount.objects.get(tenant=priced)
    later = PriceVersion.objects.create(plan=priced.plan, effective_from=timezone.now() - timedelta(seconds=1),
                                        currency="usd", base_fee=Decimal("10.00"))
    Price.objects.create(version=later, component="requests", tiers=[{"up_to": None, "unit_price": "3"}])
    stripe_sync()
    subscription = fake_stripe.subscriptions[account.stripe_subscription_id]
    assert len(fake_stripe.subscriptions) == 1
    held = {item["price"]["metadata"]["component"]: item["price"] for item in subscription["items"]["data"]}
    assert set(held) == {"requests", "base_fee"}  # compute_cpu has no price in the new version
    assert all(price["metadata"]["price_version"] == str(later.pk) for price in held.values())
    assert held["requests"]["billing_scheme"] == "per_unit" and held["requests"]["unit_amount_decimal"] == "0.3"
    assert fake_stripe.posts(f"/v1/subscriptions/{account.stripe_subscription_id}")[0].idempotency_key == \
        f"subscription-{priced.pk}-version-{later.pk}"


def test_each_owed_hour_is_sent_once_with_its_deterministic_identifier(fake_stripe, priced):
    first, second = hours_ago(3), hours_ago(2)
    usage(priced, first, requests=3, compute_ms=1.5)
    usage(priced, second, requests=2, compute_ms=0.333333)
    usage(priced, hour_start(timezone.now()), requests=1)  # the current hour is not owed yet

    result = stripe_sync()
    assert result["sent"] == 4 and result["invoice_item"] == 0
    stamp = {first: f"{first:%Y%m%d%H}", second: f"{second:%Y%m%d%H}"}
    assert sorted(fake_stripe.identifiers()) == sorted(
        f"acme-{c}-{stamp[h]}" for h in (first, second) for c in ("requests", "compute_cpu"))
    sent = {e["identifier"]: e for e in fake_stripe.meter_events}
    assert sent[f"acme-compute_cpu-{stamp[first]}"]["value"] == 4_500_000  # 3 × 1.5 ms, in nanoseconds
    assert sent[f"acme-compute_cpu-{stamp[second]}"]["value"] == 666_666
    assert sent[f"acme-requests-{stamp[second]}"]["timestamp"] == int(second.timestamp())
    for request in fake_stripe.posts("/v1/billing/meter_events"):
        assert request.idempotency_key == f"meter-event-{request.params['identifier']}"

    stripe_sync()
    stripe_meter_events_send()
    assert len(fake_stripe.posts("/v1/billing/meter_events")) == 4
    assert set(StripeMeterEvent.unscoped.values_list("state", flat=True)) == {StripeMeterEventState.SENT}


def test_an_identifier_stripe_already_holds_counts_as_sent(fake_stripe, priced):
    hour = hours_ago(2)
    usage(priced, hour, requests=2)
    stripe_sync()
    row = StripeMeterEvent.unscoped.get(component="requests")
    # As if the first answer had been lost and its idempotency key had expired since.
    StripeMeterEvent.unscoped.filter(pk=row.pk).update(state=StripeMeterEventState.PENDING)
    fake_stripe.idempotent.clear()

    result = stripe_meter_events_send()
    assert result["already_sent"] == 1 and result["sent"] == 0
    last = fake_stripe.posts("/v1/billing/meter_events")[-1]
    assert last.status == 400 and last.params["identifier"] == row.identifier
    assert fake_stripe.identifiers().count(row.identifier) == 1
    assert StripeMeterEvent.unscoped.get(pk=row.pk).state == StripeMeterEventState.SENT


def test_a_429_is_retried_after_a_backoff_with_the_same_key(fake_stripe, priced, settings):
    settings.STRIPE_BACKOFF_BASE_S = 0.05
    usage(priced, hours_ago(2), requests=1)
    stripe_sync()  # customer, meters, subscription first
    StripeMeterEvent.unscoped.all().delete()
    fake_stripe.meter_events.clear()
    fake_stripe.idempotent.clear()
    fake_stripe.rate_limit(3, path_prefix="/v1/billing/meter_events")
    before = len(fake_stripe.posts("/v1/billing/meter_events"))

    started = timezone.now()
    result = stripe_meter_events_send()
    waited = (timezone.now() - started).total_seconds()
    assert result["sent"] == 2 and len(fake_stripe.meter_events) == 2
    calls = fake_stripe.posts("/v1/billing/meter_events")[before:]
    assert [c.status for c in calls] == [429, 429, 429, 200, 200]
    assert len({c.idempotency_key for c in calls[:4]}) == 1
    # Waits of 0.05, 0.1 and 0.2 s, each with jitter down to half: at least 0.175 s.
    assert waited >= 0.175


def test_stripe_refusing_for_too_long_leaves_the_rest_for_the_next_run(fake_stripe, priced, settings):
    settings.STRIPE_BACKOFF_TRIES = 2
    usage(priced, hours_ago(2), requests=1)
    stripe_sync()
    StripeMeterEvent.unscoped.update(state=StripeMeterEventState.PENDING)
    fake_stripe.meter_events.clear()
    fake_stripe.idempotent.clear()
    fake_stripe.rate_limit(2, path_prefix="/v1/billing/meter_events")
    assert stripe_meter_events_send()["failed"] == 1
    assert "RateLimitError" in StripeMeterEvent.unscoped.order_by("id").first().error
    assert stripe_meter_events_send()["sent"] == 2


@pytest.mark.parametrize("age", [timedelta(hours=30), timedelta(days=36)], ids=["past-dedup-window", "past-35-days"])
def test_an_hour_too_old_for_a_meter_event_goes_as_an_invoice_item(fake_stripe, priced, age):
    hour = hour_start(timezone.now() - age)
    usage(priced, hour, requests=3, compute_ms=1000)
    result = stripe_sync()
    assert result["invoice_item"] == 2 and result["sent"] == 0
    assert fake_stripe.meter_events == []
    items = {item["metadata"]["component"]: item for item in fake_stripe.invoice_items.values()}
    # 3 requests: 1 free, 2 at 0.005 = 0.01; 3 s of CPU: 1 free, 2 at 0.0125 = 0.025 → 0.03.
    assert items["requests"]["amount"] == 1 and items["compute_cpu"]["amount"] == 3
    assert items["compute_cpu"]["period"] == {"start": str(int(hour.timestamp())),
                                              "end": str(int(hour.timestamp()) + 3600)}
    identifier = f"acme-requests-{hour:%Y%m%d%H}"
    assert items["requests"]["metadata"]["identifier"] == identifier
    assert fake_stripe.posts("/v1/invoiceitems")[0].idempotency_key in {
        f"invoice-item-{identifier}", f"invoice-item-acme-compute_cpu-{hour:%Y%m%d%H}"}
    assert set(StripeMeterEvent.unscoped.values_list("state", flat=True)) == {StripeMeterEventState.INVOICE_ITEM}
    stripe_sync()
    assert len(fake_stripe.invoice_items) == 2


def test_a_late_change_to_a_sent_hour_goes_as_a_further_event_for_the_difference(fake_stripe, priced):
    hour = hours_ago(2)
    usage(priced, hour, requests=2, compute_ms=2)
    stripe_sync()
    event(priced, hour + timedelta(minutes=59), compute_ms=5)  # arrives late
    roll(hour)
    stripe_sync()
    stamp = f"{hour:%Y%m%d%H}"
    sent = {e["identifier"]: e["value"] for e in fake_stripe.meter_events}
    assert sent == {f"acme-requests-{stamp}": 2, f"acme-compute_cpu-{stamp}": 4_000_000,
                    f"acme-requests-{stamp}-a1": 1, f"acme-compute_cpu-{stamp}-a1": 5_000_000}
    assert stripe_totals(fake_stripe, priced) == rollup_totals(priced)


def test_a_sync_killed_mid_call_and_run_again_sends_each_hour_once(fake_stripe, priced, transactional_db, settings):
    """kill -9 while Stripe holds an event whose answer never came back: the next run sends
    it again (the idempotency key replays the answer), and nothing is lost or doubled."""
    for n in range(2, 8):
        usage(priced, hours_ago(n), requests=n, compute_ms=n * 1.25)
    fake_stripe.stall_meter_events_after(5)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings", "DATABASE_URL": database_url(),
           "REDIS_URL": settings.REDIS_URL, "STRIPE_API_KEY": fake_stripe.api_key,
           "STRIPE_API_BASE": fake_stripe.url, "STRIPE_METER_EVENTS_API_BASE": fake_stripe.url,
           "STRIPE_MIRROR_FROM": settings.STRIPE_MIRROR_FROM, "STRIPE_BACKOFF_BASE_S": "0.01"}
    proc = subprocess.Popen(
        [PYTHON, "-c", "import django; django.setup(); from billing.stripe_sync import stripe_sync; stripe_sync()"],
        cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert fake_stripe.stalled.wait(timeout=60), proc.communicate(timeout=5)[0].decode()[-3000:]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    fake_stripe.release.set()
    in_flight = fake_stripe.meter_events[-1]["identifier"]
    assert len(fake_stripe.meter_events) == 6
    assert StripeMeterEvent.unscoped.filter(state=StripeMeterEventState.SENT).count() == 5

    # The killed run's lock goes with its connection.
    result = wait(lambda: stripe_sync(), until=lambda r: "skipped" not in r, timeout=20, what="the sync's lock")
    assert result["sent"] == 7
    identifiers = fake_stripe.identifiers()
    assert len(identifiers) == len(set(identifiers)) == 12
    assert stripe_totals(fake_stripe, priced) == rollup_totals(priced)
    again = [r for r in fake_stripe.posts("/v1/billing/meter_events") if r.params["identifier"] == in_flight]
    assert len(again) == 2 and again[1].replayed
    assert set(StripeMeterEvent.unscoped.values_list("state", flat=True)) == {StripeMeterEventState.SENT}


def test_without_a_stripe_key_nothing_stripe_runs(fake_stripe, priced, settings, client):
    settings.STRIPE_API_KEY = ""
    usage(priced, hours_ago(2), requests=2)
    from billing import tasks

    assert stripe_sync() == {} and stripe_meter_events_send() == {} and tasks.stripe_sync() == {}
    assert fake_stripe.requests == []
    assert not StripeMeterEvent.unscoped.exists() and not StripeObject.objects.exists()
    assert BillingAccount.objects.filter(tenant=priced).exclude(stripe_customer_id="").count() == 0
    response = client.post("/stripe/webhook", data="{}", content_type="application/json")
    assert response.status_code == 404 and response.json()["error"]["code"] == "stripe_disabled"


def test_the_fake_refuses_what_stripe_refuses(fake_stripe, priced):
    """The fake's checks are real: a wrong key, a JSON body, a missing or reused idempotency
    key and a timestamp beyond 35 days are refused as Stripe refuses them."""
    stripe_sync()
    customer = BillingAccount.objects.get(tenant=priced).stripe_customer_id

    def post(path: str, body: str, **headers) -> tuple[int, dict]:
        request = urllib.request.Request(fake_stripe.url + path, data=body.encode(), method="POST", headers={
            "Authorization": f"Bearer {fake_stripe.api_key}", "Content-Type": "application/x-www-form-urlencoded",
            **headers})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    event = f"event_name=platform_requests&payload[stripe_customer_id]={customer}&payload[value]=1&identifier=x1"
    assert post("/v1/billing/meter_events", event, Authorization="Bearer sk_test_other")[0] == 401
    assert post("/v1/billing/meter_events", "{}", **{"Content-Type": "application/json",
                                                     "Idempotency-Key": "k0"})[0] == 400
    assert post("/v1/billing/meter_events", event)[0] == 400  # no Idempotency-Key
    assert post("/v1/billing/meter_events", event, **{"Idempotency-Key": "k1"})[0] == 200
    assert post("/v1/billing/meter_events", event, **{"Idempotency-Key": "k1"})[0] == 200  # replayed
    status, answer = post("/v1/billing/meter_events", event + "0", **{"Idempotency-Key": "k1"})
    assert status == 400 and answer["error"]["type"] == "idempotency_error"
    status, answer = post("/v1/billing/meter_events", event, **{"Idempotency-Key": "k2"})
    assert status == 400 and answer["error"]["message"] == "An event already exists with identifier x1."
    old = int((timezone.now() - timedelta(days=35, minutes=1)).timestamp())
    status, answer = post("/v1/billing/meter_events", event.replace("x1", "x2") + f"&timestamp={old}",
                          **{"Idempotency-Key": "k3"})
    assert status == 400 and answer["error"]["param"] == "timestamp"
    assert fake_stripe.identifiers() == ["x1"]

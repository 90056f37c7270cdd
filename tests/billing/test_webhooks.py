"""Stripe's webhooks at /stripe/webhook, delivered by the fake Stripe to a live server and
signed as Stripe signs them: a bad signature or body is refused with 400 and recorded
nowhere; each event id is handled once; a failed payment marks the tenant past due (the
gateway's entry blocks it once the grace is over) and invoice.paid clears it; Stripe's
invoice id lands on our invoice of that period."""
import json
import time
from datetime import UTC, date, datetime

import pytest

from billing.invoicing import invoice_for
from billing.models import BillingAccount, StripeWebhookEvent
from gateway.contract.keys import bill_entry_name
from tenants.directory import redis_client


@pytest.fixture
def url(live_server, fake_stripe, settings):
    settings.BILLING_PAST_DUE_GRACE_S = 0
    return f"{live_server.url}/stripe/webhook"


@pytest.fixture
def customer(acme):
    BillingAccount.objects.create(tenant=acme, stripe_customer_id="cus_acme")
    return "cus_acme"


def account(tenant) -> BillingAccount:
    return BillingAccount.objects.get(tenant=tenant)


def gateway_blocked(tenant) -> bool:
    return redis_client().hget(bill_entry_name(tenant.pk), "blocked") in (b"1", "1")


@pytest.mark.parametrize("tamper", ["wrong secret", "body changed", "no header", "too old", "not a signature"])
def test_a_webhook_whose_signature_does_not_verify_is_refused(fake_stripe, url, customer, acme, tamper):
    event = fake_stripe.event("invoice.payment_failed", {"id": "in_1", "customer": customer})
    body = '{"id": "evt_1"}' if tamper == "body changed" else None
    raw = json.dumps(event)
    signature = {
        "wrong secret": fake_stripe.sign(raw, secret="whsec_not_ours"),
        "body changed": fake_stripe.sign(raw),
        "no header": "",
        "too old": fake_stripe.sign(raw, timestamp=int(time.time()) - 301),
        "not a signature": "garbage",
    }[tamper]
    status, answer = fake_stripe.webhook_send(url, body or raw, signature=signature)
    assert status == 400 and answer["error"]["code"] == "invalid_signature", answer
    assert answer["error"]["message"].startswith("The Stripe-Signature header does not verify this body")
    assert not StripeWebhookEvent.objects.exists()
    assert account(acme).past_due_since is None


@pytest.mark.parametrize("body", ["not json", "[1, 2]", '{"id": "evt_1"}'])
def test_a_signed_body_that_is_not_a_stripe_event_is_refused(fake_stripe, url, body):
    status, answer = fake_stripe.webhook_send(url, body)
    assert status == 400 and answer["error"]["code"] == "invalid_payload", answer
    assert not StripeWebhookEvent.objects.exists()


def test_only_post_is_accepted(fake_stripe, url, client):
    response = client.get("/stripe/webhook")
    assert response.status_code == 405 and response["Allow"] == "POST"


def test_a_failed_payment_marks_the_tenant_past_due_and_payment_clears_it_each_event_once(
        fake_stripe, url, customer, acme):
    failed_at = int(time.time()) - 60
    failed = fake_stripe.event("invoice.payment_failed", {"id": "in_1", "object": "invoice", "customer": customer},
                               created=failed_at)
    assert fake_stripe.webhook_send(url, failed) == (200, {"received": True, "replayed": False})
    assert account(acme).past_due_since == datetime.fromtimestamp(failed_at, UTC)
    assert gateway_blocked(acme)  # the grace is 0 here: the gateway answers 402 payment_required

    paid = fake_stripe.event("invoice.paid", {"id": "in_1", "object": "invoice", "customer": customer})
    assert fake_stripe.webhook_send(url, paid)[0] == 200
    assert account(acme).past_due_since is None and not gateway_blocked(acme)

    # Stripe delivers the failure again (a retry of the delivery): recorded once, not handled again.
    assert fake_stripe.webhook_send(url, failed) == (200, {"received": True, "replayed": True})
    assert account(acme).past_due_since is None and not gateway_blocked(acme)
    assert StripeWebhookEvent.objects.count() == 2
    assert all(e.handled_at for e in StripeWebhookEvent.objects.all())


def test_a_second_failure_keeps_the_first_date(fake_stripe, url, customer, acme):
    first, second = int(time.time()) - 7200, int(time.time()) - 60
    for created in (first, second):
        event = fake_stripe.event("invoice.payment_failed", {"id": "in_1", "customer": customer}, created=created)
        assert fake_stripe.webhook_send(url, event)[0] == 200
    assert account(acme).past_due_since == datetime.fromtimestamp(first, UTC)


@pytest.mark.parametrize("status, past_due", [("past_due", True), ("unpaid", True), ("active", False)])
def test_a_subscription_update_stores_its_status(fake_stripe, url, customer, acme, status, past_due):
    event = fake_stripe.event("customer.subscription.updated",
                              {"id": "sub_1", "object": "subscription", "customer": customer, "status": status})
    assert fake_stripe.webhook_send(url, event)[0] == 200
    assert account(acme).stripe_subscription_status == status
    assert (account(acme).past_due_since is not None) is past_due


def test_a_finalized_stripe_invoice_is_linked_to_our_invoice_of_its_period(fake_stripe, url, customer, acme, globex):
    november = invoice_for(tenant=acme, period_start=date(2026, 11, 1))
    other = invoice_for(tenant=globex, period_start=date(2026, 11, 1))
    start, end = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp()), int(datetime(2026, 12, 1, tzinfo=UTC).timestamp())
    stripe_invoice = fake_stripe.invoice_create(customer=customer, period_start=start, period_end=end)
    assert fake_stripe.webhook_send(url, fake_stripe.event("invoice.finalized", stripe_invoice))[0] == 200
    november.refresh_from_db()
    other.refresh_from_db()
    assert november.stripe_invoice_id == stripe_invoice["id"] and other.stripe_invoice_id == ""

    # A period we have no invoice for: recorded, nothing linked.
    october = fake_stripe.invoice_create(customer=customer, period_start=start - 31 * 86400, period_end=start)
    assert fake_stripe.webhook_send(url, fake_stripe.event("invoice.finalized", october))[0] == 200
    november.refresh_from_db()
    assert november.stripe_invoice_id == stripe_invoice["id"]


def test_an_unknown_event_type_is_recorded_and_ignored(fake_stripe, url, customer, acme):
    event = fake_stripe.event("charge.refunded", {"id": "ch_1", "customer": customer})
    assert fake_stripe.webhook_send(url, event)[0] == 200
    record = StripeWebhookEvent.objects.get()
    assert record.type == "charge.refunded" and record.handled_at and record.payload["id"] == event["id"]
    assert account(acme).past_due_since is None


def test_an_event_for_a_customer_we_do_not_know_changes_nothing(fake_stripe, url, customer, acme):
    event = fake_stripe.event("invoice.payment_failed", {"id": "in_9", "customer": "cus_someone_else"})
    assert fake_stripe.webhook_send(url, event)[0] == 200
    assert account(acme).past_due_since is None and StripeWebhookEvent.objects.count() == 1

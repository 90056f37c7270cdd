"""Stripe's webhook events, once each (the view in billing/webhooks.py verifies them first).

An event is recorded (StripeWebhookEvent, unique by its id) and handled in one
transaction, so a replay, or the same event delivered twice at once, finds it recorded and
does nothing. Handled:
- `invoice.finalized`: our invoice of that customer and period gets Stripe's invoice id;
- `invoice.paid`: the tenant is no longer past due;
- `invoice.payment_failed`: the tenant is past due from the event's time (an earlier date
  stands, so a retry that fails again does not extend the grace);
- `customer.subscription.updated`: its status is stored; `past_due` and `unpaid` mark the
  tenant past due too.
Any other type is recorded and ignored. Past-due changes go through
billing.spend.billing_past_due_set, which publishes the gateway's 402 block after the grace.
Stripe does not promise the order of events: an `invoice.paid` followed by an older
`invoice.payment_failed` for another invoice marks the tenant past due until the next payment."""
from datetime import UTC, date, datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.invoicing import month_start
from billing.models import BillingAccount, Invoice, StripeWebhookEvent
from billing.spend import billing_past_due_set

PAST_DUE_STATUSES = {"past_due", "unpaid"}


def _moment(timestamp) -> datetime:
    return datetime.fromtimestamp(int(timestamp), UTC)


def _account(obj: dict) -> BillingAccount | None:
    customer = obj.get("customer")
    if isinstance(customer, dict):
        customer = customer.get("id")
    if not customer:
        return None
    return BillingAccount.objects.select_related("tenant").filter(stripe_customer_id=customer).first()


def _invoice_finalized(event: dict, obj: dict, account: BillingAccount) -> None:
    start, end = obj.get("period_start"), obj.get("period_end")
    if start is None or end is None:
        return
    # The month the invoice's period mostly lies in: Stripe's periods run from the 1st, UTC.
    middle = _moment((int(start) + int(end)) // 2)
    period: date = month_start(middle)
    invoice = Invoice.objects.for_tenant(account.tenant).filter(period_start=period).first()
    if invoice is not None and invoice.stripe_invoice_id != obj.get("id", ""):
        invoice.stripe_invoice_id = obj.get("id", "")
        invoice.save(update_fields=["stripe_invoice_id"])


def _invoice_paid(event: dict, obj: dict, account: BillingAccount) -> None:
    billing_past_due_set(tenant=account.tenant, since=None)


def _payment_failed(event: dict, obj: dict, account: BillingAccount) -> None:
    billing_past_due_set(tenant=account.tenant, since=_moment(event["created"]))


def _subscription_updated(event: dict, obj: dict, account: BillingAccount) -> None:
    status = str(obj.get("status") or "")[:32]
    BillingAccount.objects.filter(pk=account.pk).update(stripe_subscription_status=status, updated_at=timezone.now())
    if status in PAST_DUE_STATUSES:
        billing_past_due_set(tenant=account.tenant, since=_moment(event["created"]))


HANDLERS = {
    "invoice.finalized": _invoice_finalized,
    "invoice.paid": _invoice_paid,
    "invoice.payment_failed": _payment_failed,
    "customer.subscription.updated": _subscription_updated,
}


def stripe_event_handle(*, event: dict) -> bool:
    """Record and handle a verified event; False when it was handled before (a replay)."""
    with transaction.atomic():
        try:
            with transaction.atomic():
                record = StripeWebhookEvent.objects.create(event_id=event["id"], type=event["type"], payload=event)
        except IntegrityError:
            return False
        handler = HANDLERS.get(event["type"])
        obj = (event.get("data") or {}).get("object") or {}
        account = _account(obj) if handler and isinstance(obj, dict) else None
        if handler and account is not None:
            handler(event, obj, account)
        record.handled_at = timezone.now()
        record.save(update_fields=["handled_at"])
    return True

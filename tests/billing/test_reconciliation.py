"""Three-way reconciliation (billing/reconciliation.py, `manage.py billing_reconcile`): clean
on a consistent month, and each kind of difference, when planted, is reported as a
sentence naming the tenant, the component and both figures, with exit status 1."""
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from billing.invoicing import invoice_draft_refresh, month_start
from billing.models import Invoice, InvoiceLine, LineKind
from billing.reconciliation import billing_reconcile
from billing.rollups import hour_start
from billing.stripe_sync import stripe_sync
from tests.billing.rating_fixtures import event, plan_with_prices, roll

pytestmark = pytest.mark.django_db


@pytest.fixture
def month(fake_stripe, acme, globex, settings):
    """Two tenants' usage of one owed hour, rolled, invoiced as drafts and sent to Stripe."""
    hour = hour_start(timezone.now()) - timedelta(hours=2)
    settings.STRIPE_MIRROR_FROM = (hour - timedelta(days=40)).date().isoformat()
    acme.plan = plan_with_prices()
    acme.save()
    for minute in range(4):
        event(acme, hour + timedelta(minutes=minute), compute_ms=750)
    event(globex, hour + timedelta(minutes=5), compute_ms=10)
    roll(hour)
    stripe_sync()
    period = month_start(hour)
    for tenant in (acme, globex):
        invoice_draft_refresh(tenant=tenant, period_start=period)
    return {"hour": hour, "period": period, "stripe": fake_stripe}


def command(period) -> tuple[str, CommandError | None]:
    out = StringIO()
    try:
        call_command("billing_reconcile", period=f"{period:%Y-%m}", stdout=out)
    except CommandError as exc:
        return out.getvalue(), exc
    return out.getvalue(), None


def test_a_consistent_month_reconciles_clean(month, acme):
    assert billing_reconcile(period_start=month["period"]) == []
    out, error = command(month["period"])
    assert error is None, out
    assert "No differences: events, rollups, invoices and Stripe agree." in out
    rows = {tuple(line.split()[:2]): line.split() for line in out.splitlines()
            if line.startswith(("acme ", "globex "))}
    # acme: 4 requests (0.004 thousand), 3 s of CPU = 3e9 ns in Stripe; the base fee of 10.00.
    assert rows[("acme", "requests")][2:5] == ["0.004", "0.004", "0.004"]
    assert rows[("acme", "compute_cpu")][-2:] == ["3000000000", "3000000000"]
    assert rows[("acme", "base_fee")][5:7] == ["10.00", "10.00"]
    assert rows[("globex", "requests")][-2:] == ["1", "1"]


def test_each_kind_of_difference_is_reported_and_exits_1(month, acme, globex):
    hour, period, fake = month["hour"], month["period"], month["stripe"]
    # (a) an event the rollups have not taken in yet;
    event(globex, hour + timedelta(minutes=30), compute_ms=5)
    # (b) an acme line whose amount was tampered with;
    line = InvoiceLine.objects.get(invoice__tenant=acme, kind=LineKind.USAGE, component="compute_cpu")
    InvoiceLine.objects.filter(pk=line.pk).update(amount=line.amount + Decimal("0.01"))
    # (c) an event Stripe holds that we never sent.
    customer = acme.billing_account.stripe_customer_id
    fake.meter_event_plant(event_name="platform_requests", customer=customer, value=7,
                           timestamp=int(hour.timestamp()) + 60)

    differences = billing_reconcile(period_start=period)
    assert "Tenant globex, requests: events 2, rollups 1.000000." in differences
    assert "Tenant globex, compute_ms: events 15.000000, rollups 10.000000." in differences
    assert ("Tenant acme, compute_cpu: the invoice lines charge 0.04 but a fresh rating charges 0.03."
            in differences)
    assert ("Tenant acme, requests: the rollups owe Stripe 4 requests but Stripe's meter summary holds 11."
            in differences)
    assert len(differences) == 4, differences

    out, error = command(period)
    assert error is not None and error.returncode == 1
    assert "4 difference(s):" in out and "- Tenant acme, compute_cpu: the invoice lines charge 0.04" in out


def test_usage_the_invoice_has_not_caught_up_with_is_reported(month, acme):
    hour, period = month["hour"], month["period"]
    event(acme, hour + timedelta(minutes=40), compute_ms=250)
    roll(hour)
    differences = billing_reconcile(period_start=period)
    assert "Tenant acme, requests: the rollups hold 0.005 × 1,000 requests but the invoice lines bill 0.004." \
        in differences
    assert "Tenant acme, compute_cpu: the rollups hold 3.25 × second but the invoice lines bill 3." \
        in differences
    assert any(s.startswith("Tenant acme, compute_cpu: the rollups owe Stripe 3250000000 nanoseconds but Stripe's "
                            "meter summary holds 3000000000") for s in differences), differences

    # Once the draft is re-rated and the sync has sent the hour's difference, all agree again.
    invoice_draft_refresh(tenant=acme, period_start=period)
    stripe_sync()
    assert billing_reconcile(period_start=period) == []


def test_a_finalized_month_with_late_usage_on_the_next_invoice_reconciles(month, acme, settings):
    """Late usage after finalization is billed by the next invoice's adjustment lines: the
    two together must bill what the rollups hold, and the check says so."""
    hour, period = month["hour"], month["period"]
    invoice = Invoice.objects.for_tenant(acme).get(period_start=period)
    Invoice.unscoped.filter(pk=invoice.pk).update(status="finalized", number=f"TEST-{invoice.pk}",
                                                 finalized_at=timezone.now() - timedelta(minutes=30))
    event(acme, hour + timedelta(minutes=50), compute_ms=1000)
    roll(hour)
    stripe_sync()
    next_month = month_start(period + timedelta(days=32))
    invoice_draft_refresh(tenant=acme, period_start=next_month,
                          now=timezone.now() + timedelta(days=32))
    assert InvoiceLine.objects.filter(invoice__period_start=next_month, kind=LineKind.ADJUSTMENT).exists()
    assert billing_reconcile(period_start=period) == []


def test_a_period_that_is_not_a_month_is_refused():
    with pytest.raises(CommandError, match="--period takes a month as YYYY-MM"):
        call_command("billing_reconcile", period="2026-13")

"""Invoices against hand-computed amounts: the allowance, graduated tiers crossed inside one
line and across two deployments, rounding once per line (half-up at exactly half a cent),
totals that are the sum of the lines; months cut at 00:00:00.000 UTC; late usage inside
the grace (its own invoice) and after finalization (a dated adjustment on the next one);
a price change mid-month; finalized invoices numbered and immutable; credit notes."""
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.db.models import F

from billing.invoicing import (
    credit_note_create,
    invoice_draft_refresh,
    invoice_finalize,
    invoice_rerate,
    invoices_finalize_due,
    invoices_refresh,
    line_request_ids,
    month_rating,
    month_start,
)
from billing.models import Invoice, InvoiceFinalized, InvoiceLine, Price, PriceVersion
from gateway.contract.errors import PlatformError
from tests.billing.rating_fixtures import event, plan_with_prices, roll
from workers.models import Deployment

pytestmark = pytest.mark.django_db

NOV = date(2026, 11, 1)
DEC = date(2026, 12, 1)
H1 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
H2 = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
DEC_1 = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def storage(settings, tmp_path):
    settings.MODEL_STORAGE_DIR = tmp_path / "models"
    settings.BILLING_FINALIZE_GRACE_S = 3600


@pytest.fixture
def metered(acme):
    acme.plan = plan_with_prices()
    acme.save(update_fields=["plan"])
    return acme


@pytest.fixture
def deployments(metered, digits_onnx):
    """a and b on cpu (a created first: rated first within an hour), g on gpu."""
    from graph_editor.services import model_version_upload

    version = model_version_upload(tenant=metered, model_name="digits", chunks=[digits_onnx])
    return {name: Deployment.unscoped.create(tenant=metered, name=name, model_version=version, hardware=hardware)
            for name, hardware in [("a", "cpu"), ("b", "cpu"), ("g", "gpu")]}


def summary(invoice_or_lines) -> list[tuple]:
    lines = invoice_or_lines.lines.order_by("position") if isinstance(invoice_or_lines, Invoice) else invoice_or_lines
    return [(line.kind, line.component, line.deployment_name, line.quantity, line.amount) for line in lines]


def test_hand_computed_invoice_rounds_each_line_half_up(metered, deployments):
    a, b, g = deployments["a"], deployments["b"], deployments["g"]
    for _ in range(2):
        event(metered, H1 + timedelta(minutes=5), deployment=a, compute_ms=1000)
        event(metered, H1 + timedelta(minutes=6), deployment=b, compute_ms=500)
    event(metered, H2 + timedelta(minutes=1), deployment=b, compute_ms=1000)
    event(metered, H2 + timedelta(minutes=2), deployment=g, compute_ms=250)
    event(metered, H2 + timedelta(minutes=3), deployment=a, status=429)  # refused: not billed
    roll(H1, H2)

    invoice = invoice_draft_refresh(tenant=metered, period_start=NOV, now=H2 + timedelta(hours=1))
    # Requests (running total across a then b): a's 2 = free + 0.005; b's 2 at H1 = 0.005
    # (tier 1's last) + 0.0025, b's 1 at H2 = 0.0025. CPU: a's 2 s = free + 0.0125;
    # b's 1 s + 1 s = 0.025. GPU: no price.
    assert summary(invoice) == [
        ("base_fee", "", "", Decimal(1), Decimal("10.00")),
        ("usage", "requests", "a", Decimal("0.002"), Decimal("0.01")),  # exactly 0.005: half-up
        ("usage", "compute_cpu", "a", Decimal(2), Decimal("0.01")),  # 0.0125
        ("usage", "requests", "b", Decimal("0.003"), Decimal("0.01")),  # 0.01
        ("usage", "compute_cpu", "b", Decimal(2), Decimal("0.03")),  # exactly 0.025: half-up
        ("usage", "requests", "g", Decimal("0.001"), Decimal("0.00")),  # the tier's only 2.5
        ("usage", "compute_gpu", "g", Decimal("0.25"), Decimal("0.00")),
    ]
    # Rounded per line: 10.06, where rounding the exact sum (10.0525) would say 10.05.
    assert invoice.total == Decimal("10.06") == sum(line.amount for line in invoice.lines.all())
    b_requests = invoice.lines.get(deployment_name="b", component="requests")
    assert b_requests.unit_price is None
    assert [(Decimal(t["from"]), Decimal(t["to"]), Decimal(t["quantity"]), Decimal(t["unit_price"]))
            for t in b_requests.tiers] == [(Decimal("0.002"), Decimal("0.003"), Decimal("0.001"), Decimal(5)),
                                          (Decimal("0.003"), Decimal("0.005"), Decimal("0.002"), Decimal("2.5"))]
    a_requests = invoice.lines.get(deployment_name="a", component="requests")
    assert [Decimal(t["unit_price"]) for t in a_requests.tiers] == [0, 5]  # crosses the allowance inside one line
    gpu = invoice.lines.get(component="compute_gpu")
    assert gpu.unit_price == 0 and [e.deployment_id for e in line_request_ids(line=gpu)] == [g.pk]
    assert not line_request_ids(line=invoice.lines.get(kind="base_fee")).exists()
    assert [e.deployment_id for e in line_request_ids(line=b_requests)] == [b.pk] * 3

    # Rating again gives the same lines, with the same ids.
    ids = list(invoice.lines.order_by("position").values_list("pk", flat=True))
    again = invoice_draft_refresh(tenant=metered, period_start=NOV, now=H2 + timedelta(hours=2))
    assert summary(again) == summary(invoice)
    assert list(again.lines.order_by("position").values_list("pk", flat=True)) == ids
    # The gateway's counter: every unit at the highest tier price, no allowance.
    rating = month_rating(tenant=metered, period_start=NOV, now=H2)
    assert rating.list_usage_total == Decimal("0.006") * 5 + Decimal("4") * Decimal("0.0125")


def test_month_edges_are_utc_midnight(metered):
    last = datetime(2026, 11, 30, 23, 59, 59, 999000, tzinfo=UTC)
    event(metered, last)
    event(metered, DEC_1)
    event(metered, DEC_1)
    roll(last, DEC_1)
    assert month_start(last) == NOV and month_start(DEC_1) == DEC
    assert month_start(datetime(2026, 12, 1, 0, 30, tzinfo=UTC).astimezone(UTC)) == DEC
    november = invoice_draft_refresh(tenant=metered, period_start=NOV, now=DEC_1)
    december = invoice_draft_refresh(tenant=metered, period_start=DEC, now=DEC_1 + timedelta(hours=2))
    assert november.lines.get(component="requests").quantity == Decimal("0.001")
    assert december.lines.get(component="requests").quantity == Decimal("0.002")
    assert (november.period_start, november.period_end) == (NOV, DEC)


def test_late_usage_inside_the_grace_lands_in_its_month(metered):
    event(metered, H1)
    roll(H1)
    assert invoices_refresh(now=H2) == 1
    late_at = datetime(2026, 11, 30, 23, 40, tzinfo=UTC)
    event(metered, late_at)  # arrives at 00:30, inside the grace
    roll(late_at)
    assert invoices_finalize_due(now=DEC_1 + timedelta(minutes=30)) == []
    invoices_refresh(now=DEC_1 + timedelta(minutes=31))  # the previous month's draft, still in grace
    [invoice] = invoices_finalize_due(now=DEC_1 + timedelta(hours=1, seconds=1))
    assert invoice.period_start == NOV and invoice.lines.get(component="requests").quantity == Decimal("0.002")
    assert re.fullmatch(r"INV-202611-\d{6}", invoice.number)


def test_usage_after_finalization_is_a_dated_adjustment_on_the_next_invoice(metered, deployments):
    a = deployments["a"]
    for minute in range(3):
        event(metered, H1 + timedelta(minutes=minute), deployment=a, compute_ms=1000)
    roll(H1)
    invoice_draft_refresh(tenant=metered, period_start=NOV, now=H2)
    [november] = invoices_finalize_due(now=DEC_1 + timedelta(hours=2))
    assert november.total == Decimal("10.04")  # 0.01 requests (0.005 + 0.005) + 0.03 cpu (0.025)

    late = [event(metered, H2, deployment=a, compute_ms=1000) for _ in range(2)]  # November's, arriving now
    roll(H2)
    december = invoice_draft_refresh(tenant=metered, period_start=DEC, now=DEC_1 + timedelta(days=1))
    adjustments = list(december.lines.filter(kind="adjustment").order_by("position"))
    assert [(line.component, line.quantity, line.amount) for line in adjustments] == [
        ("requests", Decimal("0.002"), Decimal("0.01")),  # 2 more at tier 2: 0.005 exactly -> 0.01
        ("compute_cpu", Decimal(2), Decimal("0.02")),  # rated whole: 4 s beyond the free one = 0.05, less 0.03
    ]
    assert all(line.description.startswith("Late usage of 2026-11: ") for line in adjustments)
    assert all(month_start(line.service_start) == NOV for line in adjustments)
    assert sorted(e.request_id for e in line_request_ids(line=adjustments[0])) == sorted(e.request_id for e in late)
    assert december.total == Decimal("10.03")  # its base fee and the adjustments

    # Both invoices together bill what rating November whole now bills.
    whole = month_rating(tenant=metered, period_start=NOV, now=DEC_1 + timedelta(days=1))
    billed = november.total + sum(line.amount for line in adjustments)
    assert billed == whole.total

    # Once December is finalized the adjustment is not billed again in January.
    [finalized] = invoices_finalize_due(now=datetime(2027, 1, 1, 2, tzinfo=UTC))
    assert finalized.pk == december.pk
    january = invoice_draft_refresh(tenant=metered, period_start=date(2027, 1, 1),
                                    now=datetime(2027, 1, 2, tzinfo=UTC))
    assert not january.lines.filter(kind="adjustment").exists()


def test_late_usage_survives_an_earlier_month_finalized_after_it(metered):
    """November's finalization failed in the beat that finalized December, and succeeded
    later: December's late usage, rolled in between, stays on January's draft."""
    event(metered, H1)
    december_hour = datetime(2026, 12, 10, 9, tzinfo=UTC)
    event(metered, december_hour)
    roll(H1, december_hour)
    january_start = date(2027, 1, 1)
    now = datetime(2027, 1, 5, tzinfo=UTC)
    november = invoice_draft_refresh(tenant=metered, period_start=NOV, now=now)
    december = invoice_draft_refresh(tenant=metered, period_start=DEC, now=now)
    invoice_finalize(invoice_id=december.pk, now=now)
    event(metered, december_hour)  # December's, arriving after its invoice
    roll(december_hour)
    january = invoice_draft_refresh(tenant=metered, period_start=january_start, now=now)
    assert january.lines.get(kind="adjustment", component="requests").quantity == Decimal("0.001")

    invoice_finalize(invoice_id=november.pk, now=now)
    # As if November's retry came an hour after that roll.
    Invoice.unscoped.filter(pk=november.pk).update(finalized_at=F("finalized_at") + timedelta(hours=1))
    january = invoice_draft_refresh(tenant=metered, period_start=january_start, now=now)
    assert january.lines.get(kind="adjustment", component="requests").quantity == Decimal("0.001")


def test_a_price_change_mid_month_rates_each_hour_at_its_prices(metered):
    change = datetime(2026, 11, 15, tzinfo=UTC)
    v2 = PriceVersion.objects.create(plan=metered.plan, effective_from=change, currency="usd", base_fee=Decimal("20"))
    Price.objects.create(version=v2, component="requests", free_allowance=Decimal("0.001"),
                         tiers=[{"up_to": None, "unit_price": "7"}])
    for _ in range(2):
        event(metered, H1)  # free + 0.005 under v1
    for _ in range(3):
        event(metered, H2)  # positions 3-5 under v2: 3 × 0.007; its cpu has no price in v2
    roll(H1, H2)
    invoice = invoice_draft_refresh(tenant=metered, period_start=NOV, now=H2 + timedelta(hours=1))
    rows = [(line.kind, line.component, line.price_version_id, line.service_start, line.quantity, line.amount)
            for line in invoice.lines.order_by("position")]
    v1 = metered.plan.price_versions.order_by("effective_from").first()
    assert rows == [
        ("base_fee", "", v1.pk, datetime(2026, 11, 1, tzinfo=UTC), Decimal(1), Decimal("10.00")),
        ("usage", "requests", v1.pk, datetime(2026, 11, 1, tzinfo=UTC), Decimal("0.002"), Decimal("0.01")),
        ("usage", "requests", v2.pk, change, Decimal("0.003"), Decimal("0.02")),  # 0.021
        ("usage", "compute_cpu", v1.pk, datetime(2026, 11, 1, tzinfo=UTC), Decimal(2), Decimal("0.01")),
        ("usage", "compute_cpu", v2.pk, change, Decimal(3), Decimal("0.00")),
    ]
    assert invoice.lines.get(price_version=v1, component="requests").service_end == change
    assert invoice.total == Decimal("10.04")


def test_a_price_change_within_an_hour_dates_lines_and_their_requests_by_the_hours_rated(metered):
    """An hour is rated by the version in force at its start, so a version taking effect at
    10:30 rates from 11:00: the old line's window, and the requests it lists, run to 11:00."""
    change = datetime(2026, 11, 15, 10, 30, tzinfo=UTC)
    v2 = PriceVersion.objects.create(plan=metered.plan, effective_from=change, currency="usd")
    Price.objects.create(version=v2, component="requests", tiers=[{"up_to": None, "unit_price": "7"}])
    before, after = event(metered, change - timedelta(minutes=20)), event(metered, change + timedelta(minutes=15))
    later = event(metered, change + timedelta(hours=1))
    roll(change, later.occurred_at)
    invoice = invoice_draft_refresh(tenant=metered, period_start=NOV, now=later.occurred_at + timedelta(hours=1))
    v1 = metered.plan.price_versions.order_by("effective_from").first()
    old, new = (invoice.lines.get(component="requests", price_version=v) for v in (v1, v2))
    hour = datetime(2026, 11, 15, 11, tzinfo=UTC)
    assert (old.quantity, old.service_end, new.quantity, new.service_start) == (
        Decimal("0.002"), hour, Decimal("0.001"), hour)
    assert sorted(e.request_id for e in line_request_ids(line=old)) == sorted([before.request_id, after.request_id])
    assert [e.request_id for e in line_request_ids(line=new)] == [later.request_id]


def test_finalized_invoices_are_numbered_and_immutable(metered, globex):
    globex.plan = metered.plan
    globex.save(update_fields=["plan"])
    event(metered, H1)
    roll(H1)
    invoices_refresh(now=H2)
    finalized = invoices_finalize_due(now=DEC_1 + timedelta(hours=1))
    assert sorted(i.tenant_id for i in finalized) == sorted([metered.pk, globex.pk])
    numbers = sorted(int(i.number.rsplit("-", 1)[1]) for i in finalized)
    assert numbers[1] == numbers[0] + 1 and all(i.number.startswith("INV-202611-") for i in finalized)
    invoice = Invoice.objects.for_tenant(metered).get(period_start=NOV)
    line = invoice.lines.first()
    line.amount = Decimal("0.00")
    with pytest.raises(InvoiceFinalized):
        line.save()
    with pytest.raises(InvoiceFinalized):
        line.delete()
    with pytest.raises(InvoiceFinalized):
        invoice.lines.all().delete()
    with pytest.raises(InvoiceFinalized):
        InvoiceLine.objects.filter(invoice=invoice).update(amount=0)
    invoice.total = Decimal(0)
    with pytest.raises(InvoiceFinalized):
        invoice.save()
    with pytest.raises(InvoiceFinalized):
        invoice.delete()
    invoice.stripe_invoice_id = "in_123"
    invoice.save(update_fields=["stripe_invoice_id"])  # what Stripe answers may still be recorded
    for call in (lambda: invoice_draft_refresh(tenant=metered, period_start=NOV),
                 lambda: invoice_rerate(invoice=Invoice.unscoped.get(pk=invoice.pk))):
        with pytest.raises(PlatformError) as refused:
            call()
        assert refused.value.status == 409
    invoice.refresh_from_db()
    assert invoice.total == Decimal("10.00") and invoice.lines.count() == 3  # base fee, requests, cpu


def test_credit_notes_correct_finalized_invoices_only(metered, alice):
    event(metered, H1)
    roll(H1)
    draft = invoice_draft_refresh(tenant=metered, period_start=NOV, now=H2)
    with pytest.raises(PlatformError) as refused:
        credit_note_create(invoice=draft, amount=Decimal("1"), reason="goodwill")
    assert refused.value.status == 409
    [invoice] = invoices_finalize_due(now=DEC_1 + timedelta(hours=1))
    for amount in (Decimal("0"), Decimal("-1"), Decimal("0.001"), Decimal("10.01"), "ten"):
        with pytest.raises(PlatformError) as bad:
            credit_note_create(invoice=invoice, amount=amount, reason="goodwill")
        assert bad.value.status == 400 and bad.value.code == "invalid_credit_note"
    first = credit_note_create(invoice=invoice, amount=Decimal("7.50"), reason="outage on Nov 2", actor=alice)
    assert re.fullmatch(r"CN-\d{6}", first.number) and first.created_by == alice
    with pytest.raises(PlatformError, match="At most 2.50 USD"):
        credit_note_create(invoice=invoice, amount=Decimal("2.51"), reason="more")
    second = credit_note_create(invoice=invoice, amount=Decimal("2.50"), reason="the rest")
    assert int(second.number[3:]) == int(first.number[3:]) + 1
    invoice.refresh_from_db()
    assert invoice.total == Decimal("10.00")  # the invoice itself never changes


def test_rerating_a_draft_reads_new_rollups(metered):
    event(metered, H1)
    roll(H1)
    draft = invoice_draft_refresh(tenant=metered, period_start=NOV, now=H2)
    event(metered, H1)
    roll(H1)
    assert invoice_rerate(invoice=draft).lines.get(component="requests").quantity == Decimal("0.002")

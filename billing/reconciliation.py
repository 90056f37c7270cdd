"""Three-way reconciliation of a month's billing (UTC calendar month): usage events ↔ hourly
rollups ↔ invoice lines ↔ Stripe's meters. (billing/reconcile.py is another check:
metered usage against Triton's own counts.)

(a) Events ↔ rollups: `usage_rollups_check`, to the unit.
(b) Rollups ↔ invoice lines, per tenant × component. Quantities, to the unit: the
    month's rollups in the component's unit against what the invoices bill for the month
    (its own invoice's usage lines, plus the adjustment lines any invoice carries for its
    late usage). Amounts, to the cent: those same lines (and the base fee) against a fresh
    `month_rating` of the month, which rates it whole from the rollups now; the usage
    lines of a fresh rating must also hold the rollups' quantities exactly. A draft that
    beat re-rates every minute can lag the rollups by that minute.
(c) Rollups ↔ Stripe, only with Stripe on: per tenant with a Stripe customer × component,
    the rollups of the hours already owed to Stripe (in meter units, less what went as
    invoice items) against Stripe's meter event summary over the same minute-aligned
    span. Stripe's summaries are eventually consistent: events sent in the last minutes
    may not show yet.

Every difference is one sentence naming the tenant, the component and both figures."""
import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Q, Sum
from django.utils import timezone

from billing.invoicing import month_rating, month_start
from billing.invoicing.drafts import period_bounds
from billing.models import Invoice, InvoiceLine, LineKind, StripeMeterEvent, StripeMeterEventState, UsageRollup
from billing.pricing import UNITS, ZERO, component_of, component_quantity
from billing.rollups import hour_start, usage_rollups_check
from billing.stripe_sync.catalog import METER_UNITS, stripe_meters_ensure
from billing.stripe_sync.client import stripe_client, stripe_enabled, stripe_request
from billing.stripe_sync.meter_events import mirrored_from
from tenants.models import Tenant

log = logging.getLogger(__name__)

BASE_FEE = "base_fee"


@dataclass
class Row:
    """One tenant × component of a month, as each source counts it (None: not looked at)."""

    tenant: str
    component: str
    rollups: Decimal = ZERO
    billed: Decimal = ZERO
    rated: Decimal = ZERO
    billed_amount: Decimal = ZERO
    rated_amount: Decimal = ZERO
    stripe_want: Decimal | None = None
    stripe: Decimal | None = None
    stripe_pending: int = 0


@dataclass
class Reconciliation:
    period_start: date
    rows: list[Row]
    differences: list[str]


def billing_reconcile(*, period_start: date, now: datetime | None = None) -> list[str]:
    """Every difference of the month holding `period_start`, as a sentence; empty when all agree."""
    return reconciliation_run(period_start=period_start, now=now).differences


def reconciliation_run(*, period_start: date, now: datetime | None = None) -> Reconciliation:
    now = now or timezone.now()
    period_start = month_start(period_start)
    start, end = period_bounds(period_start)
    rows: dict[tuple[int, str], Row] = {}
    tenants = _tenants(start=start, end=end, period_start=period_start)
    differences = [_named(sentence, tenants) for sentence in usage_rollups_check(start=start, end=end)]

    def row(tenant: Tenant, component: str) -> Row:
        return rows.setdefault((tenant.pk, component), Row(tenant=tenant.slug, component=component))

    for tenant in tenants.values():
        for r in (UsageRollup.objects.for_tenant(tenant).filter(hour__gte=start, hour__lt=end)
                  .values("meter", "hardware").annotate(quantity=Sum("quantity"))):
            component = component_of(meter=r["meter"], hardware=r["hardware"])
            row(tenant, component).rollups += component_quantity(meter=r["meter"], quantity=r["quantity"])
        billed = InvoiceLine.objects.filter(invoice__tenant_id=tenant.pk).filter(
            Q(invoice__period_start=period_start, kind__in=[LineKind.USAGE, LineKind.BASE_FEE])
            | Q(kind=LineKind.ADJUSTMENT, service_start__gte=start, service_start__lt=end))
        for line in billed:
            target = row(tenant, line.component or BASE_FEE)
            target.billed += line.quantity
            target.billed_amount += line.amount
        for line in month_rating(tenant=tenant, period_start=period_start, now=now).lines:
            if line.kind in (LineKind.USAGE, LineKind.BASE_FEE):
                target = row(tenant, line.component or BASE_FEE)
                target.rated += line.quantity
                target.rated_amount += line.amount
    if stripe_enabled():
        _stripe(tenants, rows, row, start=start, end=end, now=now)
    ordered = [rows[key] for key in sorted(rows, key=lambda k: (tenants[k[0]].slug, k[1]))]
    for r in ordered:
        differences += _sentences(r)
    return Reconciliation(period_start=period_start, rows=ordered, differences=differences)


def _named(sentence: str, tenants: dict[int, Tenant]) -> str:
    """usage_rollups_check's "tenant <id> <meter>: events X, rollups Y", by the tenant's slug."""
    match = re.fullmatch(r"tenant (\d+) (\w+): (.*)", sentence)
    if match is None or int(match[1]) not in tenants:
        return sentence
    return f"Tenant {tenants[int(match[1])].slug}, {match[2]}: {match[3]}."


def _tenants(*, start: datetime, end: datetime, period_start: date) -> dict[int, Tenant]:
    ids = set(UsageRollup.unscoped.filter(hour__gte=start, hour__lt=end).values_list("tenant_id", flat=True))
    ids |= set(Invoice.unscoped.filter(period_start=period_start).values_list("tenant_id", flat=True))
    ids |= set(InvoiceLine.objects.filter(kind=LineKind.ADJUSTMENT, service_start__gte=start, service_start__lt=end)
               .values_list("invoice__tenant_id", flat=True))
    return Tenant.objects.select_related("plan").in_bulk(ids)


def plain(value: Decimal) -> str:
    """A quantity written plainly, without trailing zeros or exponent: 0.004, 3000000000."""
    return str(int(value)) if value == value.to_integral_value() else format(value.normalize(), "f")


def _unit(component: str) -> str:
    return "(base fee)" if component == BASE_FEE else f"× {UNITS[component]}"


def _sentences(r: Row) -> list[str]:
    found = []
    who = f"Tenant {r.tenant}, {r.component}"
    if r.component != BASE_FEE and r.rollups != r.billed:
        found.append(f"{who}: the rollups hold {plain(r.rollups)} {_unit(r.component)} but the invoice lines bill "
                     f"{plain(r.billed)}.")
    if r.component != BASE_FEE and r.rollups != r.rated:
        found.append(f"{who}: the rollups hold {plain(r.rollups)} {_unit(r.component)} but a fresh rating rates "
                     f"{plain(r.rated)}.")
    if r.billed_amount != r.rated_amount:
        found.append(f"{who}: the invoice lines charge {r.billed_amount} but a fresh rating charges "
                     f"{r.rated_amount}.")
    if r.stripe_want is not None and r.stripe != r.stripe_want:
        pending = f" ({r.stripe_pending} meter events still to send)" if r.stripe_pending else ""
        found.append(f"{who}: the rollups owe Stripe {plain(r.stripe_want)} {METER_UNITS[r.component][1]}s but "
                     f"Stripe's meter summary holds {plain(r.stripe)}{pending}.")
    return found


def _stripe(tenants, rows, row, *, start: datetime, end: datetime, now: datetime) -> None:
    """Rollups of the hours owed to Stripe against Stripe's meter event summaries."""
    mirror_from = mirrored_from()
    owed_before = hour_start(now - timedelta(seconds=settings.STRIPE_METER_SETTLE_S))
    span_start, span_end = max(start, mirror_from or end), min(end, owed_before)
    if span_end <= span_start:
        return
    meters = stripe_meters_ensure()
    client = stripe_client()
    for tenant in tenants.values():
        account = getattr(tenant, "billing_account", None)
        customer = account.stripe_customer_id if account else ""
        if not customer:
            continue
        want: dict[str, Decimal] = defaultdict(Decimal)
        for r in (UsageRollup.objects.for_tenant(tenant).filter(hour__gte=span_start, hour__lt=span_end)
                  .values("meter", "hardware").annotate(quantity=Sum("quantity"))):
            component = component_of(meter=r["meter"], hardware=r["hardware"])
            want[component] += component_quantity(meter=r["meter"], quantity=r["quantity"]) * METER_UNITS[component][0]
        outbox = StripeMeterEvent.objects.for_tenant(tenant).filter(hour__gte=span_start, hour__lt=span_end)
        for o in outbox.filter(state=StripeMeterEventState.INVOICE_ITEM).values("component").annotate(v=Sum("value")):
            want[o["component"]] -= o["v"]
        pending = dict(outbox.filter(state=StripeMeterEventState.PENDING).values("component")
                       .annotate(n=Count("id")).values_list("component", "n"))
        params = {"customer": customer, "start_time": int(span_start.timestamp()),
                  "end_time": int(span_end.timestamp())}
        for component, meter_id in meters.items():
            summaries = stripe_request(lambda options, m=meter_id, p=params: client.v1.billing.meters.event_summaries
                                       .list(m, params=p, options=options))
            have = sum((Decimal(str(s.aggregated_value)) for s in summaries.auto_paging_iter()), ZERO)
            if not have and not want.get(component):
                continue
            target = row(tenant, component)
            target.stripe_want, target.stripe = want.get(component, ZERO), have
            target.stripe_pending = pending.get(component, 0)


def billing_reconcile_recent(*, now: datetime | None = None) -> list[str]:
    """Reconcile the last month and this one (beat, daily); each difference is logged."""
    now = now or timezone.now()
    this_month = month_start(now)
    last_month = month_start(this_month - timedelta(days=1))
    differences = []
    for period_start in (last_month, this_month):
        found = billing_reconcile(period_start=period_start, now=now)
        for sentence in found:
            log.error("Billing reconciliation of %s: %s", f"{period_start:%Y-%m}", sentence)
        differences += found
    return differences

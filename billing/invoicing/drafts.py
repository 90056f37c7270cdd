"""A month's rating with its late adjustments, and the drafts it is stored in: refreshed
by beat, finalized after the grace, re-rated by admins (billing/invoicing/__init__.py)."""
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from billing.invoicing.rating import (
    COMPONENT_ORDER,
    LABELS,
    Rates,
    base_fee_line,
    day_start,
    line_key,
    month_next,
    month_start,
    usage_lines,
    usage_rate,
)
from billing.models import Invoice, InvoiceLine, InvoiceStatus, LineKind, PriceVersion, UsageRollup
from billing.pricing import UNITS, ZERO, money_round
from billing.rollups import usage_rollup_hour
from gateway.contract.errors import Conflict
from tenants.audit import audit_record
from tenants.models import Tenant
from tenants.quotas import plan_default, tenant_plan

log = logging.getLogger(__name__)

# A roll of an hour commits well within this after it read its clock (its rolled_at): a
# roll still in flight when an invoice was finalized is caught by the next draft.
ROLL_MARGIN = timedelta(minutes=10)
# Beat drafts a tenant whose only news is late usage of an earlier month rolled this recently.
LATE_WINDOW = timedelta(days=1)
# Fields a re-rating rewrites on a line it keeps (its id stays, so links to it hold).
LINE_FIELDS = ["position", "kind", "component", "deployment_id", "deployment_name", "hardware", "price_version_id",
               "service_start", "service_end", "description", "quantity", "unit", "unit_price", "tiers", "amount"]


def grace() -> timedelta:
    return timedelta(seconds=settings.BILLING_FINALIZE_GRACE_S)


def period_bounds(period_start: date) -> tuple[datetime, datetime]:
    return day_start(period_start), day_start(month_next(period_start))


@dataclass
class MonthRating:
    """A month rated: unsaved lines (base fee, usage, adjustments for earlier months), their
    total, the list-price total of this month's usage, the currency, the newest rollup read;
    `daily` is this month's usage cost per (day, deployment name), exact."""

    lines: list[InvoiceLine]
    total: Decimal
    list_usage_total: Decimal
    currency: str
    rolled_through: datetime | None
    daily: dict = field(default_factory=dict)
    rates: Rates | None = None


def month_rating(*, tenant: Tenant, period_start: date, now: datetime | None = None) -> MonthRating:
    """Rate the tenant's month from its rollups, by its current plan's price versions."""
    now = now or timezone.now()
    period_start = month_start(period_start)
    start, end = period_bounds(period_start)
    plan = tenant_plan(tenant)
    rates = Rates.of_plan(plan.pk if plan else None)
    rated = usage_rate(tenant_id=tenant.pk, rates=rates, start=start, end=end)
    fee = base_fee_line(rates, start, end)
    adjustments, adjusted_through = _adjustment_lines(tenant=tenant, period_start=period_start, now=now)
    lines = [*([fee] if fee else []), *usage_lines(rated), *adjustments]
    for position, line in enumerate(lines):
        line.position = position
    version = rates.base_fee_version(start, end) or (rates.versions[-1] if rates.versions else None)
    rolled = [moment for moment in (rated.rolled_through, adjusted_through) if moment is not None]
    return MonthRating(lines=lines, total=sum((line.amount for line in lines), ZERO),
                       list_usage_total=rated.list_total, currency=version.currency if version else "usd",
                       rolled_through=max(rolled) if rolled else None, daily=dict(rated.daily), rates=rates)


def _adjustment_lines(*, tenant: Tenant, period_start: date, now: datetime) -> tuple[list[InvoiceLine], datetime]:
    """Late usage of earlier months this draft carries: of each month after the tenant's
    latest earlier draft (that draft carries the months before it) that is finalized, or
    has no invoice and is past its grace, and has rollups rolled since the finalization of
    the tenant's latest finalized month (less ROLL_MARGIN)."""
    invoices = list(Invoice.objects.for_tenant(tenant).filter(period_start__lt=period_start)
                    .values_list("period_start", "status", "finalized_at"))
    drafts = [start for start, status, _ in invoices if status == InvoiceStatus.DRAFT]
    finalized = {start: at for start, status, at in invoices if status == InvoiceStatus.FINALIZED}
    rows = UsageRollup.objects.for_tenant(tenant).filter(hour__lt=day_start(period_start))
    if drafts:
        rows = rows.filter(hour__gte=day_start(month_next(max(drafts))))
    if finalized:
        # The latest month's finalization, not the latest in time: an earlier month finalized
        # after it (a retry) billed none of the later months' late usage rolled meanwhile.
        rows = rows.filter(rolled_at__gt=finalized[max(finalized)] - ROLL_MARGIN)
    months = sorted({month_start(moment) for moment in rows.datetimes("hour", "month", tzinfo=UTC)})
    lines, rolled_through = [], None
    for month in months:
        if month not in finalized and day_start(month_next(month)) + grace() > now:
            continue  # its own draft takes it, during the grace
        month_lines, month_rolled = _month_adjustments(tenant=tenant, month=month)
        lines += month_lines
        if month_rolled is not None and (rolled_through is None or month_rolled > rolled_through):
            rolled_through = month_rolled
    return lines, rolled_through


def _month_adjustments(*, tenant: Tenant, month: date) -> tuple[list[InvoiceLine], datetime | None]:
    """Per line key: the month rated now less what finalized invoices billed for it (its
    own usage lines and earlier adjustments); a key with no difference has no line."""
    start, end = period_bounds(month)
    billed_lines = (InvoiceLine.objects.filter(invoice__tenant_id=tenant.pk, invoice__status=InvoiceStatus.FINALIZED)
                    .filter(Q(invoice__period_start=month, kind__in=[LineKind.USAGE, LineKind.BASE_FEE])
                            | Q(kind=LineKind.ADJUSTMENT, service_start__gte=start, service_start__lt=end))
                    .select_related("price_version"))
    billed: dict[tuple, list] = defaultdict(lambda: [ZERO, ZERO, ""])
    plan_id = None
    for line in billed_lines:
        if line.price_version is not None:
            plan_id = plan_id or line.price_version.plan_id
        if line.kind != LineKind.BASE_FEE:
            entry = billed[line_key(line)]
            entry[0] += line.quantity
            entry[1] += line.amount
            entry[2] = line.deployment_name
    if plan_id is None:  # never billed: the plan it would have been billed by
        plan = tenant_plan(tenant)
        plan_id = plan.pk if plan else None
    rates = Rates.of_plan(plan_id)
    rated = usage_rate(tenant_id=tenant.pk, rates=rates, start=start, end=end)
    versions = {v.pk: v for v in rates.versions}
    lines = []
    def order(key):
        name = rated.lines[key].deployment_name if key in rated.lines else billed[key][2]
        return (name, key[1] or 0, COMPONENT_ORDER[key[0]], key[3] or 0)

    for key in sorted(set(rated.lines) | set(billed), key=order):
        component, deployment_id, hardware, version_id = key
        now_line = rated.lines.get(key)
        quantity = (now_line.quantity if now_line else ZERO) - billed[key][0]
        amount = (money_round(now_line.exact) if now_line else ZERO) - billed[key][1]
        if not quantity and not amount:
            continue
        name = now_line.deployment_name if now_line else billed[key][2]
        service_start, service_end = rates.window(versions.get(version_id), start, end)
        lines.append(InvoiceLine(
            kind=LineKind.ADJUSTMENT, component=component, deployment_id=deployment_id, deployment_name=name,
            hardware=hardware, price_version_id=version_id, service_start=service_start, service_end=service_end,
            description=f"Late usage of {month:%Y-%m}: {LABELS[component]} — {name or 'deleted deployment'}"[:200],
            quantity=quantity, unit=UNITS[component], unit_price=None, tiers=[], amount=amount))
    return lines, rated.rolled_through


def invoice_for(*, tenant: Tenant, period_start: date) -> Invoice:
    """The tenant's invoice of the month holding `period_start`, created as a draft if missing."""
    period_start = month_start(period_start)
    invoice, _ = Invoice.objects.for_tenant(tenant).get_or_create(
        period_start=period_start, defaults={"tenant": tenant, "period_end": month_next(period_start)})
    return invoice


def _lines_store(invoice: Invoice, rating: MonthRating) -> None:
    """Make the invoice's lines the rating's: a line of the same kind, key and service
    start keeps its row (and id), the others are replaced."""
    def identity(line):
        return (line.kind, *line_key(line), line.service_start)

    existing = {identity(line): line for line in InvoiceLine.objects.filter(invoice=invoice)}
    previous = {line.pk: line for line in existing.values()}
    kept, new = [], []
    for line in rating.lines:
        line.invoice = invoice
        old = existing.pop(identity(line), None)
        if old is None:
            new.append(line)
        else:
            line.pk = old.pk
            kept.append(line)
    if existing:
        InvoiceLine.objects.filter(pk__in=[line.pk for line in existing.values()]).delete()
    for line in kept:
        values = {name: getattr(line, name) for name in LINE_FIELDS}
        if values != {name: getattr(previous[line.pk], name) for name in LINE_FIELDS}:
            InvoiceLine.objects.filter(pk=line.pk).update(**values)
    if new:
        InvoiceLine.objects.bulk_create(new)
    invoice.total, invoice.currency = rating.total, rating.currency
    invoice.rated_at, invoice.rolled_through = timezone.now(), rating.rolled_through
    invoice.save(update_fields=["total", "currency", "rated_at", "rolled_through"])


def draft_refresh_rated(*, tenant: Tenant, period_start: date,
                        now: datetime | None = None) -> tuple[Invoice, MonthRating]:
    """invoice_draft_refresh, also returning the rating it stored."""
    now = now or timezone.now()
    with transaction.atomic():
        invoice = invoice_for(tenant=tenant, period_start=period_start)
        invoice = Invoice.unscoped.select_for_update().get(pk=invoice.pk)
        if invoice.status != InvoiceStatus.DRAFT:
            raise Conflict(f"Invoice {invoice.number} is finalized and cannot change; correct it with a credit note.")
        rating = month_rating(tenant=tenant, period_start=invoice.period_start, now=now)
        _lines_store(invoice, rating)
    return invoice, rating


def invoice_draft_refresh(*, tenant: Tenant, period_start: date, now: datetime | None = None) -> Invoice:
    """Create or re-rate the tenant's draft of a month, in one transaction (409 when finalized)."""
    return draft_refresh_rated(tenant=tenant, period_start=period_start, now=now)[0]


def _tenants_to_draft(*, period_start: date, now: datetime, late: bool) -> set[int]:
    """Tenants owed a draft of the month: usage in it, a plan with a price by then, a draft
    already, or (the current month) late usage of an earlier month rolled lately; less
    those whose invoice of it is finalized."""
    start, end = period_bounds(period_start)
    used = UsageRollup.unscoped.filter(tenant_id=OuterRef("pk"), hour__gte=start, hour__lt=end)
    ids = set(Tenant.objects.filter(Exists(used)).values_list("pk", flat=True))
    priced = set(PriceVersion.objects.filter(effective_from__lt=end).values_list("plan_id", flat=True))
    if priced:
        default = plan_default()
        condition = Q(plan_id__in=priced)
        if default is not None and default.pk in priced:
            condition |= Q(plan__isnull=True)
        ids |= set(Tenant.objects.filter(condition).values_list("pk", flat=True))
    invoices = dict(Invoice.unscoped.filter(period_start=period_start).values_list("tenant_id", "status"))
    ids |= {tenant_id for tenant_id, status in invoices.items() if status == InvoiceStatus.DRAFT}
    if late:
        # One probe of the (tenant, rolled_at, hour) index per tenant.
        rolled_late = UsageRollup.unscoped.filter(tenant_id=OuterRef("pk"), hour__lt=start,
                                                  rolled_at__gt=timezone.now() - LATE_WINDOW)
        ids |= set(Tenant.objects.filter(Exists(rolled_late)).values_list("pk", flat=True))
    return {tenant_id for tenant_id in ids if invoices.get(tenant_id) != InvoiceStatus.FINALIZED}


def invoices_refresh(*, now: datetime | None = None) -> int:
    """Beat: refresh the drafts of this month (and of the previous one during its grace);
    the drafts refreshed. Each tenant's in its own transaction."""
    now = now or timezone.now()
    current = month_start(now)
    previous = month_start(day_start(current) - timedelta(days=1))
    periods = ([previous] if now < day_start(current) + grace() else []) + [current]
    refreshed = 0
    for period in periods:
        ids = _tenants_to_draft(period_start=period, now=now, late=period == current)
        for tenant in Tenant.objects.filter(pk__in=ids).select_related("plan").order_by("pk"):
            try:
                invoice_draft_refresh(tenant=tenant, period_start=period, now=now)
            except Conflict:
                continue  # finalized meanwhile
            except Exception:
                # One tenant's failure (a price an admin broke) must not hold up the others' drafts.
                log.exception("rating tenant %s for %s failed", tenant.pk, period)
                continue
            refreshed += 1
    return refreshed


_UNROLLED_HOURS = """
SELECT e.hour FROM (
    SELECT date_trunc('hour', occurred_at) AS hour, max(ingested_at) AS ingested
    FROM billing_usageevent WHERE occurred_at >= %(start)s AND occurred_at < %(end)s GROUP BY 1
) e
LEFT JOIN (
    SELECT hour, min(rolled_at) AS rolled FROM billing_usagerollup
    WHERE hour >= %(start)s AND hour < %(end)s GROUP BY hour
) r ON r.hour = e.hour
WHERE r.rolled IS NULL OR e.ingested > r.rolled - interval '60 seconds'
UNION
SELECT hour FROM billing_usagerollup
WHERE hour >= %(start)s AND hour < %(end)s GROUP BY hour HAVING min(rolled_at) < hour + interval '1 hour'
"""


def period_reroll(*, period_start: date) -> list[datetime]:
    """Roll again every hour of the month with events newer than its rollups (or rolled
    before the hour was over); the hours rolled."""
    start, end = period_bounds(period_start)
    with connection.cursor() as cursor:
        cursor.execute(_UNROLLED_HOURS, {"start": start, "end": end})
        hours = sorted(row[0] for row in cursor.fetchall())
    for hour in hours:
        usage_rollup_hour(hour=hour)
    return hours


def invoice_finalize(*, invoice_id: int, now: datetime | None = None) -> Invoice | None:
    """Rate a draft a last time, number it and finalize it, in one transaction."""
    now = now or timezone.now()
    with transaction.atomic():
        invoice = (Invoice.unscoped.select_for_update(of=("self",)).select_related("tenant__plan")
                   .filter(pk=invoice_id).first())
        if invoice is None or invoice.status != InvoiceStatus.DRAFT:
            return None
        _lines_store(invoice, month_rating(tenant=invoice.tenant, period_start=invoice.period_start, now=now))
        with connection.cursor() as cursor:
            cursor.execute("SELECT nextval('billing_invoice_number')")
            number = cursor.fetchone()[0]
        invoice.number = f"INV-{invoice.period_start:%Y%m}-{number:06d}"
        invoice.status, invoice.finalized_at = InvoiceStatus.FINALIZED, timezone.now()
        invoice.save(update_fields=["number", "status", "finalized_at"])
    return invoice


def invoices_finalize_due(*, now: datetime | None = None) -> list[Invoice]:
    """Beat: finalize every draft whose month ended more than the grace ago, oldest month
    first, after rolling again the hours of those months that have unrolled events."""
    now = now or timezone.now()
    cutoff = now - grace()
    due = list(Invoice.unscoped.filter(status=InvoiceStatus.DRAFT, period_end__lte=cutoff.date())
               .order_by("period_start", "tenant_id").values_list("pk", "period_start"))
    for period in sorted({period for _, period in due}):
        period_reroll(period_start=period)
    finalized = []
    for invoice_id, _ in due:
        try:
            invoice = invoice_finalize(invoice_id=invoice_id, now=now)
        except Exception:
            log.exception("finalizing invoice %s failed; it stays a draft and is tried again", invoice_id)
            continue
        if invoice is not None:
            finalized.append(invoice)
    return finalized


def invoice_rerate(*, invoice: Invoice, actor=None) -> Invoice:
    """Re-rate a draft now (admins); a finalized invoice is corrected by credit notes (409)."""
    if invoice.status != InvoiceStatus.DRAFT:
        raise Conflict(f"Invoice {invoice.number} is finalized; only drafts can be re-rated. Issue a credit note.")
    with transaction.atomic():
        refreshed = invoice_draft_refresh(tenant=invoice.tenant, period_start=invoice.period_start)
        audit_record(event_type="invoice.rerated", target=refreshed,
                     new={"total": str(refreshed.total), "rolled_through": str(refreshed.rolled_through)})
    return refreshed

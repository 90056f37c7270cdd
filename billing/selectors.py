from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db.models import Avg, Count, Q, Sum
from django.db.models.functions import TruncMinute
from django.utils import timezone

from billing.invoicing import draft_refresh_rated, month_next, month_rating, month_start
from billing.invoicing.rating import day_start
from billing.models import Component, Invoice, InvoiceLine, InvoiceStatus, LineKind, UsageEvent
from billing.pricing import UNITS, ZERO, money_round
from gateway.contract.errors import Conflict
from tenants.models import Tenant
from tenants.quotas import tenant_plan

COMPONENT_ORDER = {c.value: i for i, c in enumerate(Component)}


def usage_recent(*, tenant: Tenant, limit: int | None = 50, deployment_name: str | None = None):
    events = UsageEvent.objects.for_tenant(tenant).select_related("api_key").order_by("-occurred_at", "-pk")
    if deployment_name:
        events = events.filter(deployment_name=deployment_name)
    return events[:limit] if limit else events


def usage_summary(*, tenant: Tenant) -> dict:
    totals = UsageEvent.objects.for_tenant(tenant).aggregate(
        requests=Count("pk"),
        errors=Count("pk", filter=Q(status__gte=400)),
        bytes_in=Sum("bytes_in"),
        bytes_out=Sum("bytes_out"),
        avg_latency_ms=Avg("latency_ms"),
    )
    per_deployment = list(
        UsageEvent.objects.for_tenant(tenant).values("deployment_name")
        .annotate(requests=Count("pk"), errors=Count("pk", filter=Q(status__gte=400)), avg_latency_ms=Avg("latency_ms"))
        .order_by("-requests")
    )
    return {
        "total_requests": totals["requests"],
        "errors": totals["errors"],
        "bytes_in": totals["bytes_in"] or 0,
        "bytes_out": totals["bytes_out"] or 0,
        "avg_latency_ms": round(totals["avg_latency_ms"], 3) if totals["avg_latency_ms"] is not None else None,
        "by_deployment": per_deployment,
    }


def usage_timeseries(*, tenant: Tenant, minutes: int = 60) -> list[dict]:
    """Requests and errors per minute over the last `minutes` minutes (the current one
    included), oldest first. Minutes without requests are zeros, so a chart's x axis is time."""
    end = timezone.now().replace(second=0, microsecond=0)
    start = end - timedelta(minutes=minutes - 1)
    rows = (
        UsageEvent.objects.for_tenant(tenant)
        .filter(occurred_at__gte=start, occurred_at__lt=end + timedelta(minutes=1))
        .annotate(minute=TruncMinute("occurred_at", tzinfo=UTC)).values("minute")
        .annotate(requests=Count("pk"), errors=Count("pk", filter=Q(status__gte=400)))
    )
    counts = {row["minute"]: row for row in rows}
    points = []
    for offset in range(minutes):
        minute = start + timedelta(minutes=offset)
        row = counts.get(minute, {"requests": 0, "errors": 0})
        points.append({"minute": minute, "requests": row["requests"], "errors": row["errors"]})
    return points


# --- The Billing page (billing/invoicing.py rates; this reads) ---

DRAFT_MAX_AGE = timedelta(minutes=1)


def _version_dict(version, rates) -> dict:
    return {
        "id": version.pk, "effective_from": version.effective_from, "currency": version.currency,
        "base_fee": version.base_fee, "note": version.note,
        "prices": [{"component": component, "label": Component(component).label, "unit": UNITS[component],
                    "free_allowance": allowance,
                    "tiers": [{"up_to": tier.up_to, "unit_price": tier.unit_price} for tier in tiers]}
                   for component, (allowance, tiers) in sorted(rates.prices.get(version.pk, {}).items(),
                                                               key=lambda item: COMPONENT_ORDER[item[0]])],
    }


def billing_overview(*, tenant: Tenant, now: datetime | None = None) -> dict:
    """What the Billing page shows for the current month (UTC), in a handful of queries:

    - `draft`, `lines`, `cost_so_far`: the month's draft invoice, re-rated first when it
      is older than a minute, created when missing and the month has something to charge
      (else `draft` is None);
    - `forecast`: the month's usage cost so far per elapsed hour × the month's hours, plus
      the base fee and any adjustments for earlier months (linear: it ignores the tiers
      still ahead, so with graduated prices it errs high); `forecast_note` says so;
    - `daily`: [{day, deployment_name, amount}], each day's usage cost per deployment,
      exact from the rating's pieces and rounded to the cent for display only (the base
      fee and adjustments are not daily usage, so the days add up to the usage lines);
    - `table`: the draft's lines by deployment × component;
    - `plan`: the price version in force now (prices, tiers, allowances, currency) and
      `upcoming`: the next one, if scheduled; `invoices`: the tenant's invoices, newest first."""
    now = now or timezone.now()
    period_start = month_start(now)
    period_end = month_next(period_start)
    draft = Invoice.objects.for_tenant(tenant).filter(period_start=period_start).first()
    if draft is not None and draft.status != InvoiceStatus.DRAFT:
        draft = None  # the month is closed early only by an admin's hand; show the rating alone
    stale = draft is None or draft.rated_at is None or timezone.now() - draft.rated_at > DRAFT_MAX_AGE
    rating = None
    if draft is None:
        # A tenant with nothing to charge (no usage, no price) gets no invoice from a page view.
        rating = month_rating(tenant=tenant, period_start=period_start, now=now)
        stale = bool(rating.lines)
    if stale:
        try:
            draft, rating = draft_refresh_rated(tenant=tenant, period_start=period_start, now=now)
        except Conflict:
            draft, rating = None, month_rating(tenant=tenant, period_start=period_start, now=now)
        lines = list(rating.lines)
    elif draft is None:
        lines = []
    else:
        rating = month_rating(tenant=tenant, period_start=period_start, now=now)
        lines = list(InvoiceLine.objects.filter(invoice=draft).order_by("position", "pk"))
    cost = sum((line.amount for line in lines), ZERO)
    usage_exact = sum(rating.daily.values(), ZERO)
    fixed = sum((line.amount for line in lines if line.kind != LineKind.USAGE), ZERO)
    start = day_start(period_start)
    month_hours = Decimal((day_start(period_end) - start).total_seconds()) / 3600
    elapsed = min(max(Decimal((now - start).total_seconds()) / 3600, Decimal(1)), month_hours)
    forecast = money_round(fixed + usage_exact / elapsed * month_hours)

    table: dict[str, dict] = {}
    for line in lines:
        if line.kind == LineKind.BASE_FEE:
            group = table.setdefault("", {"deployment": "", "label": "Plan", "rows": {}})
        else:
            group = table.setdefault(line.deployment_name, {"deployment": line.deployment_name,
                                                            "label": line.deployment_name or "deleted", "rows": {}})
        row_key = (line.kind == LineKind.ADJUSTMENT, line.component or "base_fee")
        row = group["rows"].setdefault(row_key, {
            "component": line.component or "base_fee", "kind": line.kind,
            "label": ("Late usage: " if line.kind == LineKind.ADJUSTMENT else "")
            + (Component(line.component).label if line.component else "Monthly base fee"),
            "quantity": ZERO, "unit": line.unit, "amount": ZERO})
        row["quantity"] += line.quantity
        row["amount"] += line.amount
    by_deployment = [{**group, "rows": list(group["rows"].values())}
                     for _, group in sorted(table.items(), key=lambda item: (item[0] != "", item[0]))]

    rates = rating.rates
    in_force = rates.in_force(now) if rates else None
    upcoming = next((v for v in rates.versions if v.effective_from > now), None) if rates else None
    plan = tenant_plan(tenant)
    invoices = list(Invoice.objects.for_tenant(tenant).order_by("-period_start")
                    .values("id", "number", "period_start", "period_end", "status", "total", "currency",
                            "finalized_at"))
    daily = [{"day": day, "deployment_name": name, "amount": money_round(amount)}
             for (day, name), amount in sorted(rating.daily.items())]
    return {
        "period_start": period_start, "period_end": period_end,
        "period": {"start": period_start, "end": period_end, "label": f"{period_start:%B %Y}"},
        "currency": rating.currency,
        "draft": draft, "lines": lines, "cost_so_far": cost, "list_usage_total": rating.list_usage_total,
        "forecast": forecast,
        "forecast_note": "usage so far per hour × the month's hours, plus fixed charges",
        "daily": daily, "table": by_deployment,
        "plan": {"name": plan.name, "slug": plan.slug, **_version_dict(in_force, rates)} if plan and in_force else None,
        "upcoming": _version_dict(upcoming, rates) if upcoming else None,
        "invoices": invoices,
    }

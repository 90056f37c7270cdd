"""Meter events from the hourly rollups, through the StripeMeterEvent outbox.

Fill. An hour is owed to Stripe once it is over plus STRIPE_METER_SETTLE_S. For each
tenant × component × owed hour, the outbox must sum to the rollups (in meter units,
catalog.METER_UNITS: whole requests, nanoseconds, micro-GB-hours, so values are integers
and exact). The first row of an hour has identifier `<tenant slug>-<component>-<yyyymmddhh>`;
a later change to the hour (a late event re-rolled it) is a further row for the
difference, suffixed `-a1`, `-a2`, ... A fill looks at the hours newly owed since the last
one and at the owed hours rolled again since (with an overlap for rolls that committed
late); usage before STRIPE_MIRROR_FROM (empty: the month of the first fill) is not mirrored.

Send. One call at a time (all sending holds one PostgreSQL advisory lock, so never two
calls for one customer and meter at once), each with the row's identifier and an
idempotency key of its own. A row is marked tried and committed before its call, and its
outcome committed right after, so a crash leaves at most the one in flight, which the next
run sends again: the same identifier and body, answered by Stripe's idempotency replay or
its "already exists" 400, both counted as sent. A 429 backs off (client.stripe_request).
A row is never sent as a meter event, but as an invoice item priced by our tiers where
the hour stands in its month, when its value is negative (a meter sums), when its hour
was more than 24 h old before its first try (Stripe dedupes identifiers for 24 h, so an
older resend could count twice) or more than 35 days old (Stripe refuses such timestamps)."""
import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import stripe
from django.conf import settings
from django.db.models import Count, F, Q, Sum
from django.utils import timezone

from billing.models import (
    Component,
    StripeMeterEvent,
    StripeMeterEventState,
    StripeObject,
    StripeObjectKind,
    UsageRollup,
)
from billing.pricing import component_of, component_quantity, graduated, money_round, tiers_parse
from billing.rollups import hour_start
from billing.stripe_sync.catalog import (
    METER_UNITS,
    event_name,
    stripe_customer_ensure,
    stripe_meters_ensure,
    version_for,
)
from billing.stripe_sync.client import minor_units, stripe_client, stripe_request
from tenants.models import Tenant

log = logging.getLogger(__name__)

DEDUP_WINDOW = timedelta(hours=24)
# Stripe takes timestamps up to 35 days back; an hour of margin for a send that waits.
TIMESTAMP_WINDOW = timedelta(days=35) - timedelta(hours=1)
ROLL_OVERLAP = timedelta(minutes=5)
ALREADY_SENT = "already exists with identifier"

# The rollups behind each component (billing.pricing.component_of, as a filter).
COMPONENT_ROLLUPS = {
    Component.REQUESTS: Q(meter="requests"),
    Component.COMPUTE_CPU: Q(meter="compute_ms") & ~Q(hardware="gpu"),
    Component.COMPUTE_GPU: Q(meter="compute_ms", hardware="gpu"),
    Component.RESERVED_MEMORY: Q(meter="reserved_gb_h"),
}


def meter_value(*, meter: str, hardware: str, quantity: Decimal) -> tuple[str, Decimal]:
    """A rollup quantity as (component, value in that component's meter unit)."""
    component = component_of(meter=meter, hardware=hardware)
    return component, component_quantity(meter=meter, quantity=quantity) * METER_UNITS[component][0]


def _month_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def mirrored_from() -> datetime | None:
    """Where mirroring to Stripe began (None before the first fill)."""
    cursor = StripeObject.objects.filter(kind=StripeObjectKind.CURSOR, key="meter_events").first()
    return _parse(cursor.data.get("from")) if cursor else None


def identifier_for(*, tenant: Tenant, component: str, hour: datetime, earlier_rows: int) -> str:
    base = f"{tenant.slug}-{component}-{hour.astimezone(UTC):%Y%m%d%H}"
    return base if earlier_rows == 0 else f"{base}-a{earlier_rows}"


def meter_events_fill(*, now: datetime | None = None) -> int:
    """Add outbox rows for what the owed hours' rollups hold beyond what the outbox holds
    already; the rows added. Runs under the sync's lock (billing.stripe_sync.sync)."""
    now = now or timezone.now()
    owed_before = hour_start(now - timedelta(seconds=settings.STRIPE_METER_SETTLE_S))
    cursor, _ = StripeObject.objects.get_or_create(kind=StripeObjectKind.CURSOR, key="meter_events")
    mirror_from = _parse(cursor.data.get("from")) or (
        datetime.fromisoformat(settings.STRIPE_MIRROR_FROM).replace(tzinfo=UTC) if settings.STRIPE_MIRROR_FROM
        else _month_start(now))
    previous_owed = _parse(cursor.data.get("owed_before")) or mirror_from
    previous_run = _parse(cursor.data.get("run_at"))
    hours = set(UsageRollup.unscoped.filter(hour__gte=previous_owed, hour__lt=owed_before)
                .values_list("hour", flat=True).distinct())
    hours |= set(StripeMeterEvent.unscoped.filter(hour__gte=previous_owed, hour__lt=owed_before)
                 .values_list("hour", flat=True).distinct())
    if previous_run is not None:
        hours |= set(UsageRollup.unscoped.filter(hour__gte=mirror_from, hour__lt=min(previous_owed, owed_before),
                                                 rolled_at__gte=previous_run - ROLL_OVERLAP)
                     .values_list("hour", flat=True).distinct())
    added = _fill_hours(sorted(hours)) if hours else 0
    cursor.data = {"from": mirror_from.isoformat(), "owed_before": max(owed_before, previous_owed).isoformat(),
                   "run_at": now.isoformat()}
    cursor.save(update_fields=["data", "updated_at"])
    return added


def _fill_hours(hours: list[datetime]) -> int:
    want: dict[tuple[int, str, datetime], Decimal] = {}
    for row in (UsageRollup.unscoped.filter(hour__in=hours).values("tenant_id", "hour", "meter", "hardware")
                .annotate(quantity=Sum("quantity"))):
        component, value = meter_value(meter=row["meter"], hardware=row["hardware"], quantity=row["quantity"])
        key = (row["tenant_id"], component, row["hour"])
        want[key] = want.get(key, Decimal(0)) + value
    have = {(r["tenant_id"], r["component"], r["hour"]): (r["value"], r["rows"])
            for r in (StripeMeterEvent.unscoped.filter(hour__in=hours).values("tenant_id", "component", "hour")
                      .annotate(value=Sum("value"), rows=Count("id")))}
    tenants = Tenant.objects.in_bulk({key[0] for key in want} | {key[0] for key in have})
    rows = []
    for key in sorted(set(want) | set(have), key=lambda k: (k[2], k[0], k[1])):
        tenant_id, component, hour = key
        sent, earlier = have.get(key, (Decimal(0), 0))
        difference = want.get(key, Decimal(0)) - sent
        if difference != 0:
            rows.append(StripeMeterEvent(
                tenant_id=tenant_id, component=component, hour=hour, value=difference,
                identifier=identifier_for(tenant=tenants[tenant_id], component=component, hour=hour,
                                          earlier_rows=earlier)))
    StripeMeterEvent.unscoped.bulk_create(rows)
    return len(rows)


class _StopSending(Exception):
    """Stripe is unreachable or keeps refusing: the rest waits for the next run."""


def meter_events_send(*, now: datetime | None = None) -> dict[str, int]:
    """Send the pending outbox rows, oldest hour first; counts by outcome. Runs under the
    sync's lock (billing.stripe_sync.sync)."""
    now = now or timezone.now()
    counts = {"sent": 0, "already_sent": 0, "invoice_item": 0, "failed": 0}
    pending = list(StripeMeterEvent.unscoped.filter(state=StripeMeterEventState.PENDING)
                   .select_related("tenant").order_by("hour", "id"))
    if not pending:
        return counts
    stripe_meters_ensure()
    customers: dict[int, str] = {}
    for row in pending:
        if row.tenant_id not in customers:
            customers[row.tenant_id] = stripe_customer_ensure(tenant=row.tenant)
        age = now - row.hour
        try:
            if row.value < 0 or age > TIMESTAMP_WINDOW or (row.attempts == 0 and age > DEDUP_WINDOW):
                outcome = _send_invoice_item(row, customer=customers[row.tenant_id])
            else:
                outcome = _send_meter_event(row, customer=customers[row.tenant_id])
        except _StopSending:
            counts["failed"] += 1
            break
        counts[outcome] += 1
    return counts


def _tried(row: StripeMeterEvent) -> None:
    """Committed before the call: a crash during it leaves the row known as maybe sent."""
    StripeMeterEvent.unscoped.filter(pk=row.pk).update(attempts=F("attempts") + 1)
    row.attempts += 1


def _failed(row: StripeMeterEvent, exc: Exception) -> None:
    StripeMeterEvent.unscoped.filter(pk=row.pk).update(error=f"{type(exc).__name__}: {exc}"[:2000])
    log.warning("Stripe refused %s: %s", row.identifier, exc)


def _send_meter_event(row: StripeMeterEvent, *, customer: str) -> str:
    params = {"event_name": event_name(row.component), "identifier": row.identifier,
              "timestamp": int(row.hour.timestamp()),
              "payload": {"stripe_customer_id": customer, "value": str(int(row.value))}}
    client = stripe_client()
    _tried(row)
    try:
        stripe_request(lambda options: client.v1.billing.meter_events.create(params=params, options=options),
                       idempotency_key=f"meter-event-{row.identifier}")
        outcome = "sent"
    except stripe.InvalidRequestError as exc:
        if ALREADY_SENT not in str(exc.user_message or exc).lower():
            _failed(row, exc)
            return "failed"
        outcome = "already_sent"
    except (stripe.RateLimitError, stripe.APIConnectionError, stripe.APIError) as exc:
        _failed(row, exc)
        raise _StopSending from exc
    StripeMeterEvent.unscoped.filter(pk=row.pk).update(state=StripeMeterEventState.SENT, sent_at=timezone.now(),
                                                       error="")
    return outcome


def _component_units(tenant_id: int, component: str, hours: Q) -> Decimal:
    total = Decimal(0)
    for row in (UsageRollup.unscoped.filter(COMPONENT_ROLLUPS[component], hours, tenant_id=tenant_id)
                .values("meter").annotate(quantity=Sum("quantity"))):
        total += component_quantity(meter=row["meter"], quantity=row["quantity"])
    return total


def invoice_item_amount(row: StripeMeterEvent) -> tuple[Decimal, str] | None:
    """What a row's units cost by our prices (the version in force at its hour, tiers
    counted where the hour stands in its month), rounded once, to the cent, half-up; None
    when no price applies. A negative row is a credit for the units it takes back."""
    version = version_for(tenant=row.tenant, moment=row.hour)
    price = version.prices.filter(component=row.component).first() if version else None
    if price is None:
        return None
    quantity = abs(row.value) / METER_UNITS[row.component][0]
    before = _component_units(row.tenant_id, row.component, Q(hour__gte=_month_start(row.hour), hour__lt=row.hour))
    through = before + _component_units(row.tenant_id, row.component, Q(hour=row.hour))
    start = through - quantity if row.value > 0 else through
    pieces = graduated(allowance=price.free_allowance, tiers=tiers_parse(price.tiers), start=start, quantity=quantity)
    amount = money_round(sum((piece.amount for piece in pieces), Decimal(0)))
    return (amount if row.value > 0 else -amount), version.currency


def _send_invoice_item(row: StripeMeterEvent, *, customer: str) -> str:
    priced = invoice_item_amount(row)
    if priced is None:
        StripeMeterEvent.unscoped.filter(pk=row.pk).update(
            state=StripeMeterEventState.INVOICE_ITEM, sent_at=timezone.now(), error="No price applies: nothing owed.")
        return "invoice_item"
    amount, currency = priced
    per_unit, unit_name = METER_UNITS[row.component]
    start = int(row.hour.timestamp())
    params = {
        "customer": customer, "currency": currency, "amount": int(amount * minor_units(currency)),
        "description": f"{Component(row.component).label}, {row.hour.astimezone(UTC):%Y-%m-%d %H}:00 UTC: "
                       f"{row.value} {unit_name}s reported late",
        "period": {"start": start, "end": start + 3600},
        "metadata": {"identifier": row.identifier, "tenant_id": str(row.tenant_id), "component": row.component,
                     "value": str(row.value)},
    }
    client = stripe_client()
    _tried(row)
    try:
        item = stripe_request(lambda options: client.v1.invoice_items.create(params=params, options=options),
                              idempotency_key=f"invoice-item-{row.identifier}")
    except stripe.InvalidRequestError as exc:
        _failed(row, exc)
        return "failed"
    except (stripe.RateLimitError, stripe.APIConnectionError, stripe.APIError) as exc:
        _failed(row, exc)
        raise _StopSending from exc
    StripeMeterEvent.unscoped.filter(pk=row.pk).update(
        state=StripeMeterEventState.INVOICE_ITEM, stripe_invoice_item_id=item.id, sent_at=timezone.now(), error="")
    return "invoice_item"

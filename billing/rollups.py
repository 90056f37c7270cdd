"""Hourly usage rollups: what rating reads, never the gateway.

An hour (UTC) is rolled by one statement pair in one transaction: its rows are deleted,
then rebuilt from the usage events by one GROUP BY over tenant × deployment × hardware ×
meter. Rolling an hour again gives the same rows, so a late event only needs its hour
rolled again. Billable events are those the gateway bills (status 200, endpoint infer);
meters: `requests` (their count) and `compute_ms` (their compute time). The hardware is
the deployment's; an event whose deployment row is gone counts as cpu.

`usage_rollups_refresh`, every minute from beat, rolls the current hour and every hour
that received events since the last roll (by ingestion time, with a minute of overlap
for transactions that committed late), so the rollups are at most a minute behind the
events. `usage_rollups_check` proves that they add up to the events exactly."""
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Max, Sum
from django.utils import timezone

from billing.models import Meter, UsageEvent, UsageRollup

OVERLAP = timedelta(seconds=60)

_ROLL = """
INSERT INTO billing_usagerollup (tenant_id, hour, deployment_id, deployment_name, hardware, meter, quantity, events,
                                 rolled_at)
SELECT e.tenant_id, %(hour)s, e.deployment_id, max(e.deployment_name), coalesce(d.hardware, 'cpu'), m.meter,
       sum(CASE WHEN m.meter = 'requests' THEN 1 ELSE round(e.compute_ms::numeric, 6) END), count(*), %(now)s
FROM billing_usageevent e
LEFT JOIN workers_deployment d ON d.id = e.deployment_id
CROSS JOIN (VALUES ('requests'), ('compute_ms')) AS m(meter)
WHERE e.occurred_at >= %(hour)s AND e.occurred_at < %(end)s AND e.status = 200 AND e.endpoint = 'infer'
GROUP BY e.tenant_id, e.deployment_id, coalesce(d.hardware, 'cpu'), m.meter
"""


def hour_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def usage_rollup_hour(*, hour: datetime) -> int:
    """Rebuild the rollups of the UTC hour holding `hour`; the rows written."""
    start = hour_start(hour)
    with transaction.atomic(), connection.cursor() as cursor:
        # One roll of an hour at a time: two would delete each other's rows half-way.
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [0x524F4C4C, int(start.timestamp()) // 3600])
        UsageRollup.unscoped.filter(hour=start).delete()
        cursor.execute(_ROLL, {"hour": start, "end": start + timedelta(hours=1), "now": timezone.now()})
        return cursor.rowcount


def usage_rollups_refresh(*, now: datetime | None = None) -> list[datetime]:
    """Roll the current hour and every hour with events ingested since the last roll;
    the hours rolled, oldest first."""
    now = now or timezone.now()
    last = UsageRollup.unscoped.aggregate(last=Max("rolled_at"))["last"]
    events = UsageEvent.unscoped.all()
    if last is not None:
        events = events.filter(ingested_at__gte=last - OVERLAP)
    hours = {hour_start(moment) for moment in events.datetimes("occurred_at", "hour", tzinfo=UTC)}
    hours.add(hour_start(now))
    for hour in sorted(hours):
        usage_rollup_hour(hour=hour)
    return sorted(hours)


_EVENT_TOTALS = """
SELECT tenant_id, count(*), coalesce(sum(round(compute_ms::numeric, 6)), 0)
FROM billing_usageevent
WHERE occurred_at >= %(start)s AND occurred_at < %(end)s AND status = 200 AND endpoint = 'infer'
GROUP BY tenant_id
"""


def usage_rollups_check(*, start: datetime, end: datetime) -> list[str]:
    """Every (tenant, meter) whose rollups over the hours [start, end) differ from its
    billable events, as a sentence; empty when they agree exactly (compute time as the
    rollups count it: each event's to the nanosecond, 6 decimals of a millisecond)."""
    with connection.cursor() as cursor:
        cursor.execute(_EVENT_TOTALS, {"start": start, "end": end})
        want = {}
        for tenant_id, requests, compute_ms in cursor.fetchall():
            want[(tenant_id, Meter.REQUESTS.value)] = Decimal(requests)
            want[(tenant_id, Meter.COMPUTE_MS.value)] = Decimal(compute_ms)
    rolled = (UsageRollup.unscoped.filter(hour__gte=start, hour__lt=end).values("tenant_id", "meter")
              .annotate(quantity=Sum("quantity")))
    have = {(r["tenant_id"], r["meter"]): r["quantity"] for r in rolled}
    differences = []
    for key in sorted(set(want) | set(have)):
        events, rollups = want.get(key, Decimal(0)), have.get(key, Decimal(0))
        if events != rollups:
            differences.append(f"tenant {key[0]} {key[1]}: events {events}, rollups {rollups}")
    return differences

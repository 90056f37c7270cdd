"""Hourly usage rollups: what rating reads, never the gateway.

An hour (UTC) is rolled by one statement pair in one transaction: its rows are deleted,
then rebuilt from the usage events by one GROUP BY over tenant × deployment × hardware ×
meter. Rolling an hour again gives the same rows, so a late event only needs its hour
rolled again. Billable events are those the gateway bills (status 200, endpoint infer);
meters: `requests` (their count) and `compute_ms` (their compute time). The hardware is
the deployment's; an event whose deployment row is gone counts as cpu.

The same roll writes the hour's `reserved_gb_h` rows from the warm reservations
(workers.models.WarmReservation, memory kept loaded by `min_instances`): per deployment,
the seconds of the hour its reservations overlap (an open one until the roll's time, so
the current hour grows minute by minute) / 3600 × memory_mb / 1024 (a GB is 1024 MB),
summed exactly, then rounded to 6 decimals. These rows count no events (events = 0).

`usage_rollups_refresh`, every minute from beat, rolls every hour from the last roll's to
the current one (so an hour's last minute of reserved memory is rolled once it is over,
even without events) and every hour that received events since the last roll (by
ingestion time, with a minute of overlap for transactions that committed late), so the
rollups are at most a minute behind the events. `usage_rollups_check` proves that they
add up to the events exactly; reserved memory is not made of events, so it is outside
the check (its rows are a pure function of the reservation history)."""
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

# Overlap of each reservation with [hour, end), an open one counted until the roll's time.
_ROLL_RESERVED = """
INSERT INTO billing_usagerollup (tenant_id, hour, deployment_id, deployment_name, hardware, meter, quantity, events,
                                 rolled_at)
SELECT r.tenant_id, %(hour)s, r.deployment_id, d.name, d.hardware, 'reserved_gb_h',
       round(sum(extract(epoch FROM least(coalesce(r.ended_at, %(now)s), %(end)s) - greatest(r.started_at, %(hour)s))
                 * r.memory_mb) / 3686400, 6), 0, %(now)s
FROM workers_warmreservation r
JOIN workers_deployment d ON d.id = r.deployment_id
WHERE r.started_at < least(%(end)s, %(now)s) AND (r.ended_at IS NULL OR r.ended_at > %(hour)s)
GROUP BY r.tenant_id, r.deployment_id, d.name, d.hardware
HAVING round(sum(extract(epoch FROM least(coalesce(r.ended_at, %(now)s), %(end)s) - greatest(r.started_at, %(hour)s))
                 * r.memory_mb) / 3686400, 6) > 0
"""


def hour_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def hour_up(moment: datetime) -> datetime:
    """The first hour start at or after `moment`: where a price version taking effect at
    `moment` begins to rate, since an hour is rated by the version in force at its start."""
    start = hour_start(moment)
    return start if start == moment else start + timedelta(hours=1)


def usage_rollup_hour(*, hour: datetime) -> int:
    """Rebuild the rollups of the UTC hour holding `hour`; the rows written."""
    start = hour_start(hour)
    with transaction.atomic(), connection.cursor() as cursor:
        # One roll of an hour at a time: two would delete each other's rows half-way.
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [0x524F4C4C, int(start.timestamp()) // 3600])
        UsageRollup.unscoped.filter(hour=start).delete()
        params = {"hour": start, "end": start + timedelta(hours=1), "now": timezone.now()}
        cursor.execute(_ROLL, params)
        written = cursor.rowcount
        cursor.execute(_ROLL_RESERVED, params)
        return written + cursor.rowcount


def usage_rollups_refresh(*, now: datetime | None = None) -> list[datetime]:
    """Roll every hour from the last roll's to the current one and every hour with events
    ingested since the last roll; the hours rolled, oldest first."""
    now = now or timezone.now()
    last = UsageRollup.unscoped.aggregate(last=Max("rolled_at"))["last"]
    events = UsageEvent.unscoped.all()
    if last is not None:
        events = events.filter(ingested_at__gte=last - OVERLAP)
    hours = {hour_start(moment) for moment in events.datetimes("occurred_at", "hour", tzinfo=UTC)}
    hour = min(hour_start(last), hour_start(now)) if last is not None else hour_start(now)
    while hour <= hour_start(now):
        hours.add(hour)
        hour += timedelta(hours=1)
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
    rolled = (UsageRollup.unscoped.filter(hour__gte=start, hour__lt=end)
              .filter(meter__in=[Meter.REQUESTS, Meter.COMPUTE_MS]).values("tenant_id", "meter")
              .annotate(quantity=Sum("quantity")))
    have = {(r["tenant_id"], r["meter"]): r["quantity"] for r in rolled}
    differences = []
    for key in sorted(set(want) | set(have)):
        events, rollups = want.get(key, Decimal(0)), have.get(key, Decimal(0))
        if events != rollups:
            differences.append(f"tenant {key[0]} {key[1]}: events {events}, rollups {rollups}")
    return differences

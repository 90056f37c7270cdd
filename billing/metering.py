"""Ingestion of usage events from the gateway's Redis stream into PostgreSQL.

The gateway XADDs one entry per admitted request to `usage:events`. This consumer reads
them through a consumer group, inserts them idempotently (ON CONFLICT on request_id),
and only then acknowledges and deletes them; entries a crashed consumer left pending
are claimed back after `claim_idle_ms`."""
import logging
import os
import socket
import time
import uuid
from datetime import UTC, datetime

import redis
from django.db import OperationalError, connection, transaction

from billing.models import QuotaAlert, UsageEvent
from gateway.contract.keys import USAGE_STREAM
from gateway.contract.usage import usage_event_unpack
from tenants.directory import redis_client
from tenants.models import ApiKey

log = logging.getLogger(__name__)

GROUP = "metering"
# The flag of a request admitted past a soft spend limit (admit.lua).
SPEND_FLAG = "tenant_spend_limit"

def _ensure_group(r) -> None:
    try:
        r.xgroup_create(USAGE_STREAM, GROUP, id="0", mkstream=True)
    except Exception as exc:  # BUSYGROUP: it exists
        if "BUSYGROUP" not in str(exc):
            raise


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value not in (None, "", "0") else None


def _unpack(fields: dict) -> dict:
    """The gateway writes an event as one packed field (gateway/contract/usage.py)."""
    return usage_event_unpack(fields)


def _row(fields: dict) -> UsageEvent | None:
    fields = _unpack(fields)
    try:
        return UsageEvent(
            request_id=uuid.UUID(fields["rid"]),
            tenant_id=int(fields["tenant"]),
            api_key_id=_int_or_none(fields.get("key")),
            deployment_id=_int_or_none(fields.get("dep")),
            deployment_name=fields.get("name", "")[:63],
            model_version_id=_int_or_none(fields.get("ver")),
            protocol=fields.get("proto", "http")[:16],
            endpoint=fields.get("ep", "infer")[:32],
            status=int(fields["status"]),
            latency_ms=float(fields["lat"]),
            upstream_ms=float(fields["up"]) if fields.get("up") else None,
            compute_ms=int(fields.get("cus") or 0) / 1000,
            cold_start=fields.get("cold", "0") not in ("", "0"),
            cold_start_ms=float(fields["cold"]) if fields.get("cold", "0") not in ("", "0") else None,
            flags=fields.get("flags", "")[:200],
            bytes_in=int(fields.get("bin") or 0),
            bytes_out=int(fields.get("bout") or 0),
            occurred_at=datetime.fromtimestamp(float(fields["ts"]), tz=UTC),
        )
    except (KeyError, ValueError) as exc:
        log.error("dropping malformed usage entry %r: %s", fields, exc)
        return None


def _resolve_references(rows: list[UsageEvent]) -> list[UsageEvent]:
    """Keep usage whose key or deployment has since been deleted (the reference becomes
    empty, the deployment name stays); drop only events of tenants that no longer exist."""
    from tenants.models import Tenant
    from workers.models import Deployment

    tenants = set(Tenant.objects.filter(pk__in={r.tenant_id for r in rows}).values_list("pk", flat=True))
    keys = set(ApiKey.unscoped.filter(pk__in={r.api_key_id for r in rows if r.api_key_id})
               .values_list("pk", flat=True))
    deployments = set(Deployment.unscoped.filter(pk__in={r.deployment_id for r in rows if r.deployment_id})
                      .values_list("pk", flat=True))
    kept = []
    for row in rows:
        if row.tenant_id not in tenants:
            log.warning("dropping usage event %s of unknown tenant %s", row.request_id, row.tenant_id)
            continue
        if row.api_key_id not in keys:
            row.api_key_id = None
        if row.deployment_id not in deployments:
            row.deployment_id = None
        kept.append(row)
    return kept


def usage_ingest(entries: list[tuple[str, dict]]) -> int:
    """Insert a batch of stream entries; return how many rows were new."""
    rows = _resolve_references([row for _, fields in entries if (row := _row(fields)) is not None])
    if not rows:
        return 0
    with transaction.atomic():
        before = UsageEvent.unscoped.filter(request_id__in=[r.request_id for r in rows]).count()
        UsageEvent.unscoped.bulk_create(rows, ignore_conflicts=True)
        inserted = len({r.request_id for r in rows}) - before
        last_used = {}
        for row in rows:
            if row.api_key_id and (row.api_key_id not in last_used or row.occurred_at > last_used[row.api_key_id]):
                last_used[row.api_key_id] = row.occurred_at
        for key_id, when in last_used.items():
            ApiKey.unscoped.filter(pk=key_id).exclude(last_used_at__gte=when).update(last_used_at=when)
        quota_alerts_raise([row for row in rows if row.flags])
    return inserted


def quota_alerts_raise(rows: list[UsageEvent]) -> list[QuotaAlert]:
    """Record each soft limit a tenant passed, once per month, and tell its owners and
    admins by email after commit."""
    raised = []
    for row in rows:
        period = row.occurred_at.strftime("%Y%m")
        for limit in row.flags.split(","):
            if limit == SPEND_FLAG:  # spend alerts come from the exact ledger (billing/alerts.py)
                continue
            alert, created = QuotaAlert.unscoped.get_or_create(
                tenant_id=row.tenant_id, limit=limit, period=period, defaults={"first_request_id": row.request_id})
            if created:
                raised.append(alert)
    if raised:
        transaction.on_commit(lambda: _notify(raised))
    return raised


def _notify(alerts: list[QuotaAlert]) -> None:
    from django.conf import settings
    from django.core.mail import send_mail

    from tenants.models import Membership, Role

    for alert in alerts:
        recipients = list(Membership.unscoped.filter(tenant_id=alert.tenant_id, role__in=[Role.OWNER, Role.ADMIN])
                          .exclude(user__email="").values_list("user__email", flat=True))
        scope, _, limit = alert.limit.partition("_")
        log.warning("tenant %s passed its soft %s limit (%s) in %s", alert.tenant_id, limit, scope, alert.period)
        if recipients:
            send_mail(f"Soft limit passed: {limit.replace('_', ' ')}",
                      f"Your {scope}'s soft limit on {limit.replace('_', ' ')} was passed this month "
                      f"({alert.period[:4]}-{alert.period[4:]}). Requests are still served; see the Quotas page "
                      f"at {settings.PORTAL_URL}/quotas/.", None, recipients, fail_silently=True)


def consume(*, consumer: str | None = None, batch: int = 500, block_ms: int = 1000,
            claim_idle_ms: int = 30_000, once: bool = False) -> int:
    """Run the consumer loop; with once=True, drain what is there and return the count.

    Survives Redis restarts and flushes: the group is re-created when it disappears."""
    r = redis_client()
    _ensure_group(r)
    consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
    total = 0
    while True:
        try:
            entries = _next_entries(r, consumer, batch, None if once else block_ms, claim_idle_ms)
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc) and "UNBLOCKED" not in str(exc):
                raise
            _ensure_group(r)
            continue
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if once:
                raise
            log.warning("metering: Redis unreachable (%s); retrying", exc)
            time.sleep(1)
            continue
        if entries:
            total += _ingest_retrying(entries)
            ids = [entry_id for entry_id, _ in entries]
            pipe = r.pipeline()
            pipe.xack(USAGE_STREAM, GROUP, *ids)
            pipe.xdel(USAGE_STREAM, *ids)
            pipe.execute()
        elif once:
            return total
        connection.close_if_unusable_or_obsolete()


def _ingest_retrying(entries: list, attempts: int = 5) -> int:
    """Ingest a batch; a transaction the database aborted (a deadlock with the control
    plane's row locks, a dropped connection) is tried again, with the same batch."""
    for attempt in range(1, attempts + 1):
        try:
            return usage_ingest(entries)
        except OperationalError as exc:
            if attempt == attempts:
                raise
            log.warning("metering: batch of %d not written (%s); retrying", len(entries), exc)
            connection.close_if_unusable_or_obsolete()
            time.sleep(0.1 * attempt)
    return 0


def _next_entries(r, consumer: str, batch: int, block_ms: int | None, claim_idle_ms: int) -> list:
    claimed = r.xautoclaim(USAGE_STREAM, GROUP, consumer, min_idle_time=claim_idle_ms, start_id="0-0", count=batch)
    entries = list(claimed[1]) if claimed and len(claimed) > 1 else []
    if not entries:
        response = r.xreadgroup(GROUP, consumer, {USAGE_STREAM: ">"}, count=batch, block=block_ms)
        entries = response[0][1] if response else []
    return [(entry_id, fields) for entry_id, fields in entries if fields]

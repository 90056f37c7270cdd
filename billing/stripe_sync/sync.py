"""The Stripe sync, run by beat every minute: meters, each billable tenant's customer and
subscription, then the meter event outbox (filled from the rollups, then sent). One run at
a time: a PostgreSQL advisory lock held by the run's connection (a killed run's lock goes
with its connection), so a run that overlaps a slow one returns at once."""
import contextlib
import logging
from datetime import datetime

import stripe
from django.db import connection
from django.db.models import Exists, Q
from django.utils import timezone

from billing.models import PriceVersion
from billing.stripe_sync.catalog import stripe_meters_ensure, stripe_subscription_sync
from billing.stripe_sync.client import stripe_enabled
from billing.stripe_sync.meter_events import meter_events_fill, meter_events_send
from tenants.models import Tenant

log = logging.getLogger(__name__)

LOCK = (0x53545250, 1)  # "STRP", the sync


@contextlib.contextmanager
def sync_lock():
    """True while this connection holds the sync's lock, False when another run holds it.
    Reentrant: a run may call another locked step."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", LOCK)
        held = cursor.fetchone()[0]
    try:
        yield held
    finally:
        if held:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", LOCK)


def billable_tenants(*, now: datetime):
    """Tenants whose plan (their own, or the default) has a price version in force."""
    priced = PriceVersion.objects.filter(effective_from__lte=now)
    return Tenant.objects.filter(
        Q(plan__isnull=False, plan__in=priced.values("plan"))
        | Q(plan__isnull=True) & Exists(priced.filter(plan__is_default=True))
    ).select_related("plan").order_by("pk")


def stripe_sync(*, now: datetime | None = None) -> dict:
    """One run of the sync; what it did. Nothing when Stripe is off or another run holds the lock."""
    if not stripe_enabled():
        return {}
    now = now or timezone.now()
    with sync_lock() as held:
        if not held:
            return {"skipped": "another Stripe sync is running"}
        stripe_meters_ensure()
        subscriptions = 0
        for tenant in billable_tenants(now=now):
            try:
                subscriptions += stripe_subscription_sync(tenant=tenant, now=now) is not None
            except stripe.StripeError as exc:
                log.warning("Stripe subscription of tenant %s not synced: %s", tenant.slug, exc)
        sent = _meter_events(now=now)
    return {"subscriptions": subscriptions, **sent}


def stripe_meter_events_send(*, now: datetime | None = None) -> dict:
    """Fill the meter event outbox from the rollups and send what is pending, under the
    sync's lock (billing.stripe_sync.meter_events); counts by outcome."""
    if not stripe_enabled():
        return {}
    now = now or timezone.now()
    with sync_lock() as held:
        if not held:
            return {"skipped": "another Stripe sync is running"}
        return _meter_events(now=now)


def _meter_events(*, now: datetime) -> dict:
    filled = meter_events_fill(now=now)
    return {"filled": filled, **meter_events_send(now=now)}

"""Stripe, through the official SDK, and optional: with STRIPE_API_KEY empty the platform
rates and invoices alone and nothing here calls Stripe.

  client.py        the SDK client, idempotency keys, backoff on 429, money in minor units
  catalog.py       customers, meters, prices and subscriptions mirroring the plans
  meter_events.py  the meter event outbox, from the hourly rollups, and its sending
  sync.py          the sync beat runs every minute, under one lock
  events.py        webhook events, each handled once"""
from billing.stripe_sync.catalog import stripe_customer_ensure, stripe_meters_ensure, stripe_subscription_sync
from billing.stripe_sync.client import stripe_enabled
from billing.stripe_sync.events import stripe_event_handle
from billing.stripe_sync.sync import stripe_meter_events_send, stripe_sync

__all__ = [
    "stripe_customer_ensure",
    "stripe_enabled",
    "stripe_event_handle",
    "stripe_meter_events_send",
    "stripe_meters_ensure",
    "stripe_subscription_sync",
    "stripe_sync",
]

"""The one way this platform talks to Stripe: the official SDK's `StripeClient`, pointed at
STRIPE_API_BASE and STRIPE_METER_EVENTS_API_BASE (a fake Stripe in the tests).

Every POST carries an idempotency key of ours, derived from what it creates (the SDK's
own are random per call, so a retry after a crash would not be recognised). A 429 is
retried here, after STRIPE_BACKOFF_BASE_S × 2^try with jitter (half to all of it), so
that many workers never retry in step; the SDK itself only retries connection errors,
409s and 5xx, under the same key."""
import functools
import logging
import random
import time
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from typing import TypeVar

import stripe
from django.conf import settings

log = logging.getLogger(__name__)

T = TypeVar("T")

# Currencies Stripe counts in whole units (no cents): https://docs.stripe.com/currencies#zero-decimal
ZERO_DECIMAL = {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf",
                "xof", "xpf"}
# Stripe takes a unit_amount_decimal with at most 12 decimal places.
STRIPE_DECIMAL_PLACES = Decimal("1e-12")


def stripe_enabled() -> bool:
    """Stripe runs only with an API key; without one the platform rates and invoices alone."""
    return bool(settings.STRIPE_API_KEY)


def stripe_client() -> stripe.StripeClient:
    if not stripe_enabled():
        raise RuntimeError("Stripe is off: STRIPE_API_KEY is empty.")
    return _client(settings.STRIPE_API_KEY, settings.STRIPE_API_BASE, settings.STRIPE_METER_EVENTS_API_BASE)


@functools.lru_cache(maxsize=4)
def _client(api_key: str, api_base: str, meter_events_base: str) -> stripe.StripeClient:
    return stripe.StripeClient(api_key, base_addresses={"api": api_base, "meter_events": meter_events_base},
                               max_network_retries=2)


def backoff_s(attempt: int) -> float:
    """How long to wait before try `attempt + 1` after a 429: exponential, with jitter."""
    return settings.STRIPE_BACKOFF_BASE_S * (2 ** attempt) * random.uniform(0.5, 1.0)


def stripe_request(call: Callable[[dict], T], *, idempotency_key: str | None = None) -> T:
    """`call(options)` with our idempotency key, retried on 429 up to STRIPE_BACKOFF_TRIES
    tries; the last RateLimitError is raised."""
    options = {"idempotency_key": idempotency_key} if idempotency_key else {}
    tries = max(1, settings.STRIPE_BACKOFF_TRIES)
    for attempt in range(tries):
        try:
            return call(options)
        except stripe.RateLimitError:
            if attempt + 1 == tries:
                raise
            wait = backoff_s(attempt)
            log.info("Stripe answered 429 (%s); retrying in %.2f s", idempotency_key or "read", wait)
            time.sleep(wait)
    raise AssertionError("unreachable")


def minor_units(currency: str) -> int:
    """How many of the currency's smallest unit make one: what Stripe's amounts count."""
    return 1 if currency.lower() in ZERO_DECIMAL else 100


def stripe_decimal(amount: Decimal) -> str:
    """A unit_amount_decimal as Stripe takes it: plain notation, at most 12 decimal places
    (half-up beyond them)."""
    rounded = amount.quantize(STRIPE_DECIMAL_PLACES, rounding=ROUND_HALF_UP).normalize()
    return format(rounded, "f") if rounded else "0"

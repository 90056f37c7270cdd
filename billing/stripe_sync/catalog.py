"""Customers, meters, prices and subscriptions in Stripe, made once and found again.

- One customer per tenant (its id in the tenant's BillingAccount).
- One meter per component, event name `platform_<component>`, summing the `value` of
  each event for the customer in `stripe_customer_id`.
- A Stripe price per price version × component that mirrors ours: recurring monthly,
  metered by that component's meter, graduated tiers whose first tier (up to the free
  allowance) costs 0; the base fee as a licensed monthly price. Stripe meter units are
  finer than ours (see METER_UNITS), so the tiers' bounds are in meter units (rounded up
  to a whole one) and the unit prices in the currency's smallest unit per meter unit
  (12 decimal places at most, Stripe's limit: a price that needs more is rounded there).
- One subscription per tenant, on the prices of the version in force; when a newer
  version takes effect the sync moves the subscription's items to its prices, from then on
  (no proration). Only versions in force are mirrored: a future one may still change.

What is not mirrored: our invoice rates each event by the version in force when it
happened and puts late usage on the next invoice as dated adjustment lines; Stripe rates
a period's metered usage at the prices its items hold when it invoices, and rounds in
its own way. Our invoice is the authority; reconciliation compares quantities with
Stripe's meters, to the unit, not Stripe's amounts."""
import math
from datetime import datetime
from decimal import Decimal

from django.db import transaction

from billing.invoicing import billing_account_for
from billing.models import BillingAccount, Component, Price, PriceVersion, StripeObject, StripeObjectKind
from billing.pricing import UNITS, tiers_parse, version_in_force
from billing.stripe_sync.client import minor_units, stripe_client, stripe_decimal, stripe_request
from tenants.models import Tenant
from tenants.quotas import tenant_plan

BASE_FEE = "base_fee"

# A meter's unit per unit of its component, and its name: whole numbers that the rollups
# hold exactly (requests; compute milliseconds to 6 decimals are nanoseconds; GB-hours to
# 6 decimals are micro-GB-hours), so a meter event's value is an integer and nothing is
# lost to rounding on the way to Stripe.
METER_UNITS: dict[str, tuple[Decimal, str]] = {
    Component.REQUESTS: (Decimal(1000), "request"),
    Component.COMPUTE_CPU: (Decimal(10) ** 9, "nanosecond"),
    Component.COMPUTE_GPU: (Decimal(10) ** 9, "nanosecond"),
    Component.RESERVED_MEMORY: (Decimal(10) ** 6, "micro-GB-hour"),
}


def event_name(component: str) -> str:
    return f"platform_{component}"


def version_for(*, tenant: Tenant, moment: datetime) -> PriceVersion | None:
    """The price version of the tenant's plan (its own, else the default) in force at `moment`."""
    plan = tenant_plan(tenant)
    if plan is None:
        return None
    return version_in_force(list(plan.price_versions.order_by("effective_from")), moment)


def stripe_customer_ensure(*, tenant: Tenant) -> str:
    """The tenant's Stripe customer id, creating the customer once."""
    account = billing_account_for(tenant=tenant)
    if account.stripe_customer_id:
        return account.stripe_customer_id
    params = {"name": tenant.name, "metadata": {"tenant_id": str(tenant.pk), "tenant_slug": tenant.slug}}
    if account.email:
        params["email"] = account.email
    client = stripe_client()
    customer = stripe_request(lambda options: client.v1.customers.create(params=params, options=options),
                              idempotency_key=f"customer-{tenant.pk}")
    BillingAccount.objects.filter(pk=account.pk).update(stripe_customer_id=customer.id)
    return customer.id


def stripe_meters_ensure() -> dict[str, str]:
    """Every component's Stripe meter id, creating the meters once. A meter that exists in
    Stripe under our event name (its id lost here) is adopted rather than made twice."""
    known = dict(StripeObject.objects.filter(kind=StripeObjectKind.METER).values_list("key", "stripe_id"))
    missing = [component for component in Component.values if component not in known]
    if not missing:
        return known
    client = stripe_client()
    listed = stripe_request(lambda options: client.v1.billing.meters.list(params={"status": "active", "limit": 100},
                                                                           options=options))
    existing = {meter.event_name: meter.id for meter in listed.auto_paging_iter()}
    for component in missing:
        name = event_name(component)
        meter_id = existing.get(name)
        if meter_id is None:
            params = {
                "display_name": f"{Component(component).label} ({METER_UNITS[component][1]}s)",
                "event_name": name,
                "default_aggregation": {"formula": "sum"},
                "customer_mapping": {"type": "by_id", "event_payload_key": "stripe_customer_id"},
                "value_settings": {"event_payload_key": "value"},
            }
            meter_id = stripe_request(lambda options, p=params: client.v1.billing.meters.create(params=p,
                                                                                               options=options),
                                      idempotency_key=f"meter-{name}").id
        StripeObject.objects.update_or_create(kind=StripeObjectKind.METER, key=component,
                                              defaults={"stripe_id": meter_id, "data": {"event_name": name}})
        known[component] = meter_id
    return known


def _meter_units(amount: Decimal, component: str) -> int:
    """A bound in component units as whole meter units (rounded up)."""
    return math.ceil(amount * METER_UNITS[component][0])


def price_params(*, version: PriceVersion, price: Price, meter_id: str) -> dict:
    """A Stripe price mirroring one component's price in a version (see the module's doc)."""
    per_unit, unit_name = METER_UNITS[price.component]
    minor = minor_units(version.currency)
    tiers: list[dict] = []
    allowance = _meter_units(price.free_allowance, price.component)
    if allowance > 0:
        tiers.append({"up_to": allowance, "unit_amount_decimal": "0"})
    for tier in tiers_parse(price.tiers):
        up_to = "inf" if tier.up_to is None else _meter_units(price.free_allowance + tier.up_to, price.component)
        if up_to != "inf" and tiers and up_to <= tiers[-1]["up_to"]:
            continue  # a tier narrower than one meter unit
        tiers.append({"up_to": up_to, "unit_amount_decimal": stripe_decimal(tier.unit_price * minor / per_unit)})
    params = {
        "currency": version.currency,
        "recurring": {"interval": "month", "usage_type": "metered", "meter": meter_id},
        "product_data": {"name": f"{version.plan.name}: {Component(price.component).label}", "unit_label": unit_name},
        "nickname": f"{price.component}, per {UNITS[price.component]}, "
                    f"from {version.effective_from:%Y-%m-%d %H:%M} UTC",
        "metadata": {"price_version": str(version.pk), "component": price.component},
    }
    if len(tiers) == 1:
        params.update(billing_scheme="per_unit", unit_amount_decimal=tiers[0]["unit_amount_decimal"])
    else:
        params.update(billing_scheme="tiered", tiers_mode="graduated", tiers=tiers)
    return params


def stripe_prices_ensure(*, version: PriceVersion) -> dict[str, str]:
    """The Stripe price ids of a version: per component, and `base_fee` when it has one."""
    wanted: dict[str, dict] = {}
    meters = stripe_meters_ensure()
    for price in version.prices.all():
        wanted[price.component] = price_params(version=version, price=price, meter_id=meters[price.component])
    if version.base_fee > 0:
        wanted[BASE_FEE] = {
            "currency": version.currency,
            "unit_amount": int(version.base_fee * minor_units(version.currency)),
            "recurring": {"interval": "month", "usage_type": "licensed"},
            "product_data": {"name": f"{version.plan.name}: monthly base fee"},
            "metadata": {"price_version": str(version.pk), "component": BASE_FEE},
        }
    known = dict(StripeObject.objects.filter(kind=StripeObjectKind.PRICE, key__startswith=f"{version.pk}-")
                 .values_list("key", "stripe_id"))
    client = stripe_client()
    ids = {}
    for component, params in wanted.items():
        key = f"{version.pk}-{component}"
        if key not in known:
            price = stripe_request(lambda options, p=params: client.v1.prices.create(params=p, options=options),
                                   idempotency_key=f"price-{key}")
            StripeObject.objects.update_or_create(kind=StripeObjectKind.PRICE, key=key,
                                                  defaults={"stripe_id": price.id})
            known[key] = price.id
        ids[component] = known[key]
    return ids


def _item(component: str, price_id: str) -> dict:
    return {"price": price_id, "quantity": 1} if component == BASE_FEE else {"price": price_id}


def stripe_subscription_sync(*, tenant: Tenant, now: datetime) -> str | None:
    """The tenant's subscription id, on the prices of the version in force at `now`:
    created once, its items moved when a newer version takes effect. None without prices."""
    version = version_for(tenant=tenant, moment=now)
    if version is None:
        return None
    record = StripeObject.objects.filter(kind=StripeObjectKind.SUBSCRIPTION, key=str(tenant.pk)).first()
    if record is not None and record.data.get("price_version") == version.pk:
        return record.stripe_id
    customer = stripe_customer_ensure(tenant=tenant)
    prices = stripe_prices_ensure(version=version)
    client = stripe_client()
    if record is None:
        params = {
            "customer": customer,
            "items": [_item(component, price_id) for component, price_id in prices.items()],
            # Calendar months (UTC), like our invoices.
            "billing_cycle_anchor_config": {"day_of_month": 1, "hour": 0, "minute": 0, "second": 0},
            "proration_behavior": "none",
            "metadata": {"tenant_id": str(tenant.pk), "price_version": str(version.pk)},
        }
        subscription = stripe_request(lambda options: client.v1.subscriptions.create(params=params, options=options),
                                      idempotency_key=f"subscription-{tenant.pk}")
    else:
        held = record.data.get("items", {})
        items = [{"id": held[c], "price": p} if c in held else _item(c, p) for c, p in prices.items()]
        items += [{"id": item_id, "deleted": True} for c, item_id in held.items() if c not in prices]
        params = {"items": items, "proration_behavior": "none",
                  "metadata": {"tenant_id": str(tenant.pk), "price_version": str(version.pk)}}
        subscription = stripe_request(
            lambda options: client.v1.subscriptions.update(record.stripe_id, params=params, options=options),
            idempotency_key=f"subscription-{tenant.pk}-version-{version.pk}")
    component_of_price = {price_id: component for component, price_id in prices.items()}
    items = {component_of_price[item.price.id]: item.id for item in subscription["items"]["data"]
             if item.price.id in component_of_price}
    with transaction.atomic():
        StripeObject.objects.update_or_create(
            kind=StripeObjectKind.SUBSCRIPTION, key=str(tenant.pk),
            defaults={"stripe_id": subscription.id, "data": {"price_version": version.pk, "items": items}})
        BillingAccount.objects.filter(tenant=tenant).update(stripe_subscription_id=subscription.id,
                                                            stripe_subscription_status=subscription.status or "")
    return subscription.id

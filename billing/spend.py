"""Monthly spend limits, enforced by the gateway on the request path, and the standing of
a tenant whose payment failed.

What the gateway reads. Billing publishes one hash per tenant, gw:bill:<tenant_id>
(gateway/contract/keys.py): the list prices of the plan's version in force, per request
and per compute millisecond of each hardware, in micro-units of the plan's currency; the
spend limit and its enforcement; `ofs`, defined below; and `blocked` once a payment has
been past due beyond BILLING_PAST_DUE_GRACE_S. admit.lua gives an admitted inference the
prices of its deployment's hardware, and finish.lua adds its cost,
ceil(per request + per ms x compute ms), to the tenant's monthly counter field `spend`, in
the same atomic step as the budgets' counters.

The estimate. The gateway compares `spend + ofs` with the limit, where
    ofs = the ledger's exact total of the month so far (month_rating().total: base fee,
          reserved memory, allowances, tiers, adjustments, each line rounded as invoiced)
        - the rolled requests and compute of its usage lines at list prices
          (`list_usage_total`: what the counter has charged for the same usage; at most
          the counter itself, read after the rating, so that a counter that missed
          requests can only make the estimate start at the exact total).
Rating never charges a unit more than its list price (the highest tier price; allowances
and cheaper tiers only lower it), and the counter charges every request at least its list
price (rounded up), so
    spend + ofs  >=  list(all requests) - list(rolled) + total(rolled)
                 =   total(rolled) + list(not yet rolled)  >=  the exact spend,
to within the cent each invoice line rounds to (and never below total(rolled), whatever
the counter missed). The estimate is therefore never below what the counted requests
really cost, and it converges to the exact spend each minute, when the rollups and this
publication catch up (spend_refresh_all, from beat).

The overshoot bound. A hard limit admits a request only while the estimate is below the
limit, and a request adds at most its own cost when it finishes. Once the last request is
admitted, the spend can grow only by the costs of the requests in flight at that moment:
    final spend <= limit + the sum of their costs
                <= limit + in flight x (price per request + price per ms x the longest compute ms).
A concurrency limit of the tenant caps the requests in flight, and so the overshoot.
(tests/gateway/test_spend_limits.py checks it across two gateway processes.)

What it does not cover: a price version reaches the gateway with the first publication
of its first hour (rating prices an hour by the version in force at the hour's start), so
the requests of up to a minute count at the previous list price; a plan change re-rates
the whole month at the new plan's prices, while the requests counted before it stay at
the old plan's list prices; a Redis that lost gw:bill:* serves without a limit until the
next minute's publication (billing/quotas.py restores the counters).

Past due. The Stripe webhook marks a failed payment (billing_past_due_set); requests are
still served during the grace, then refused with 402 payment_required until the invoice
is paid, which clears the mark. A grace that runs out is published by the minute's
refresh."""
import logging
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, Decimal, InvalidOperation

import redis
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from billing.alerts import spend_alerts_raise
from billing.invoicing import billing_account_for, day_start, month_next, month_rating, month_start
from billing.models import BillingAccount, Component, Enforcement, PriceVersion, SpendAlert
from billing.pricing import list_unit_price, tiers_parse, version_in_force
from billing.rollups import hour_start, hour_up
from gateway.contract.errors import PlatformError, validation_message
from gateway.contract.keys import BILL_PREFIX, bill_entry_name, use_counter_name
from tenants.audit import audit_record
from tenants.directory import redis_client
from tenants.models import Membership, Role, Tenant
from tenants.quotas import tenant_plan

MICRO = Decimal(1_000_000)
CENT = Decimal("0.01")
# Components are priced per 1,000 requests and per second: per request and per ms, in
# micro-units, both are the list price x 1,000.
PER_UNIT_TO_MICRO = Decimal(1000)
HARDWARE = ("cpu", "gpu")
# Publishers of one tenant's entry take this advisory lock (with the tenant id) while they
# read and write it, so that the later read is always written last.
PUBLISH_LOCK = 0x5350454E

log = logging.getLogger(__name__)


# ---- spend limits ---------------------------------------------------------------------

def spend_limit_set(*, tenant: Tenant, amount: Decimal | None, enforcement: str, actor) -> BillingAccount:
    """Set (or, with None, remove) the tenant's monthly spend limit, in its plan's currency,
    hard (requests are refused once it is reached) or soft (they are flagged). Owners set
    it, at most the `spend_limit_max` admins allow. In force on the gateway once committed."""
    amount = _amount_clean(amount)
    if enforcement not in Enforcement.values:
        raise PlatformError(f"Enforcement must be 'hard' or 'soft', not {enforcement!r}.", code="invalid_spend_limit")
    _owner_check(tenant=tenant, actor=actor)
    with transaction.atomic():
        billing_account_for(tenant=tenant)
        account = BillingAccount.objects.select_for_update().get(tenant=tenant)
        ceiling = account.spend_limit_max
        if ceiling is not None:
            if amount is None or amount > ceiling:
                raise PlatformError(f"The spend limit can be at most {ceiling} (set by the platform's admins).",
                                    code="invalid_spend_limit")
            if enforcement == Enforcement.SOFT:
                raise PlatformError(f"The spend limit must be hard: the platform's admins cap this account's "
                                    f"spend at {ceiling}.", code="invalid_spend_limit")
        before = _limit_values(account)
        account.spend_limit, account.spend_limit_enforcement = amount, enforcement
        try:
            account.full_clean()
        except ValidationError as exc:
            raise PlatformError(validation_message(exc), code="invalid_spend_limit") from None
        account.save(update_fields=["spend_limit", "spend_limit_enforcement", "updated_at"])
        audit_record(event_type="spend_limit.changed", target=account, old=before, new=_limit_values(account),
                     tenant=tenant)
        spend_publish(tenant=tenant)
    return account


def _amount_clean(amount) -> Decimal | None:
    if amount is None:
        return None
    try:
        value = Decimal(str(amount))
    except (InvalidOperation, ValueError):
        raise PlatformError(f"The spend limit must be an amount like 250.00, not {amount!r}.",
                            code="invalid_spend_limit") from None
    if not value.is_finite():
        raise PlatformError("The spend limit must be a finite amount, like 250.00.", code="invalid_spend_limit")
    if value < 0:
        raise PlatformError("The spend limit cannot be negative.", code="invalid_spend_limit")
    if value.adjusted() >= 10:
        raise PlatformError(f"The spend limit can be at most 9999999999.99, not {value}.", code="invalid_spend_limit")
    if value != value.quantize(CENT):
        raise PlatformError(f"The spend limit has at most 2 decimals (cents), not {value}.",
                            code="invalid_spend_limit")
    return value.quantize(CENT)


def _owner_check(*, tenant: Tenant, actor) -> None:
    """Only the tenant's owners (or the platform's staff) change its spend limit; the
    system (actor None) may."""
    if actor is None or getattr(actor, "is_staff", False):
        return
    is_owner = (getattr(actor, "is_authenticated", False)
                and Membership.objects.for_tenant(tenant).filter(user=actor, role=Role.OWNER).exists())
    if not is_owner:
        raise PlatformError("Only the tenant's owners can change its spend limit.", code="permission_denied",
                            status=403)


def _limit_values(account: BillingAccount) -> dict:
    limit = account.spend_limit
    return {"spend_limit": None if limit is None else str(limit),
            "spend_limit_enforcement": account.spend_limit_enforcement}


# ---- past due -------------------------------------------------------------------------

def billing_past_due_set(*, tenant: Tenant, since: datetime | None) -> BillingAccount:
    """Mark the tenant past due from `since` (a payment failed), or clear it (None: paid).
    A tenant already past due keeps its first date, so a further failed attempt does not
    extend its grace. Published to the gateway once committed."""
    with transaction.atomic():
        billing_account_for(tenant=tenant)
        account = BillingAccount.objects.select_for_update().get(tenant=tenant)
        before = account.past_due_since
        if since is not None and before is not None:
            since = min(since, before)
        if since != before:
            account.past_due_since = since
            account.save(update_fields=["past_due_since", "updated_at"])
            audit_record(event_type="billing.past_due" if since else "billing.paid", target=account,
                         old={"past_due_since": before.isoformat() if before else None},
                         new={"past_due_since": since.isoformat() if since else None}, tenant=tenant)
        spend_publish(tenant=tenant)
    return account


def _blocked_from(account: BillingAccount | None) -> datetime | None:
    if account is None or account.past_due_since is None:
        return None
    return account.past_due_since + timedelta(seconds=settings.BILLING_PAST_DUE_GRACE_S)


# ---- publication ----------------------------------------------------------------------

def spend_publish(*, tenant: Tenant) -> None:
    """Write the tenant's gateway billing entry once the current transaction commits."""
    tenant_id = tenant.pk
    transaction.on_commit(lambda: _publish_locked(tenant_id=tenant_id, now=timezone.now()))


def spend_publish_all(*, now: datetime | None = None) -> int:
    """Publish every tenant's entry and remove those of tenants that are gone; the number
    published."""
    return _publish_all(now=now or timezone.now(), alerts=False)


def spend_refresh_all(*, now: datetime | None = None) -> int:
    """The minute's refresh (beat): publish every tenant's entry, with the month's exact
    spend so far, and raise the spend alerts it reaches; the number published."""
    return _publish_all(now=now or timezone.now(), alerts=True)


def _publish_all(*, now: datetime, alerts: bool) -> int:
    tenants = list(Tenant.objects.select_related("plan").order_by("pk"))
    versions = _versions_by_plan()
    published = 0
    for tenant in tenants:
        try:
            _publish_locked(tenant_id=tenant.pk, now=now, tenant=tenant, versions=versions, alerts=alerts)
        except Exception:
            # One tenant's failure (a price an admin broke) must not leave every later tenant's
            # entry stale; its own previous entry stands until the next minute.
            log.exception("publishing the spend entry of tenant %s failed", tenant.pk)
            continue
        published += 1
    r = redis_client()
    wanted = {bill_entry_name(t.pk) for t in tenants}
    stale = [name for name in r.scan_iter(match=f"{BILL_PREFIX}*", count=1000) if name not in wanted]
    if stale:
        r.delete(*stale)
    return published


def _versions_by_plan() -> dict[int, list[PriceVersion]]:
    by_plan: dict[int, list[PriceVersion]] = {}
    for version in PriceVersion.objects.prefetch_related("prices").order_by("plan_id", "effective_from"):
        by_plan.setdefault(version.plan_id, []).append(version)
    return by_plan


def _publish_locked(*, tenant_id: int, now: datetime, tenant: Tenant | None = None, versions: dict | None = None,
                    alerts: bool = False) -> None:
    """Read the tenant's entry and write it, holding the tenant's publish lock; with
    `alerts`, raise the spend alerts of the exact spend read on the way."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [PUBLISH_LOCK, tenant_id])
        if tenant is None:
            tenant = Tenant.objects.select_related("plan").filter(pk=tenant_id).first()
            if tenant is None:
                redis_client().delete(bill_entry_name(tenant_id))
                return
        account = BillingAccount.objects.filter(tenant_id=tenant_id).first()
        entry, rating = _entry(tenant=tenant, account=account, versions=versions, now=now)
        pipe = redis_client().pipeline(transaction=True)
        pipe.delete(bill_entry_name(tenant_id))
        if entry:
            pipe.hset(bill_entry_name(tenant_id), mapping=entry)
        pipe.execute()
        if alerts and rating is not None:
            spend_alerts_raise(tenant=tenant, account=account, spent=rating.total, currency=rating.currency, now=now)


def spend_entry(*, tenant: Tenant, now: datetime | None = None) -> dict:
    """The tenant's gateway billing entry as it would be published now (gw:bill:<tenant_id>)."""
    account = BillingAccount.objects.filter(tenant=tenant).first()
    return _entry(tenant=tenant, account=account, versions=None, now=now or timezone.now())[0]


def _entry(*, tenant: Tenant, account: BillingAccount | None, versions: dict | None, now: datetime):
    plan = tenant_plan(tenant)
    if plan is None:
        plan_versions = []
    elif versions is not None:
        plan_versions = versions.get(plan.pk, [])
    else:
        plan_versions = list(PriceVersion.objects.filter(plan=plan).prefetch_related("prices")
                             .order_by("effective_from"))
    entry: dict[str, str] = {}
    # Rating prices an hour by the version in force at its start: so does the counter.
    version = version_in_force(plan_versions, hour_start(now))
    if version is not None:
        entry["cur"] = version.currency.upper()
        prices = {p.component: list_unit_price(tiers_parse(p.tiers)) for p in version.prices.all()}
        for hardware in HARDWARE:
            per_request = prices.get("requests", Decimal(0)) * PER_UNIT_TO_MICRO
            per_ms = prices.get(f"compute_{hardware}", Decimal(0)) * PER_UNIT_TO_MICRO
            if per_request:
                entry[f"req_{hardware}"] = _price_text(per_request)
            if per_ms:
                entry[f"ms_{hardware}"] = _price_text(per_ms)
    blocked_from = _blocked_from(account)
    if blocked_from is not None and blocked_from <= now:
        entry["blocked"] = "1"
    rating = None
    if account is not None and account.spend_limit is not None:
        entry["limit"] = str(int(account.spend_limit * MICRO))
        if account.spend_limit_enforcement == Enforcement.SOFT:
            entry["soft"] = "1"
        rating = month_rating(tenant=tenant, period_start=month_start(now), now=now)
        month = now.strftime("%Y%m")
        # The counter read after the rating, and counters only grow: should it have missed
        # requests (before the tenant's first publication, or lost with Redis), the estimate
        # still starts at the exact total.
        counter = Decimal(redis_client().hget(use_counter_name(f"t:{tenant.pk}", month), "spend") or 0) / MICRO
        entry["month"] = month
        entry["ofs"] = str(_micro_up(rating.total - min(rating.list_usage_total, counter)))
        # The next month opens with its base fee: in force for the minute before the next
        # publication, should the month turn meanwhile.
        next_start = day_start(month_next(month_start(now)))
        opening = version_in_force(plan_versions, next_start)
        entry["ofs_next"] = str(_micro_up(opening.base_fee if opening is not None else Decimal(0)))
        entry.setdefault("cur", rating.currency.upper())
    return entry, rating


def _micro_up(amount: Decimal) -> int:
    """Money in micro-units, rounded up (the estimate must not fall below the spend)."""
    return int((amount * MICRO).to_integral_value(rounding=ROUND_CEILING))


def _price_text(value: Decimal) -> str:
    """A price as Lua's tonumber reads it: plain digits, no exponent."""
    return format(value.normalize(), "f")


# ---- status ---------------------------------------------------------------------------

def spend_status(*, tenant: Tenant, now: datetime | None = None, overview: dict | None = None) -> dict:
    """The spend limit and where the month stands against it: the exact spend so far (the
    month's rating, as the draft invoice shows it), this month's alerts, and whether the
    tenant is past due or refused for it. Given the Billing page's `billing_overview` of
    the same moment, its cost so far is used rather than rating the month again."""
    now = now or timezone.now()
    account = BillingAccount.objects.filter(tenant=tenant).first()
    if overview is not None:
        spent, currency = overview["cost_so_far"], overview["currency"]
    else:
        rating = month_rating(tenant=tenant, period_start=month_start(now), now=now)
        spent, currency = rating.total, rating.currency
    limit = account.spend_limit if account is not None else None
    blocked_from = _blocked_from(account)
    alerts = SpendAlert.objects.for_tenant(tenant).filter(period=now.strftime("%Y%m")).order_by("threshold")
    return {
        "currency": currency,
        "limit": limit,
        "enforcement": account.spend_limit_enforcement if account is not None else Enforcement.HARD.value,
        "limit_max": account.spend_limit_max if account is not None else None,
        "spent": spent,
        "percent": None if not limit else (spent * 100 / limit).quantize(Decimal("0.1")),
        "estimate": _gateway_estimate(tenant_id=tenant.pk, now=now),
        "alerts": [{"threshold": a.threshold, "spent": a.spent, "spend_limit": a.spend_limit,
                    "created_at": a.created_at} for a in alerts],
        "past_due": blocked_from is not None,
        "past_due_since": account.past_due_since if account is not None else None,
        "blocked_from": blocked_from,
        "blocked": blocked_from is not None and blocked_from <= now,
    }


def _gateway_estimate(*, tenant_id: int, now: datetime) -> Decimal | None:
    """The spend the gateway compares with the limit now (counter + ofs), in money; None
    when it has no limit to compare with."""
    pipe = redis_client().pipeline(transaction=False)
    pipe.hmget(bill_entry_name(tenant_id), "limit", "month", "ofs", "ofs_next")
    month = now.strftime("%Y%m")
    pipe.hget(use_counter_name(f"t:{tenant_id}", month), "spend")
    try:
        (limit, published_month, ofs, ofs_next), spent = pipe.execute()
    except redis.RedisError:  # the status shows without it
        return None
    if limit is None:
        return None
    offset = ofs if published_month == month else ofs_next
    return (Decimal(spent or 0) + Decimal(offset or 0)) / MICRO


# ---- counters Redis lost ----------------------------------------------------------------

_COUNTED = """
SELECT coalesce(sum(ceil(CASE WHEN coalesce(d.hardware, 'cpu') = 'gpu'
                              THEN %(req_gpu)s + %(ms_gpu)s * round(e.compute_ms::numeric, 3)
                              ELSE %(req_cpu)s + %(ms_cpu)s * round(e.compute_ms::numeric, 3) END)), 0)
FROM billing_usageevent e
LEFT JOIN workers_deployment d ON d.id = e.deployment_id
WHERE e.tenant_id = %(tenant)s AND e.occurred_at >= %(start)s AND e.occurred_at < %(end)s
  AND e.status = 200 AND e.endpoint = 'infer'
"""


def spend_counted(*, tenant: Tenant, start: datetime, end: datetime) -> int:
    """What the gateway's counter `spend` charges for the tenant's billable events of
    [start, end), in micro-units: each at the list prices of the version in force when it
    happened, rounded up per request as finish.lua does (compute time to the microsecond,
    as the gateway measured it). Rebuilds a counter Redis lost."""
    plan = tenant_plan(tenant)
    versions = list(PriceVersion.objects.filter(plan=plan).prefetch_related("prices").order_by("effective_from")) \
        if plan is not None else []
    total = 0
    with connection.cursor() as cursor:
        for index, version in enumerate(versions):
            # An event is priced by the version in force at its hour's start.
            begin = max(start, hour_up(version.effective_from))
            finish = min(end, hour_up(versions[index + 1].effective_from)) if index + 1 < len(versions) else end
            if begin >= finish:
                continue
            prices = {p.component: list_unit_price(tiers_parse(p.tiers)) * PER_UNIT_TO_MICRO
                      for p in version.prices.all()}
            params = {"tenant": tenant.pk, "start": begin, "end": finish,
                      **{f"req_{hw}": prices.get(Component.REQUESTS, Decimal(0)) for hw in HARDWARE},
                      **{f"ms_{hw}": prices.get(f"compute_{hw}", Decimal(0)) for hw in HARDWARE}}
            cursor.execute(_COUNTED, params)
            total += int(cursor.fetchone()[0])
    return total

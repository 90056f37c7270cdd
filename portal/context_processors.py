from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.contrib.staticfiles import finders
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from billing.models import BillingAccount, Enforcement, Invoice, SpendAlert
from tenants.models import Membership, Tenant


def platform(request):
    user = getattr(request, "user", None)
    memberships = []
    if user is not None and user.is_authenticated:
        memberships = Membership.unscoped.filter(user=user).select_related("tenant").order_by("tenant__name")
    tenant = getattr(request, "tenant", None)
    return {
        "gateway_url": settings.GATEWAY_URL,
        "current_tenant": tenant,
        "current_membership": getattr(request, "membership", None),
        "user_memberships": memberships,
        # The chart bundle is built separately (frontend/dist); pages work without it.
        "platform_js": bool(finders.find("platform.js")),
        "platform_css": bool(finders.find("platform.css")),
        "billing_banners": billing_banners(tenant) if tenant is not None and user.is_authenticated else [],
    }


def _month_bounds(now: datetime) -> tuple[datetime, datetime]:
    start = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return start, (start + timedelta(days=32)).replace(day=1)


def _money(amount, currency: str) -> str:
    return f"{amount:,.2f} {currency.upper()}"


def billing_banners(tenant: Tenant, *, now: datetime | None = None) -> list[dict]:
    """What every page says about the tenant's billing standing: a failed payment, and the
    spend limit reached this month. One query (correlated subqueries on the tenant's row):
    it runs on every page."""
    now = now or timezone.now()
    month, next_month = _month_bounds(now)
    account = BillingAccount.objects.filter(tenant_id=OuterRef("pk"))
    reached = SpendAlert.unscoped.filter(tenant_id=OuterRef("pk"), period=f"{month:%Y%m}", threshold=100)
    invoice = Invoice.unscoped.filter(tenant_id=OuterRef("pk"), period_start=month.date())
    row = (Tenant.objects.filter(pk=tenant.pk).annotate(
        past_due_since=Subquery(account.values("past_due_since")[:1]),
        spend_limit=Subquery(account.values("spend_limit")[:1]),
        enforcement=Subquery(account.values("spend_limit_enforcement")[:1]),
        reached_spent=Subquery(reached.values("spent")[:1]),
        currency=Subquery(invoice.values("currency")[:1]),
    ).values("past_due_since", "spend_limit", "enforcement", "reached_spent", "currency").first())
    if row is None:
        return []
    banners = []
    if row["past_due_since"] is not None:
        refused_from = row["past_due_since"] + timedelta(seconds=settings.BILLING_PAST_DUE_GRACE_S)
        verb = "are refused since" if refused_from <= now else "will be refused from"
        banners.append({"kind": "past_due", "level": "error", "text": (
            f"Payment failed on {row['past_due_since']:%Y-%m-%d %H:%M} UTC; requests {verb} "
            f"{refused_from:%Y-%m-%d %H:%M} UTC — update your payment method.")})
    # Shown while the limit that was reached still holds: raising or removing it ends the refusal.
    limit = row["spend_limit"]
    if row["reached_spent"] is not None and limit is not None and row["reached_spent"] >= limit:
        currency = row["currency"] or "usd"
        if row["enforcement"] == Enforcement.HARD:
            banners.append({"kind": "spend_limit", "level": "error", "text": (
                f"The monthly spend limit of {_money(limit, currency)} is reached: requests are refused until "
                f"{next_month:%Y-%m-%d} 00:00 UTC, or until an owner raises the limit.")})
        else:
            banners.append({"kind": "spend_limit", "level": "warning", "text": (
                f"The monthly spend limit of {_money(limit, currency)} is reached. It is soft: requests still go "
                f"through.")})
    return banners

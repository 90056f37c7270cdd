"""Spend alerts: a tenant's spend passing 50, 80 and 100% of its monthly spend limit.

The spend is the ledger's, exact: the month's rating (the live draft's total, base fee
included), never the gateway's estimate. Each threshold is raised at most once per tenant
and month: the SpendAlert row is the proof, and its unique constraint settles two checks
that run at once (the second insert fails and raises nothing). The email goes out after
commit, to the billing account's email or else to the tenant's owners; the portal lists
the rows."""
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.invoicing import month_rating, month_start
from billing.models import BillingAccount, SpendAlert
from tenants.models import Membership, Role, Tenant

THRESHOLDS = (50, 80, 100)


def spend_alerts_check(*, tenant: Tenant, now: datetime | None = None) -> list[SpendAlert]:
    """Raise the thresholds this month's exact spend has reached and that were not raised
    yet; the alerts raised now (emailed once this commits)."""
    now = now or timezone.now()
    account = BillingAccount.objects.filter(tenant=tenant).first()
    if account is None or account.spend_limit is None:
        return []
    rating = month_rating(tenant=tenant, period_start=month_start(now), now=now)
    return spend_alerts_raise(tenant=tenant, account=account, spent=rating.total, currency=rating.currency, now=now)


def spend_alerts_raise(*, tenant: Tenant, account: BillingAccount, spent: Decimal, currency: str,
                       now: datetime) -> list[SpendAlert]:
    """The alerts for `spent` against the account's limit, given the month's exact spend
    (spend_alerts_check, or the minute's refresh that has just rated the month)."""
    limit = account.spend_limit
    if limit is None or spent <= 0:
        return []
    period = now.strftime("%Y%m")
    reached = [t for t in THRESHOLDS if spent * 100 >= limit * t]
    if not reached:
        return []
    done = set(SpendAlert.objects.for_tenant(tenant).filter(period=period).values_list("threshold", flat=True))
    raised = []
    with transaction.atomic():
        for threshold in reached:
            if threshold in done:
                continue
            try:
                with transaction.atomic():
                    alert = SpendAlert.objects.for_tenant(tenant).create(
                        tenant=tenant, period=period, threshold=threshold, spent=spent.quantize(Decimal("0.01")),
                        spend_limit=limit)
            except IntegrityError:  # raised meanwhile by another check
                continue
            raised.append(alert)
        if raised:
            recipients = _recipients(tenant=tenant, account=account)
            SpendAlert.unscoped.filter(pk__in=[a.pk for a in raised]).update(emailed_to=", ".join(recipients))
            for alert in raised:
                alert.emailed_to = ", ".join(recipients)
            transaction.on_commit(lambda: _email(tenant=tenant, alerts=raised, recipients=recipients,
                                                 currency=currency, enforcement=account.spend_limit_enforcement))
    return raised


def _recipients(*, tenant: Tenant, account: BillingAccount) -> list[str]:
    if account.email:
        return [account.email]
    return sorted(set(Membership.objects.for_tenant(tenant).filter(role=Role.OWNER).exclude(user__email="")
                      .values_list("user__email", flat=True)))


def _email(*, tenant: Tenant, alerts: list[SpendAlert], recipients: list[str], currency: str,
           enforcement: str) -> None:
    if not recipients:
        return
    top = max(alerts, key=lambda a: a.threshold)
    money = f"{top.spent} {currency.upper()}"
    limit = f"{top.spend_limit} {currency.upper()}"
    if top.threshold >= 100:
        consequence = ("Inference requests are refused until the next month or until an owner raises the limit."
                       if enforcement == "hard" else "Requests are still served: the limit is soft.")
    else:
        consequence = "Requests are served as usual."
    send_mail(f"{tenant.name}: {top.threshold}% of the monthly spend limit reached",
              f"{tenant.name} has spent {money} this month ({top.period[:4]}-{top.period[4:]}), "
              f"{top.threshold}% of its spend limit of {limit}. {consequence}\n\n"
              f"See the Billing page: {settings.PORTAL_URL}/billing/", None, recipients, fail_silently=True)

"""What the invoicing tests share: a plan whose tiers give hand-computable amounts, usage
events written straight into the ledger, and hours rolled up as beat would."""
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from billing.models import Price, PriceVersion, UsageEvent
from billing.rollups import usage_rollup_hour
from tenants.models import Plan

JAN = datetime(2026, 1, 1, tzinfo=UTC)
# Per 1,000 requests: the first request of a month is free, the next two cost 5 per 1,000
# (0.005 each), every one after 2.5 per 1,000 (0.0025). CPU: the first second is free,
# then 0.0125 a second. GPU compute has no price: free.
REQUESTS_TIERS = [{"up_to": "0.002", "unit_price": "5"}, {"up_to": None, "unit_price": "2.5"}]
CPU_TIERS = [{"up_to": None, "unit_price": "0.0125"}]


def plan_with_prices(slug: str = "metered", *, base_fee: str = "10.00", effective_from: datetime = JAN) -> Plan:
    plan = Plan.objects.create(name=slug.title(), slug=slug)
    version = PriceVersion.objects.create(plan=plan, effective_from=effective_from, currency="usd",
                                          base_fee=Decimal(base_fee))
    Price.objects.create(version=version, component="requests", free_allowance=Decimal("0.001"),
                         tiers=REQUESTS_TIERS)
    Price.objects.create(version=version, component="compute_cpu", free_allowance=Decimal(1), tiers=CPU_TIERS)
    return plan


def event(tenant, at: datetime, *, deployment=None, compute_ms: float = 1000, status: int = 200) -> UsageEvent:
    return UsageEvent.unscoped.create(
        tenant=tenant, request_id=uuid.uuid4(), deployment=deployment,
        deployment_name=deployment.name if deployment else "gone", status=status, endpoint="infer",
        latency_ms=3, upstream_ms=compute_ms, compute_ms=compute_ms, occurred_at=at)


def roll(*moments: datetime) -> None:
    for moment in moments:
        usage_rollup_hour(hour=moment)


def requests_cost(count: int) -> Decimal:
    """The exact cost of a month's first `count` requests under REQUESTS_TIERS."""
    return sum((Decimal(0) if n == 0 else Decimal("0.005") if n <= 2 else Decimal("0.0025") for n in range(count)),
               Decimal(0))


def cpu_cost(seconds: Decimal) -> Decimal:
    return max(Decimal(0), seconds - 1) * Decimal("0.0125")

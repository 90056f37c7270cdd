"""A tenant's billing as the portal shows it, built through the real services: prices on its
plan (and new ones from next month), usage of three deployments (two on CPU, one on GPU)
last month and this month, last month's invoice finalized with a credit note, a late event
of last month that lands on this month's draft as a dated adjustment, and the live draft."""
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.utils import timezone

from billing.invoicing import credit_note_create, invoice_draft_refresh, invoice_finalize, month_start
from billing.models import Invoice, Price, PriceVersion, UsageEvent
from billing.rollups import usage_rollup_hour
from tenants.models import Plan, Tenant
from tenants.quotas import tenant_plan_set
from workers.models import Deployment, DeploymentState

# Per component: the free allowance a month, and the graduated tiers beyond it.
PRICES = {
    "requests": ("0.001", [{"up_to": "1", "unit_price": "0.50"}, {"up_to": None, "unit_price": "0.40"}]),
    "compute_cpu": ("60", [{"up_to": "10", "unit_price": "0.02"}, {"up_to": None, "unit_price": "0.01"}]),
    "compute_gpu": ("0", [{"up_to": "100", "unit_price": "0.10"}, {"up_to": None, "unit_price": "0.08"}]),
    "reserved_memory": ("10", [{"up_to": "720", "unit_price": "0.02"}, {"up_to": None, "unit_price": "0.015"}]),
}
BASE_FEE = Decimal("10.00")
NEXT_BASE_FEE = Decimal("12.00")
CPU_MS = 30_000
GPU_MS = 5_000


@dataclass
class Billing:
    tenant: Tenant
    plan: Plan
    deployments: dict[str, Deployment]
    finalized: Invoice
    draft: Invoice
    late_event: UsageEvent
    now: datetime


def _month(moment: datetime) -> datetime:
    first = month_start(moment)
    return datetime(first.year, first.month, 1, tzinfo=UTC)


def _version(plan: Plan, effective_from: datetime, base_fee: Decimal, factor: Decimal = Decimal(1)) -> PriceVersion:
    version = PriceVersion.objects.create(plan=plan, effective_from=effective_from, currency="usd", base_fee=base_fee)
    for component, (allowance, tiers) in PRICES.items():
        Price.objects.create(version=version, component=component, free_allowance=Decimal(allowance), tiers=[
            {**tier, "unit_price": str(Decimal(tier["unit_price"]) * factor)} for tier in tiers])
    return version


def _call(tenant: Tenant, deployment: Deployment, at: datetime, compute_ms: float) -> UsageEvent:
    return UsageEvent.unscoped.create(
        tenant=tenant, request_id=uuid.uuid4(), deployment=deployment, deployment_name=deployment.name,
        status=200, endpoint="infer", latency_ms=compute_ms + 2, upstream_ms=compute_ms + 1, compute_ms=compute_ms,
        occurred_at=at)


def billing_built(tenant: Tenant, model_version, *, slug: str = "metered") -> Billing:
    now = timezone.now()
    this_month = _month(now)
    last_month = _month(this_month - timedelta(days=1))
    next_month = _month(this_month + timedelta(days=32))
    plan = Plan.objects.create(name="Metered", slug=slug)
    _version(plan, last_month, BASE_FEE)
    _version(plan, next_month, NEXT_BASE_FEE, factor=Decimal("1.25"))
    tenant_plan_set(tenant=tenant, plan=plan)
    deployments = {name: Deployment.unscoped.create(tenant=tenant, name=name, model_version=model_version,
                                                    state=DeploymentState.READY, hardware=hardware)
                   for name, hardware in (("digits", "cpu"), ("digits-pipeline", "cpu"), ("vision", "gpu"))}

    # Last month: finalized, then a credit note.
    last = last_month + timedelta(days=2, hours=10)
    for _ in range(3):
        _call(tenant, deployments["digits"], last, CPU_MS)
    _call(tenant, deployments["vision"], last, GPU_MS)
    usage_rollup_hour(hour=last)
    previous = invoice_draft_refresh(tenant=tenant, period_start=last_month.date(), now=now)
    finalized = invoice_finalize(invoice_id=previous.pk, now=now)
    credit_note_create(invoice=finalized, amount=Decimal("1.00"), reason="Goodwill for the outage of the 3rd")

    # A call of last month that arrives now: an adjustment on this month's draft.
    late_at = last_month + timedelta(days=4, hours=15)
    late_event = _call(tenant, deployments["digits"], late_at, CPU_MS)
    usage_rollup_hour(hour=late_at)

    # This month: yesterday (when the month has had one) and a few minutes ago.
    moments = sorted({max(this_month, now - timedelta(days=1, minutes=10)),
                      max(this_month, now - timedelta(minutes=5))})
    for at in moments:
        _call(tenant, deployments["digits"], at, CPU_MS)
        _call(tenant, deployments["digits"], at, CPU_MS)
        _call(tenant, deployments["digits-pipeline"], at, CPU_MS)
        _call(tenant, deployments["vision"], at, GPU_MS)
        usage_rollup_hour(hour=at)
    draft = invoice_draft_refresh(tenant=tenant, period_start=this_month.date(), now=now)
    return Billing(tenant=tenant, plan=plan, deployments=deployments, finalized=finalized, draft=draft,
                   late_event=late_event, now=now)

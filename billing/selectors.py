from django.db.models import Avg, Count, Q, Sum

from billing.models import UsageEvent
from tenants.models import Tenant


def usage_recent(*, tenant: Tenant, limit: int = 50):
    return UsageEvent.objects.for_tenant(tenant).order_by("-occurred_at")[:limit]


def usage_summary(*, tenant: Tenant) -> dict:
    totals = UsageEvent.objects.for_tenant(tenant).aggregate(
        requests=Count("pk"),
        errors=Count("pk", filter=Q(status__gte=400)),
        bytes_in=Sum("bytes_in"),
        bytes_out=Sum("bytes_out"),
        avg_latency_ms=Avg("latency_ms"),
    )
    per_deployment = list(
        UsageEvent.objects.for_tenant(tenant).values("deployment_name")
        .annotate(requests=Count("pk"), errors=Count("pk", filter=Q(status__gte=400)), avg_latency_ms=Avg("latency_ms"))
        .order_by("-requests")
    )
    return {
        "total_requests": totals["requests"],
        "errors": totals["errors"],
        "bytes_in": totals["bytes_in"] or 0,
        "bytes_out": totals["bytes_out"] or 0,
        "avg_latency_ms": round(totals["avg_latency_ms"], 3) if totals["avg_latency_ms"] is not None else None,
        "by_deployment": per_deployment,
    }

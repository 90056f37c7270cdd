from datetime import UTC, timedelta

from django.db.models import Avg, Count, Q, Sum
from django.db.models.functions import TruncMinute
from django.utils import timezone

from billing.models import UsageEvent
from tenants.models import Tenant


def usage_recent(*, tenant: Tenant, limit: int | None = 50, deployment_name: str | None = None):
    events = UsageEvent.objects.for_tenant(tenant).select_related("api_key").order_by("-occurred_at", "-pk")
    if deployment_name:
        events = events.filter(deployment_name=deployment_name)
    return events[:limit] if limit else events


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


def usage_timeseries(*, tenant: Tenant, minutes: int = 60) -> list[dict]:
    """Requests and errors per minute over the last `minutes` minutes (the current one
    included), oldest first. Minutes without requests are zeros, so a chart's x axis is time."""
    end = timezone.now().replace(second=0, microsecond=0)
    start = end - timedelta(minutes=minutes - 1)
    rows = (
        UsageEvent.objects.for_tenant(tenant)
        .filter(occurred_at__gte=start, occurred_at__lt=end + timedelta(minutes=1))
        .annotate(minute=TruncMinute("occurred_at", tzinfo=UTC)).values("minute")
        .annotate(requests=Count("pk"), errors=Count("pk", filter=Q(status__gte=400)))
    )
    counts = {row["minute"]: row for row in rows}
    points = []
    for offset in range(minutes):
        minute = start + timedelta(minutes=offset)
        row = counts.get(minute, {"requests": 0, "errors": 0})
        points.append({"minute": minute, "requests": row["requests"], "errors": row["errors"]})
    return points

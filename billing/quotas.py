"""Usage against limits: the quota overview the portal and the API show, and the
gateway's monthly counters rebuilt from metered usage when Redis lost them."""
from datetime import timedelta

from django.db.models import Count, Sum
from django.utils import timezone

from billing.models import UsageEvent
from billing.spend import spend_counted
from gateway.contract.keys import use_counter_name
from gateway.contract.scripts import lua_source
from graph_editor.models import MLModel
from tenants.directory import redis_client
from tenants.models import REQUEST_LIMITS, ApiKey, Quota, Tenant
from tenants.quotas import quota_effective, scope_consumption, usage_month
from workers.capacity import deployment_instances_reserved, model_memory_estimate_mb
from workers.models import ACTIVE_STATES, Deployment


def quota_overview(*, tenant: Tenant) -> dict:
    """What the tenant may use and what it uses now, for the portal and the API."""
    effective = quota_effective(tenant=tenant)
    deployments = list(Deployment.objects.for_tenant(tenant).filter(state__in=ACTIVE_STATES)
                       .select_related("model_version", "graph_version"))
    dep_quotas = {q.deployment_id: q for q in Quota.objects.filter(deployment__in=deployments)}
    keys = list(ApiKey.objects.for_tenant(tenant).filter(revoked_at__isnull=True))
    key_quotas = {q.api_key_id: q for q in Quota.objects.filter(api_key__in=keys)}
    request_fields = list(REQUEST_LIMITS)
    return {
        "plan": effective["plan"].slug if effective["plan"] else None,
        "plan_name": effective["plan"].name if effective["plan"] else None,
        "tenant": {
            "limits": effective["values"], "source": effective["source"],
            "usage": {
                **scope_consumption(f"t:{tenant.pk}"),
                "models": MLModel.objects.for_tenant(tenant).count(),
                "deployments": len(deployments),
                "model_memory_mb": sum(model_memory_estimate_mb(size_bytes=d.target_size_bytes,
                                                                instances=deployment_instances_reserved(d))
                                       for d in deployments),
            },
        },
        "deployments": [
            {"id": d.pk, "name": d.name,
             "limits": {f: getattr(dep_quotas[d.pk], f) for f in request_fields} if d.pk in dep_quotas else None,
             "usage": scope_consumption(f"d:{d.pk}")}
            for d in deployments
        ],
        "keys": [
            {"id": k.pk, "label": k.label, "prefix": k.prefix,
             "limits": {f: getattr(key_quotas[k.pk], f) for f in request_fields} if k.pk in key_quotas else None,
             "usage": scope_consumption(f"k:{k.pk}")}
            for k in keys
        ],
    }


def quota_counters_restore() -> int:
    """Rebuild this month's gateway counters that Redis lost (a restart without
    persistence) from the metered usage in PostgreSQL; counters present are left alone.
    A tenant's counter gets its spend back too: its billable events at list prices
    (billing/spend.py). Returns the number of scopes restored."""
    now = timezone.now()
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    billable = UsageEvent.unscoped.filter(occurred_at__gte=start, status=200, endpoint="infer")
    r = redis_client()
    month = usage_month()
    restored = 0
    for column, prefix in (("tenant_id", "t"), ("deployment_id", "d"), ("api_key_id", "k")):
        for row in billable.exclude(**{f"{column}__isnull": True}).values(column).annotate(
                req=Count("id"), compute=Sum("compute_ms")):
            name = use_counter_name(f"{prefix}:{row[column]}", month)
            if r.exists(name):
                continue
            spend = ""
            if prefix == "t":
                tenant = Tenant.objects.select_related("plan").get(pk=row[column])
                spend = spend_counted(tenant=tenant, start=start, end=now + timedelta(minutes=1))
            restored += r.eval(lua_source("counter_restore"), 1, name, row["req"], int((row["compute"] or 0) * 1000),
                               spend)
    return restored

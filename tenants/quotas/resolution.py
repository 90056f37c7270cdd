"""What a tenant's, a deployment's or a key's limits resolve to, and the gateway's form of them."""
import math

from django.db.models import OuterRef, Subquery
from django.db.models.functions import Coalesce

from tenants.models import (
    DEPLOY_LIMITS,
    REQUEST_LIMITS,
    ApiKey,
    Enforcement,
    Plan,
    Quota,
    QuotaLevel,
    Tenant,
)

LIMIT_FIELDS = REQUEST_LIMITS + DEPLOY_LIMITS
# Fields whose value is a number limit (the enforcement fields ride along with theirs).
NUMERIC_LIMITS = ("rate_per_second", "rate_burst", "max_concurrency", "monthly_requests", "monthly_compute_seconds",
                  "max_payload_bytes", "max_models", "max_deployments", "max_instances", "max_model_memory_mb",
                  "max_batch_size")
ENFORCEMENT_OF = {"monthly_requests": "monthly_requests_enforcement",
                  "monthly_compute_seconds": "monthly_compute_enforcement"}
# The request-path limits that count something; the enforcement fields say only how a
# budget is enforced, and the tenant's budget is enforced on top of its deployments' and
# keys', whatever they say.
CEILING_LIMITS = ("rate_per_second", "rate_burst", "max_concurrency", "monthly_requests", "monthly_compute_seconds",
                  "max_payload_bytes")


def plan_default() -> Plan | None:
    return Plan.objects.filter(is_default=True).first()


def tenant_plan(tenant: Tenant) -> Plan | None:
    return tenant.plan if tenant.plan_id else plan_default()


def quota_values(quota: Quota | None) -> dict:
    if quota is None:
        return {field: None for field in LIMIT_FIELDS}
    return {field: getattr(quota, field) for field in LIMIT_FIELDS}


def quota_effective_value(*, tenant_id: int, field: str):
    """One of a tenant's effective limits (its own value, else its plan's, else the default
    plan's) in one query, for paths that need one limit fast (a cold start's config)."""
    own = Quota.objects.filter(level=QuotaLevel.TENANT, tenant_id=OuterRef("pk")).values(field)[:1]
    default_plan = Plan.objects.filter(is_default=True).values("pk")[:1]
    inherited = Quota.objects.filter(plan_id=Coalesce(OuterRef("plan_id"), Subquery(default_plan))).values(field)[:1]
    row = (Tenant.objects.filter(pk=tenant_id).annotate(own=Subquery(own), inherited=Subquery(inherited))
           .values("own", "inherited").first())
    if row is None:
        return None
    return row["own"] if row["own"] is not None else row["inherited"]


def quota_effective(*, tenant: Tenant) -> dict:
    """The tenant's limits: each field from the tenant's quota if set there, else its plan's.
    `source` says, per limit, which level it came from."""
    plan = tenant_plan(tenant)
    plan_quota = Quota.objects.filter(plan=plan).first() if plan else None
    tenant_quota = Quota.objects.filter(level=QuotaLevel.TENANT, tenant=tenant).first()
    own, inherited = quota_values(tenant_quota), quota_values(plan_quota)
    values, source = {}, {}
    for field in NUMERIC_LIMITS + ("allowed_hardware",):
        if own[field] is not None:
            values[field], source[field] = own[field], QuotaLevel.TENANT.value
            if field in ENFORCEMENT_OF:
                values[ENFORCEMENT_OF[field]] = own[ENFORCEMENT_OF[field]]
        else:
            values[field] = inherited[field]
            source[field] = QuotaLevel.PLAN.value if inherited[field] is not None else None
            if field in ENFORCEMENT_OF:
                values[ENFORCEMENT_OF[field]] = inherited[ENFORCEMENT_OF[field]] or Enforcement.HARD
    return {"plan": plan, "values": values, "source": source}


def tenant_ceilings(*, tenant: Tenant) -> dict:
    """The tenant's request-path limits, which its own deployment and key limits may not
    exceed; a rate without a burst allows one second's worth, as the gateway does."""
    values = quota_effective(tenant=tenant)["values"]
    ceilings = {field: values[field] for field in CEILING_LIMITS}
    if ceilings["rate_per_second"] is not None and ceilings["rate_burst"] is None:
        ceilings["rate_burst"] = max(1, math.floor(ceilings["rate_per_second"]))
    return ceilings


def scope_limits(*, target) -> dict:
    """The request-path limits set on one deployment or API key (null: none of its own)."""
    lookup = {"api_key": target} if isinstance(target, ApiKey) else {"deployment": target}
    # Without a quota of its own nothing is limited, and the enforcement fields read as a
    # new quota's (hard), as quota_effective reads them: never null, which they cannot be set to.
    values = quota_values(Quota.objects.filter(**lookup).first() or Quota())
    return {field: values[field] for field in REQUEST_LIMITS}


def quota_gateway_limits(values: dict) -> dict:
    """The gateway's form of request-path limits (absent = no limit)."""
    mapping = {}
    if values.get("rate_per_second") is not None:
        mapping["rate"] = repr(float(values["rate_per_second"]))
        if values.get("rate_burst"):
            mapping["burst"] = str(values["rate_burst"])
    if values.get("max_concurrency") is not None:
        mapping["conc"] = str(values["max_concurrency"])
    if values.get("monthly_requests") is not None:
        mapping["mreq"] = str(values["monthly_requests"])
        mapping["mreq_soft"] = "1" if values.get("monthly_requests_enforcement") == Enforcement.SOFT else "0"
    if values.get("monthly_compute_seconds") is not None:
        mapping["mcs"] = repr(float(values["monthly_compute_seconds"]))
        mapping["mcs_soft"] = "1" if values.get("monthly_compute_enforcement") == Enforcement.SOFT else "0"
    if values.get("max_payload_bytes") is not None:
        mapping["payload"] = str(values["max_payload_bytes"])
    return mapping


def quota_gateway_limits_all() -> dict[str, dict]:
    """Every scope's gateway limits, for rebuilding the projection."""
    scopes = {}
    for tenant in Tenant.objects.all():
        scopes[f"t:{tenant.pk}"] = quota_gateway_limits(quota_effective(tenant=tenant)["values"])
    for quota in Quota.objects.filter(level=QuotaLevel.DEPLOYMENT):
        scopes[f"d:{quota.deployment_id}"] = quota_gateway_limits(quota_values(quota))
    for quota in Quota.objects.filter(level=QuotaLevel.KEY):
        scopes[f"k:{quota.api_key_id}"] = quota_gateway_limits(quota_values(quota))
    return scopes

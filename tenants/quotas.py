"""Quotas: the limits set on plans, tenants, deployments and API keys, how they combine,
the deploy-time checks of the control plane, and the projection the gateway enforces;
the writes the Django admin, the REST API and the portal share (a plan and its limits, a
tenant narrowing the limits of its own deployments and keys) go through quota_set.

Resolution. A tenant's own value of a limit overrides its plan's; an empty value at both
means no limit. Deployment and key limits count that deployment's or that key's requests
and apply on top of the tenant's, so the effective limit of a request is the tightest of
the three. Deploy-time limits exist at the plan and tenant levels only.

Request-path limits reach the gateway through Redis (gw:lim:<scope>, see
tenants/directory.py) as soon as the change commits; the gateway reads them on every
admission, so a change is in force for the next request."""
import math

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Q

from gateway.contract.errors import (
    NotFound,
    PlatformError,
    validation_message,
)
from gateway.contract.keys import INFLIGHT_PREFIX, USE_PREFIX
from tenants.directory import directory_put_limits, redis_client
from tenants.models import (
    DEPLOY_LIMITS,
    REQUEST_LIMITS,
    ApiKey,
    Enforcement,
    Hardware,
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
# Runtime memory of one model instance beyond its weights (the runner process and its session).
# The request-path limits that count something; the enforcement fields say only how a
# budget is enforced, and the tenant's budget is enforced on top of its deployments' and
# keys', whatever they say.
CEILING_LIMITS = ("rate_per_second", "rate_burst", "max_concurrency", "monthly_requests", "monthly_compute_seconds",
                  "max_payload_bytes")


# ---- resolution -----------------------------------------------------------------------

def plan_default() -> Plan | None:
    return Plan.objects.filter(is_default=True).first()


def tenant_plan(tenant: Tenant) -> Plan | None:
    return tenant.plan if tenant.plan_id else plan_default()


def quota_values(quota: Quota | None) -> dict:
    return {field: getattr(quota, field) for field in LIMIT_FIELDS} if quota else {field: None for field in LIMIT_FIELDS}


def quota_effective_value(*, tenant_id: int, field: str):
    """One of a tenant's effective limits (its own value, else its plan's, else the default
    plan's) in one query, for paths that need one limit fast (a cold start's config)."""
    from django.db.models import OuterRef, Subquery
    from django.db.models.functions import Coalesce

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
            values[field], source[field] = inherited[field], QuotaLevel.PLAN.value if inherited[field] is not None else None
            if field in ENFORCEMENT_OF:
                values[ENFORCEMENT_OF[field]] = inherited[ENFORCEMENT_OF[field]] or Enforcement.HARD
    return {"plan": plan, "values": values, "source": source}


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


# Publishers take this PostgreSQL advisory lock, platform-wide, while they read the committed
# limits and write them to Redis: two changes committed close together then cannot publish
# out of order (the later read always writes last). Publishing is rare: admin actions.
PUBLISH_LOCK = 0x71756F74


def _project(quota_level: str, *, plan=None, tenant=None, deployment_id=None, api_key_id=None) -> None:
    """Publish the limits a change affects (after commit)."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [PUBLISH_LOCK])
        _publish(quota_level, plan=plan, tenant=tenant, deployment_id=deployment_id, api_key_id=api_key_id)


def _publish(quota_level: str, *, plan=None, tenant=None, deployment_id=None, api_key_id=None) -> None:
    if quota_level == QuotaLevel.PLAN:
        plan = Plan.objects.filter(pk=plan.pk).first() or plan
        tenants = Tenant.objects.filter(plan=plan)
        if plan.is_default:
            tenants = Tenant.objects.filter(Q(plan=plan) | Q(plan__isnull=True))
        for each in tenants:
            directory_put_limits(f"t:{each.pk}", quota_gateway_limits(quota_effective(tenant=each)["values"]))
    elif quota_level == QuotaLevel.TENANT:
        directory_put_limits(f"t:{tenant.pk}", quota_gateway_limits(quota_effective(tenant=tenant)["values"]))
    elif quota_level == QuotaLevel.DEPLOYMENT:
        directory_put_limits(f"d:{deployment_id}", quota_gateway_limits(
            quota_values(Quota.objects.filter(deployment_id=deployment_id).first())))
    else:
        directory_put_limits(f"k:{api_key_id}", quota_gateway_limits(
            quota_values(Quota.objects.filter(api_key_id=api_key_id).first())))


def tenant_limits_publish(*, tenant: Tenant) -> None:
    """Publish a tenant's resolved limits (on creation, or when its plan changes)."""
    transaction.on_commit(lambda: _project(QuotaLevel.TENANT, tenant=tenant))


# ---- changes --------------------------------------------------------------------------

def _clean_values(level: str, values: dict) -> dict:
    unknown = set(values) - set(LIMIT_FIELDS)
    if unknown:
        raise PlatformError(f"Unknown limit(s): {', '.join(sorted(unknown))}.", code="invalid_limit")
    if level in (QuotaLevel.DEPLOYMENT, QuotaLevel.KEY):
        deploy_time = sorted(f for f in DEPLOY_LIMITS if values.get(f) is not None)
        if deploy_time:
            raise PlatformError(f"{', '.join(deploy_time)} can only be set on a plan or a tenant.",
                                code="invalid_limit")
    cleaned = {}
    for field, value in values.items():
        if field in ENFORCEMENT_OF.values():
            if value not in Enforcement.values:
                raise PlatformError(f"{field} must be one of {', '.join(Enforcement.values)}.", code="invalid_limit")
        elif field == "allowed_hardware":
            if value is not None and (not isinstance(value, list) or not value
                                      or not set(value) <= set(Hardware.values)):
                raise PlatformError(f"allowed_hardware must be a non-empty list of {', '.join(Hardware.values)}.",
                                    code="invalid_limit")
            value = sorted(set(value)) if value is not None else None
        elif value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise PlatformError(f"{field} must be a number or null.", code="invalid_limit")
            if field not in ("rate_per_second", "monthly_compute_seconds") and value != int(value):
                raise PlatformError(f"{field} must be a whole number.", code="invalid_limit")
            if value <= 0 and field != "monthly_requests" and field != "monthly_compute_seconds":
                raise PlatformError(f"{field} must be greater than zero (leave it empty for no limit).",
                                    code="invalid_limit")
            if value < 0:
                raise PlatformError(f"{field} cannot be negative.", code="invalid_limit")
        cleaned[field] = value
    return cleaned


def quota_set(*, level: str, target, values: dict) -> Quota:
    """Create or change the quota of a plan, tenant, deployment or key; only the given
    fields change (null clears a limit). In force on the gateway once committed."""
    values = _clean_values(level, values)
    lookup = {"plan": target} if level == QuotaLevel.PLAN else {
        QuotaLevel.TENANT: {"tenant": target, "level": QuotaLevel.TENANT},
        QuotaLevel.DEPLOYMENT: {"deployment": target},
        QuotaLevel.KEY: {"api_key": target},
    }.get(level)
    if lookup is None:
        raise PlatformError(f"Unknown quota level {level!r}.", code="invalid_limit")
    with transaction.atomic():
        quota = _quota_locked(level=level, target=target, lookup=lookup)
        for field, value in values.items():
            setattr(quota, field, value)
        if quota.rate_burst is not None and quota.rate_per_second is None:
            raise PlatformError("rate_burst needs rate_per_second.", code="invalid_limit")
        try:
            quota.full_clean()
        except ValidationError as exc:
            # What the columns cannot hold, e.g. a limit beyond their range.
            raise PlatformError(validation_message(exc), code="invalid_limit") from None
        quota.save()
        _on_commit_project(quota)
    return quota


def _quota_locked(*, level: str, target, lookup: dict) -> Quota:
    """The target's quota row, locked until the transaction ends; created without limits
    if it has none. Two first changes of one target both find no row: the second insert
    waits for the first transaction and, once that commits, fails on the one-quota-per-
    target constraint, so that change locks the committed row instead and applies on top."""
    quota = Quota.objects.select_for_update().filter(**lookup).first()
    if quota is not None:
        return quota
    quota = Quota(level=level, **{k: v for k, v in lookup.items() if k != "level"})
    if level in (QuotaLevel.DEPLOYMENT, QuotaLevel.KEY):
        quota.tenant_id = target.tenant_id
    try:
        with transaction.atomic():
            quota.save()
    except IntegrityError:
        existing = Quota.objects.select_for_update().filter(**lookup).first()
        if existing is None:
            raise
        return existing
    return quota


def quota_clear(*, quota: Quota) -> None:
    with transaction.atomic():
        _on_commit_project(quota)
        quota.delete()


def _on_commit_project(quota: Quota) -> None:
    level, plan, tenant = quota.level, quota.plan, quota.tenant
    deployment_id, api_key_id = quota.deployment_id, quota.api_key_id
    transaction.on_commit(lambda: _project(level, plan=plan, tenant=tenant, deployment_id=deployment_id,
                                           api_key_id=api_key_id))


def tenant_plan_set(*, tenant: Tenant, plan: Plan | None) -> Tenant:
    with transaction.atomic():
        tenant.plan = plan
        tenant.save(update_fields=["plan"])
        tenant_limits_publish(tenant=tenant)
    return tenant


def plan_save(*, plan: Plan, is_default: bool, limits: dict | None = None) -> Plan:
    """Create or change a plan and, when given, its limits (only the given fields change).

    Making a plan the default takes the flag from the previous default, and tenants
    without a plan get the new default's limits; the default plan cannot simply stop
    being the default, or those tenants would be left without limits."""
    with transaction.atomic():
        previous = Plan.objects.select_for_update().filter(is_default=True).first()
        is_previous = previous is not None and previous.pk == plan.pk
        if is_previous and not is_default:
            raise PlatformError(f"{plan.name} is the default plan: make another plan the default instead.",
                                code="invalid_plan")
        moved = is_default and not is_previous
        if moved and previous is not None:
            Plan.objects.filter(pk=previous.pk).update(is_default=False)
        plan.is_default = is_default
        try:
            plan.full_clean()
        except ValidationError as exc:
            raise PlatformError(validation_message(exc), code="invalid_plan") from None
        plan.save()
        # Every plan has its quota row, so that its limits can be listed and changed alike.
        quota_set(level=QuotaLevel.PLAN, target=plan, values=limits or {})
        if moved:
            for tenant in Tenant.objects.filter(plan__isnull=True):
                tenant_limits_publish(tenant=tenant)
    return plan


def _number(value) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,}"


def tenant_ceilings(*, tenant: Tenant) -> dict:
    """The tenant's request-path limits, which its own deployment and key limits may not
    exceed; a rate without a burst allows one second's worth, as the gateway does."""
    values = quota_effective(tenant=tenant)["values"]
    ceilings = {field: values[field] for field in CEILING_LIMITS}
    if ceilings["rate_per_second"] is not None and ceilings["rate_burst"] is None:
        ceilings["rate_burst"] = max(1, math.floor(ceilings["rate_per_second"]))
    return ceilings


def quota_set_within_tenant(*, tenant: Tenant, target, values: dict) -> Quota:
    """A tenant's own limits on one of its deployments or API keys. They may only be
    tighter than (or equal to) the tenant's, which apply on top of them anyway: a tenant
    narrows its limits here, it never raises them."""
    level = QuotaLevel.KEY if isinstance(target, ApiKey) else QuotaLevel.DEPLOYMENT
    if target.tenant_id != tenant.pk:
        raise NotFound("No such deployment or API key in this tenant.")
    ceilings = tenant_ceilings(tenant=tenant)
    for field in CEILING_LIMITS:
        value, ceiling = values.get(field), ceilings[field]
        if (ceiling is not None and isinstance(value, int | float) and not isinstance(value, bool)
                and value > ceiling):
            raise PlatformError(f"{field} can be at most {_number(ceiling)}, your tenant's limit; asked for "
                                f"{_number(value)}.", code="limit_above_tenant")
    return quota_set(level=level, target=target, values=values)


def scope_limits(*, target) -> dict:
    """The request-path limits set on one deployment or API key (null: none of its own)."""
    lookup = {"api_key": target} if isinstance(target, ApiKey) else {"deployment": target}
    # Without a quota of its own nothing is limited, and the enforcement fields read as a
    # new quota's (hard), as quota_effective reads them: never null, which they cannot be set to.
    values = quota_values(Quota.objects.filter(**lookup).first() or Quota())
    return {field: values[field] for field in REQUEST_LIMITS}


# ---- consumption ----------------------------------------------------------------------

def usage_month() -> str:
    from django.utils import timezone

    return timezone.now().strftime("%Y%m")


def scope_consumption(scope: str) -> dict:
    """This month's billable requests and compute seconds of a scope, and its requests in
    flight, as the gateway counts them."""
    import time

    r = redis_client()
    pipe = r.pipeline(transaction=False)
    pipe.hmget(f"{USE_PREFIX}{scope}:{usage_month()}", "req", "cus")
    pipe.zcount(f"{INFLIGHT_PREFIX}{scope}", f"({int(time.time() * 1_000_000)}", "+inf")
    (req, cus), in_flight = pipe.execute()
    return {"requests": int(req or 0), "compute_seconds": round(int(cus or 0) / 1e6, 3), "in_flight": in_flight}

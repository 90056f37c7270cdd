"""The writes that the quota management surfaces (the Django admin, the REST API, the
portal) share, on top of the services in tenants.quotas: a plan and its limits, and a
tenant's own limits on its deployments and keys. They call quota_set and friends, so
every change reaches the gateway when it commits."""
import math

from django.core.exceptions import ValidationError
from django.db import transaction

from portal.errors import NotFound, PlatformError
from tenants.models import REQUEST_LIMITS, ApiKey, Plan, Quota, QuotaLevel, Tenant
from tenants.quotas import quota_effective, quota_set, quota_values, tenant_limits_publish

# The request-path limits that count something; the enforcement fields say only how a
# budget is enforced, and the tenant's budget is enforced on top of its deployments' and
# keys', whatever they say.
CEILING_LIMITS = ("rate_per_second", "rate_burst", "max_concurrency", "monthly_requests", "monthly_compute_seconds",
                  "max_payload_bytes")


def validation_message(exc: ValidationError) -> str:
    """A Django ValidationError as one readable sentence, field names included."""
    if hasattr(exc, "error_dict"):
        return " ".join(f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items())
    return " ".join(exc.messages)


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
    values = quota_values(Quota.objects.filter(**lookup).first())
    return {field: values[field] for field in REQUEST_LIMITS}

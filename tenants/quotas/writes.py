"""The changes of plans and quotas that the Django admin, the REST API and the portal
share. Each writes in one transaction, records itself in the audit log, and publishes the
limits it affects once it commits."""
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from gateway.contract.errors import NotFound, PlatformError, validation_message
from tenants.audit import audit_record
from tenants.models import ApiKey, Plan, Quota, QuotaLevel, Tenant
from tenants.quotas.publish import quota_limits_publish, tenant_limits_publish
from tenants.quotas.resolution import quota_values
from tenants.quotas.validation import limits_check_within_tenant, limits_clean


def quota_set(*, level: str, target, values: dict) -> Quota:
    """Create or change the quota of a plan, tenant, deployment or key; only the given
    fields change (null clears a limit). In force on the gateway once committed."""
    values = limits_clean(level, values)
    lookup = {"plan": target} if level == QuotaLevel.PLAN else {
        QuotaLevel.TENANT: {"tenant": target, "level": QuotaLevel.TENANT},
        QuotaLevel.DEPLOYMENT: {"deployment": target},
        QuotaLevel.KEY: {"api_key": target},
    }.get(level)
    if lookup is None:
        raise PlatformError(f"Unknown quota level {level!r}.", code="invalid_limit")
    with transaction.atomic():
        quota = _quota_locked(level=level, target=target, lookup=lookup)
        before = quota_values(quota)
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
        audit_record(event_type="quota.changed", target=quota, old=before, new=quota_values(quota))
        quota_limits_publish(quota=quota)
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
        quota_limits_publish(quota=quota)
        audit_record(event_type="quota.cleared", target=quota,
                     old={field: value for field, value in quota_values(quota).items() if value is not None})
        quota.delete()


def quota_set_within_tenant(*, tenant: Tenant, target, values: dict) -> Quota:
    """A tenant's own limits on one of its deployments or API keys. They may only be
    tighter than (or equal to) the tenant's, which apply on top of them anyway: a tenant
    narrows its limits here, it never raises them."""
    level = QuotaLevel.KEY if isinstance(target, ApiKey) else QuotaLevel.DEPLOYMENT
    if target.tenant_id != tenant.pk:
        raise NotFound("No such deployment or API key in this tenant.")
    limits_check_within_tenant(tenant=tenant, values=values)
    return quota_set(level=level, target=target, values=values)


def tenant_plan_set(*, tenant: Tenant, plan: Plan | None) -> Tenant:
    with transaction.atomic():
        previous = Tenant.objects.filter(pk=tenant.pk).values_list("plan__slug", flat=True).first()
        tenant.plan = plan
        tenant.save(update_fields=["plan"])
        audit_record(event_type="tenant.plan_changed", target=tenant, old={"plan": previous},
                     new={"plan": plan.slug if plan else None})
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
            audit_record(event_type="plan.changed", target=previous, old={"is_default": True},
                         new={"is_default": False})
        plan.is_default = is_default
        try:
            plan.full_clean()
        except ValidationError as exc:
            raise PlatformError(validation_message(exc), code="invalid_plan") from None
        before = Plan.objects.filter(pk=plan.pk).values("name", "slug", "is_default").first() if plan.pk else None
        plan.save()
        audit_record(event_type="plan.changed" if before else "plan.created", target=plan, old=before,
                     new={"name": plan.name, "slug": plan.slug, "is_default": plan.is_default})
        # Every plan has its quota row, so that its limits can be listed and changed alike.
        quota_set(level=QuotaLevel.PLAN, target=plan, values=limits or {})
        if moved:
            for tenant in Tenant.objects.filter(plan__isnull=True):
                tenant_limits_publish(tenant=tenant)
    return plan

"""The projection of limits into Redis: after a change commits, the limits of every scope
it affects are read back from PostgreSQL and written to gw:lim:<scope> (tenants/directory.py)."""
from django.db import connection, transaction
from django.db.models import Q

from tenants.directory import directory_put_limits
from tenants.models import Plan, Quota, QuotaLevel, Tenant
from tenants.quotas.resolution import quota_effective, quota_gateway_limits, quota_values

# Publishers take this PostgreSQL advisory lock, platform-wide, while they read the committed
# limits and write them to Redis: two changes committed close together then cannot publish
# out of order (the later read always writes last). Publishing is rare: admin actions.
PUBLISH_LOCK = 0x71756F74


def tenant_limits_publish(*, tenant: Tenant) -> None:
    """Publish a tenant's resolved limits (on creation, or when its plan changes)."""
    transaction.on_commit(lambda: _project(QuotaLevel.TENANT, tenant=tenant))


def quota_limits_publish(*, quota: Quota) -> None:
    """Publish the limits a change of this quota affects, once the change commits; what
    is needed is read now, so that the quota may be deleted in the meantime."""
    level, plan, tenant = quota.level, quota.plan, quota.tenant
    deployment_id, api_key_id = quota.deployment_id, quota.api_key_id
    transaction.on_commit(lambda: _project(level, plan=plan, tenant=tenant, deployment_id=deployment_id,
                                           api_key_id=api_key_id))


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

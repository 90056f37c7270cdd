"""Quotas: the limits set on plans, tenants, deployments and API keys, how they combine,
and the projection the gateway enforces; the writes the Django admin, the REST API and
the portal share (a plan and its limits, a tenant narrowing the limits of its own
deployments and keys) go through quota_set.

Resolution. A tenant's own value of a limit overrides its plan's; an empty value at both
means no limit. Deployment and key limits count that deployment's or that key's requests
and apply on top of the tenant's, so the effective limit of a request is the tightest of
the three. Deploy-time limits exist at the plan and tenant levels only; workers/capacity.py
checks them.

Request-path limits reach the gateway through Redis (gw:lim:<scope>, see
tenants/directory.py) as soon as the change commits; the gateway reads them on every
admission, so a change is in force for the next request.

  resolution.py  the limit fields, effective values and the gateway's form of them
  validation.py  what a limit may be, and a tenant's ceiling on its own deployments and keys
  writes.py      the services that change plans and quotas
  publish.py     the projection of limits into Redis, after commit
  usage.py       a scope's consumption this month, as the gateway counts it
  receivers.py   answers to the tenants core's signals (a new tenant's limits published)"""
from tenants.quotas.publish import PUBLISH_LOCK, tenant_limits_publish
from tenants.quotas.resolution import (
    CEILING_LIMITS,
    ENFORCEMENT_OF,
    LIMIT_FIELDS,
    NUMERIC_LIMITS,
    plan_default,
    quota_effective,
    quota_effective_value,
    quota_gateway_limits,
    quota_gateway_limits_all,
    quota_values,
    scope_limits,
    tenant_ceilings,
    tenant_plan,
)
from tenants.quotas.usage import scope_consumption, usage_month
from tenants.quotas.writes import (
    plan_save,
    quota_clear,
    quota_set,
    quota_set_within_tenant,
    tenant_plan_set,
)

__all__ = [
    "CEILING_LIMITS",
    "ENFORCEMENT_OF",
    "LIMIT_FIELDS",
    "NUMERIC_LIMITS",
    "PUBLISH_LOCK",
    "plan_default",
    "plan_save",
    "quota_clear",
    "quota_effective",
    "quota_effective_value",
    "quota_gateway_limits",
    "quota_gateway_limits_all",
    "quota_set",
    "quota_set_within_tenant",
    "quota_values",
    "scope_consumption",
    "scope_limits",
    "tenant_ceilings",
    "tenant_limits_publish",
    "tenant_plan",
    "tenant_plan_set",
    "usage_month",
]

"""What a limit may be: the checks every change of a quota passes, and the ceiling a
tenant's own limits on its deployments and keys may not exceed."""
import math

from gateway.contract.errors import PlatformError
from tenants.models import DEPLOY_LIMITS, Enforcement, Hardware, QuotaLevel, Tenant
from tenants.quotas.resolution import CEILING_LIMITS, ENFORCEMENT_OF, LIMIT_FIELDS, tenant_ceilings


def limits_clean(level: str, values: dict) -> dict:
    """The given limits as a quota of `level` stores them, or a PlatformError naming the
    first one that cannot be."""
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


def limits_check_within_tenant(*, tenant: Tenant, values: dict) -> None:
    """Refuse (limit_above_tenant) any value above the tenant's own limit of that field."""
    ceilings = tenant_ceilings(tenant=tenant)
    for field in CEILING_LIMITS:
        value, ceiling = values.get(field), ceilings[field]
        if (ceiling is not None and isinstance(value, int | float) and not isinstance(value, bool)
                and value > ceiling):
            raise PlatformError(f"{field} can be at most {_number(ceiling)}, your tenant's limit; asked for "
                                f"{_number(value)}.", code="limit_above_tenant")


def _number(value) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,}"

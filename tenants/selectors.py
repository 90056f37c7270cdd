from tenants.models import ApiKey, Membership, Tenant


def membership_for(*, user, tenant_id: int | None = None) -> Membership | None:
    """The user's membership in tenant_id, or their first one when none is named."""
    if not user.is_authenticated:
        return None
    qs = Membership.unscoped.select_related("tenant").filter(user=user).order_by("created_at")
    if tenant_id is not None:
        return qs.filter(tenant_id=tenant_id).first()
    return qs.first()


def api_key_list(*, tenant: Tenant):
    return ApiKey.objects.for_tenant(tenant).order_by("-created_at")

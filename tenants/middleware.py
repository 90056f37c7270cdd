from tenants.selectors import membership_for

SESSION_TENANT_KEY = "tenant_id"


class TenantMiddleware:
    """Attach the signed-in user's current tenant (and their membership in it)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.membership = None
        request.tenant = None
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            membership = membership_for(user=user, tenant_id=request.session.get(SESSION_TENANT_KEY))
            if membership is None:
                membership = membership_for(user=user)
            if membership is not None:
                request.membership = membership
                request.tenant = membership.tenant
        return self.get_response(request)

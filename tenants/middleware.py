from tenants.audit import audit_acting
from tenants.models import Surface
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


class AuditSurfaceMiddleware:
    """Changes made while handling a request are recorded as made by the signed-in user
    through the surface the request came in by: the admin, the REST API (whose views name
    the API key, once DRF has authenticated it: portal.api_base.TenantAPIView) or a portal
    page. The actor is reset when the response is returned, so nothing carries over to the
    next request served by the same thread."""

    # The prefixes portal/urls.py mounts the admin and the API under.
    SURFACES = (("/admin/", Surface.ADMIN), ("/api/", Surface.API))

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        surface = next((surface for prefix, surface in self.SURFACES if request.path_info.startswith(prefix)),
                       Surface.PAGE)
        with audit_acting(surface=surface, user=getattr(request, "user", None)):
            return self.get_response(request)

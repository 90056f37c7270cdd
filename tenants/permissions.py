from rest_framework import permissions

from tenants.models import ApiKey, Scope


def request_tenant(request):
    """The tenant a REST request acts for: the API key's, or the signed-in user's."""
    if isinstance(request.auth, ApiKey):
        return request.auth.tenant
    return getattr(request._request, "tenant", None)


class IsTenantMember(permissions.BasePermission):
    """A `manage`-scoped key, or a signed-in member of a tenant. Writes by session
    users need the owner or admin role."""

    message = "Sign in, or use an API key with the 'manage' scope."

    def has_permission(self, request, view):
        if isinstance(request.auth, ApiKey):
            if Scope.MANAGE not in request.auth.scopes:
                self.message = "This API key lacks the 'manage' scope."
                return False
            return True
        membership = getattr(request._request, "membership", None)
        if membership is None:
            return False
        if request.method not in permissions.SAFE_METHODS and not membership.can_manage:
            self.message = "Your role in this tenant is read-only (member); ask an owner or admin."
            return False
        return True

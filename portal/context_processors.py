from django.conf import settings
from django.contrib.staticfiles import finders

from tenants.models import Membership


def platform(request):
    user = getattr(request, "user", None)
    memberships = []
    if user is not None and user.is_authenticated:
        memberships = Membership.unscoped.filter(user=user).select_related("tenant").order_by("tenant__name")
    return {
        "gateway_url": settings.GATEWAY_URL,
        "current_tenant": getattr(request, "tenant", None),
        "current_membership": getattr(request, "membership", None),
        "user_memberships": memberships,
        # The chart bundle is built separately (frontend/dist); pages work without it.
        "platform_js": bool(finders.find("platform.js")),
        "platform_css": bool(finders.find("platform.css")),
    }

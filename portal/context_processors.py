from django.conf import settings


def platform(request):
    return {
        "gateway_url": settings.GATEWAY_URL,
        "current_tenant": getattr(request, "tenant", None),
        "current_membership": getattr(request, "membership", None),
    }

from django.shortcuts import render

from billing.selectors import usage_recent, usage_summary
from portal.views.access import tenant_page


@tenant_page
def usage(request):
    return render(request, "portal/usage.html", {
        "summary": usage_summary(tenant=request.tenant),
        "recent": usage_recent(tenant=request.tenant, limit=100),
    })

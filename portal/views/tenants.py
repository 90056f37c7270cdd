from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from tenants.middleware import SESSION_TENANT_KEY
from tenants.selectors import membership_for


@login_required
@require_POST
def tenant_switch(request):
    """Make another of the user's tenants the current one; a tenant they do not belong to does not exist."""
    try:
        tenant_id = int(request.POST.get("tenant", ""))
    except ValueError:
        raise Http404("No such tenant.") from None
    if membership_for(user=request.user, tenant_id=tenant_id) is None:
        raise Http404("No such tenant.")
    request.session[SESSION_TENANT_KEY] = tenant_id
    return redirect("dashboard")

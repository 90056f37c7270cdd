"""What every portal page shares: who may see it, who may write, and where to go back to."""
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme

from gateway.contract.errors import NotFound

READ_ONLY_MESSAGE = "Your role in this tenant is read-only (member); ask an owner or admin to make changes."


def tenant_page(view):
    """Signed in, with a tenant. Every POST is a write and needs the owner or admin role.
    A NotFound from a selector or service is a 404: another tenant's objects do not exist here."""

    @login_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if request.tenant is None:
            return render(request, "portal/no_tenant.html", status=403)
        if request.method == "POST" and not request.membership.can_manage:
            raise PermissionDenied(READ_ONLY_MESSAGE)
        try:
            return view(request, *args, **kwargs)
        except NotFound as exc:
            raise Http404(exc.message) from exc

    return wrapper


def redirect_back(request, fallback: str) -> HttpResponseRedirect:
    """Back to the page a form came from, never to another site."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return redirect(target)
    return redirect(fallback)

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from gateway.contract.errors import NotFound, PlatformError
from portal.forms import ApiKeyForm
from portal.views.access import tenant_page
from tenants.selectors import api_key_list
from tenants.services import api_key_create, api_key_revoke

# The new secret rides in the session for exactly one page load after the redirect, so
# that reloading the page neither shows it again nor creates a second key.
SESSION_NEW_KEY = "portal_new_api_key"


@tenant_page
def keys(request):
    form = ApiKeyForm()
    if request.method == "POST":
        form = ApiKeyForm(request.POST)
        if form.is_valid():
            try:
                api_key, secret = api_key_create(tenant=request.tenant, label=form.cleaned_data["label"],
                                                 scopes=form.cleaned_data["scopes"], actor=request.user)
            except PlatformError as exc:
                form.add_error(None, exc.message)
            else:
                request.session[SESSION_NEW_KEY] = {"id": api_key.pk, "tenant": request.tenant.pk, "secret": secret}
                return redirect("keys")
    new_key = request.session.pop(SESSION_NEW_KEY, None)
    if new_key and new_key["tenant"] != request.tenant.pk:
        new_key = None
    return render(request, "portal/keys.html", {
        "keys": api_key_list(tenant=request.tenant), "form": form, "new_key": new_key,
    }, status=400 if form.errors else 200)


@tenant_page
@require_POST
def revoke(request, key_id: int):
    try:
        api_key = api_key_revoke(tenant=request.tenant, key_id=key_id)
    except NotFound:
        raise
    except PlatformError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Revoked {api_key.label} ({api_key.prefix}…): "
                                  "calls with it are refused from now on.")
    return redirect("keys")

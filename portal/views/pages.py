"""Server-rendered portal pages. Views parse and authorize; services do the work."""
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from billing.selectors import usage_recent, usage_summary
from graph_editor.selectors import model_get, model_list
from graph_editor.services import model_delete, model_version_upload
from portal.errors import NotFound, PlatformError
from portal.events import deployment_payload
from portal.forms import ApiKeyForm, DeployForm, ModelUploadForm
from tenants.middleware import SESSION_TENANT_KEY
from tenants.selectors import api_key_list, membership_for
from tenants.services import api_key_create, api_key_revoke
from workers.selectors import deployment_get, deployment_list
from workers.services import deployment_create, deployment_undeploy

FLASH_SECRET = "new_api_key"


def tenant_page(view):
    """Signed in, with a tenant; writes (POST) need the owner or admin role; NotFound is a 404."""

    @login_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if request.tenant is None:
            return render(request, "portal/no_tenant.html", status=403)
        if request.method == "POST" and not request.membership.can_manage:
            raise PermissionDenied("Your role in this tenant is read-only.")
        try:
            return view(request, *args, **kwargs)
        except NotFound as exc:
            raise Http404(exc.message) from exc

    return wrapper


def back(request, fallback: str) -> HttpResponseRedirect:
    return redirect(request.POST.get("next") or fallback)


@tenant_page
def dashboard(request):
    tenant = request.tenant
    deployments = list(deployment_list(tenant=tenant))
    summary = usage_summary(tenant=tenant)
    today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    recent = list(usage_recent(tenant=tenant, limit=8))
    return render(request, "portal/dashboard.html", {
        "models_count": model_list(tenant=tenant).count(),
        "deployments": deployments,
        "ready_count": sum(d.state == "ready" for d in deployments),
        "keys_count": api_key_list(tenant=tenant).filter(revoked_at=None).count(),
        "summary": summary,
        "requests_today": usage_recent(tenant=tenant, limit=None).filter(occurred_at__gte=today).count(),
        "recent": recent,
        "example": deployments[0].name if deployments else "my-model",
    })


@tenant_page
def models(request):
    form = ModelUploadForm()
    if request.method == "POST":
        form = ModelUploadForm(request.POST, request.FILES)
        if form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                version = model_version_upload(
                    tenant=request.tenant, model_name=form.cleaned_data["name"], chunks=upload.chunks(),
                    filename=upload.name, description=form.cleaned_data["description"], actor=request.user,
                )
            except PlatformError as exc:
                form.add_error("file" if exc.code != "invalid_name" else "name", exc.message)
            else:
                messages.success(request, f"Uploaded {version.model.name} version {version.version}.")
                return redirect("model-detail", model_id=version.model_id)
    return render(request, "portal/models.html", {"models": model_list(tenant=request.tenant), "form": form})


@tenant_page
def model_detail(request, model_id: int):
    model = model_get(tenant=request.tenant, model_id=model_id)
    versions = list(model.versions.order_by("-version").select_related("created_by"))
    return render(request, "portal/model_detail.html", {
        "model": model, "versions": versions, "latest": versions[0] if versions else None,
        "deployments": [d for d in deployment_list(tenant=request.tenant) if d.model_version.model_id == model.pk],
    })


@tenant_page
@require_POST
def model_remove(request, model_id: int):
    model = model_get(tenant=request.tenant, model_id=model_id)
    try:
        model_delete(tenant=request.tenant, model_id=model.pk)
    except PlatformError as exc:
        messages.error(request, exc.message)
        return redirect("model-detail", model_id=model.pk)
    messages.success(request, f"Deleted model {model.name}.")
    return redirect("models")


@tenant_page
def deployments(request):
    if request.method == "POST":
        form = DeployForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Choose a model version to deploy.")
            return back(request, reverse("deployments"))
        try:
            deployment = deployment_create(tenant=request.tenant, model_version_id=form.cleaned_data["model_version"],
                                           name=form.cleaned_data["name"], actor=request.user)
        except NotFound:
            raise
        except PlatformError as exc:
            messages.error(request, exc.message)
            return back(request, reverse("deployments"))
        messages.success(request, f"Deploying {deployment.name}: it is ready when its state turns green.")
        return redirect("deployments")
    items = list(deployment_list(tenant=request.tenant))
    return render(request, "portal/deployments.html", {
        "deployments": items,
        "history": [d for d in deployment_list(tenant=request.tenant, include_history=True) if not d.is_active][:10],
        "payloads": [deployment_payload(d) for d in items],
    })


@tenant_page
@require_POST
def deployment_remove(request, deployment_id: int):
    deployment = deployment_get(tenant=request.tenant, deployment_id=deployment_id)
    deployment_undeploy(tenant=request.tenant, deployment_id=deployment.pk)
    messages.success(request, f"Undeploying {deployment.name}.")
    return redirect("deployments")


@tenant_page
def keys(request):
    form = ApiKeyForm()
    if request.method == "POST":
        form = ApiKeyForm(request.POST)
        if form.is_valid():
            try:
                api_key, raw = api_key_create(tenant=request.tenant, label=form.cleaned_data["label"],
                                              scopes=form.cleaned_data["scopes"], actor=request.user)
            except PlatformError as exc:
                form.add_error(None, exc.message)
            else:
                request.session[FLASH_SECRET] = {"id": api_key.pk, "key": raw}
                return redirect("keys")
    new_key = request.session.pop(FLASH_SECRET, None)
    return render(request, "portal/keys.html", {"keys": api_key_list(tenant=request.tenant), "form": form,
                                                "new_key": new_key})


@tenant_page
@require_POST
def key_revoke(request, key_id: int):
    api_key = api_key_revoke(tenant=request.tenant, key_id=key_id)
    messages.success(request, f"Revoked key {api_key.label} ({api_key.prefix}…). Calls with it now fail.")
    return redirect("keys")


@tenant_page
def usage(request):
    return render(request, "portal/usage.html", {
        "summary": usage_summary(tenant=request.tenant),
        "recent": usage_recent(tenant=request.tenant, limit=100),
    })


@login_required
@require_POST
def tenant_switch(request):
    try:
        tenant_id = int(request.POST.get("tenant", ""))
    except ValueError:
        raise Http404("No such tenant.") from None
    if membership_for(user=request.user, tenant_id=tenant_id) is None:
        raise Http404("No such tenant.")
    request.session[SESSION_TENANT_KEY] = tenant_id
    return redirect("dashboard")



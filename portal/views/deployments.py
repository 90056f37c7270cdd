"""The Deployments page: each deployment's state (live), where it runs, how it scales and
how often a call found it cold; owners and admins deploy, change the scaling settings,
unload and undeploy here, members read."""
from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from gateway.contract.errors import NotFound, PlatformError
from graph_editor.selectors import model_list
from portal.forms import DeployForm, DeploymentSettingsForm
from portal.views.access import redirect_back, tenant_page
from tenants.models import Hardware
from tenants.quotas import quota_effective
from workers.models import Deployment, DeploymentState, KeepAlive
from workers.selectors import coldstart_stats, deployment_get, deployment_list
from workers.services import (
    deployment_create,
    deployment_retry,
    deployment_scale_to_zero,
    deployment_settings_update,
    deployment_undeploy,
)

SETTINGS = list(DeploymentSettingsForm.base_fields)


def _duration(seconds: int) -> str:
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _ms(value: float) -> str:
    return f"{value:,.0f} ms" if value >= 10 else f"{value:.1f} ms"


def _percent(share: float) -> str:
    percent = 100 * share
    return "<0.1%" if 0 < percent < 0.1 else f"{percent:.1f}".removesuffix(".0") + "%"


def _keepalive(deployment: Deployment) -> dict:
    if deployment.min_instances:
        note = f"kept warm: never below {deployment.min_instances}"
    elif deployment.keepalive == KeepAlive.FIXED:
        note = f"unloads after {_duration(deployment.keepalive_idle_s)} idle"
    else:
        note = "learns its idle times"
    return {"policy": "Fixed" if deployment.keepalive == KeepAlive.FIXED else "Adaptive", "note": note}


def _coldstarts(stats: dict) -> dict:
    return {"requests": stats["requests"], "cold_starts": stats["cold_starts"], "share": _percent(stats["share"]),
            "p50": None if stats["p50_ms"] is None else _ms(stats["p50_ms"]),
            "p99": None if stats["p99_ms"] is None else _ms(stats["p99_ms"])}


def _settings_form(deployment: Deployment, failed: dict) -> DeploymentSettingsForm:
    if deployment.pk in failed:
        return failed[deployment.pk]
    initial = {field: getattr(deployment, field) for field in SETTINGS}
    initial["preferred_batch_sizes"] = ", ".join(str(size) for size in deployment.preferred_batch_sizes)
    return DeploymentSettingsForm(prefix=f"d{deployment.pk}", initial=initial)


def _page(request, *, failed: dict | None = None, status: int = 200):
    """`failed`: a deployment's settings form that was refused, shown open with its errors."""
    items = list(deployment_list(tenant=request.tenant))
    stats = coldstart_stats(tenant=request.tenant, deployment_ids=[d.pk for d in items])
    can_manage = request.membership.can_manage
    rows = [{
        "deployment": d,
        "placement": [r.server.name for r in d.replicas_ready()],
        "keepalive": _keepalive(d),
        "coldstarts": _coldstarts(stats[d.pk]),
        "form": _settings_form(d, failed or {}) if can_manage else None,
    } for d in items]
    limits = quota_effective(tenant=request.tenant)["values"]
    allowed = limits["allowed_hardware"]
    return render(request, "portal/deployments.html", {
        "rows": rows,
        "history": [d for d in deployment_list(tenant=request.tenant, include_history=True) if not d.is_active][:10],
        "models": [m for m in model_list(tenant=request.tenant) if m.versions.all()],
        "form": DeployForm(),
        "hardware_choices": [{"value": value, "label": label, "allowed": allowed is None or value in allowed}
                             for value, label in Hardware.choices],
        "max_instances": limits["max_instances"],
        "max_batch_size": limits["max_batch_size"],
    }, status=status)


@tenant_page
def deployments(request):
    if request.method == "POST":
        return _deploy(request)
    return _page(request)


def _deploy(request):
    form = DeployForm(request.POST)
    if not form.is_valid():
        if "model_version" in form.errors:
            messages.error(request, "Choose a model version to deploy.")
        for field, errors in form.errors.items():
            if field != "model_version":
                messages.error(request, f"{form.fields[field].label or field.capitalize()}: {' '.join(errors)}")
        return redirect_back(request, reverse("deployments"))
    data = form.cleaned_data
    try:
        deployment = deployment_create(tenant=request.tenant, model_version_id=data["model_version"], name=data["name"],
                                       instances=data["instances"] or 1, hardware=data["hardware"] or Hardware.CPU,
                                       max_batch_size=data["max_batch_size"], actor=request.user)
    except NotFound:
        raise
    except PlatformError as exc:
        messages.error(request, exc.message)
        return redirect_back(request, reverse("deployments"))
    messages.success(request, f"Deploying {deployment.name}. Its state below turns Ready once Triton has loaded it; "
                              "no need to reload the page.")
    return redirect("deployments")


@tenant_page
@require_POST
def settings_update(request, deployment_id: int):
    deployment = deployment_get(tenant=request.tenant, deployment_id=deployment_id)
    form = DeploymentSettingsForm(request.POST, prefix=f"d{deployment.pk}")
    if form.is_valid():
        try:
            deployment_settings_update(tenant=request.tenant, deployment_id=deployment.pk, **form.cleaned_data)
        except NotFound:
            raise
        except PlatformError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Saved the settings of {deployment.name}.")
            return redirect("deployments")
    return _page(request, failed={deployment.pk: form}, status=400)


@tenant_page
@require_POST
def unload(request, deployment_id: int):
    deployment = deployment_get(tenant=request.tenant, deployment_id=deployment_id)
    try:
        deployment = deployment_scale_to_zero(tenant=request.tenant, deployment_id=deployment.pk)
    except NotFound:
        raise
    except PlatformError as exc:
        messages.error(request, exc.message)
    else:
        if deployment.state == DeploymentState.COLD:
            messages.info(request, f"{deployment.name} is already scaled to zero.")
        else:
            messages.success(request, f"Unloading {deployment.name}: it turns Scaled to zero, and its next call "
                                      "loads it again.")
    return redirect("deployments")


@tenant_page
@require_POST
def undeploy(request, deployment_id: int):
    deployment = deployment_get(tenant=request.tenant, deployment_id=deployment_id)
    try:
        deployment_undeploy(tenant=request.tenant, deployment_id=deployment.pk)
    except NotFound:
        raise
    except PlatformError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Undeploying {deployment.name}: calls to it now fail with 404.")
    return redirect("deployments")


@tenant_page
@require_POST
def retry(request, deployment_id: int):
    deployment = deployment_get(tenant=request.tenant, deployment_id=deployment_id)
    try:
        deployment_retry(tenant=request.tenant, deployment_id=deployment.pk)
    except NotFound:
        raise
    except PlatformError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Loading {deployment.name} again.")
    return redirect("deployments")

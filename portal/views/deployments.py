from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from graph_editor.selectors import model_list
from portal.errors import NotFound, PlatformError
from portal.forms import DeployForm
from portal.views.access import redirect_back, tenant_page
from tenants.models import Hardware
from tenants.quotas import quota_effective
from workers.selectors import deployment_get, deployment_list
from workers.services import deployment_create, deployment_retry, deployment_undeploy


@tenant_page
def deployments(request):
    if request.method == "POST":
        return _deploy(request)
    items = list(deployment_list(tenant=request.tenant))
    limits = quota_effective(tenant=request.tenant)["values"]
    allowed = limits["allowed_hardware"]
    return render(request, "portal/deployments.html", {
        "deployments": items,
        "history": [d for d in deployment_list(tenant=request.tenant, include_history=True) if not d.is_active][:10],
        "models": [m for m in model_list(tenant=request.tenant) if m.versions.all()],
        "form": DeployForm(),
        "hardware_choices": [{"value": value, "label": label, "allowed": allowed is None or value in allowed}
                             for value, label in Hardware.choices],
        "max_instances": limits["max_instances"],
        "max_batch_size": limits["max_batch_size"],
    })


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

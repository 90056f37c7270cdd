from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from gateway.contract.errors import NotFound, PlatformError
from graph_editor.selectors import model_get, model_list
from graph_editor.services import model_delete, model_version_upload
from portal.forms import ModelUploadForm
from portal.views.access import tenant_page
from workers.selectors import deployment_list

# Service error codes that are about the name field rather than the file.
NAME_ERRORS = {"invalid_name"}


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
                form.add_error("name" if exc.code in NAME_ERRORS else "file", exc.message)
            else:
                messages.success(request, f"Uploaded {version.model.name} version {version.version}. "
                                          "Deploy it below to call it through the gateway.")
                return redirect("model-detail", model_id=version.model_id)
    return render(request, "portal/models.html", {"models": model_list(tenant=request.tenant), "form": form},
                  status=400 if form.errors else 200)


@tenant_page
def detail(request, model_id: int):
    model = model_get(tenant=request.tenant, model_id=model_id)
    versions = list(model.versions.order_by("-version").select_related("created_by"))
    return render(request, "portal/model_detail.html", {
        "model": model,
        "versions": versions,
        "latest": versions[0] if versions else None,
        "deployments": [d for d in deployment_list(tenant=request.tenant)
                        if not d.is_graph and d.model_version.model_id == model.pk],
    })


@tenant_page
@require_POST
def delete(request, model_id: int):
    model = model_get(tenant=request.tenant, model_id=model_id)
    try:
        model_delete(tenant=request.tenant, model_id=model.pk)
    except NotFound:
        raise
    except PlatformError as exc:
        messages.error(request, exc.message)
        return redirect("model-detail", model_id=model.pk)
    messages.success(request, f"Deleted model {model.name} and all its versions.")
    return redirect("models")

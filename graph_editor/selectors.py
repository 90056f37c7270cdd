from gateway.contract.errors import NotFound
from graph_editor.models import MLModel, ModelVersion
from tenants.models import Tenant


def model_list(*, tenant: Tenant):
    return MLModel.objects.for_tenant(tenant).prefetch_related("versions").order_by("name")


def model_get(*, tenant: Tenant, model_id: int) -> MLModel:
    model = MLModel.objects.for_tenant(tenant).filter(pk=model_id).first()
    if model is None:
        raise NotFound("No such model in this tenant.")
    return model


def model_version_get(*, tenant: Tenant, version_id: int) -> ModelVersion:
    version = ModelVersion.objects.for_tenant(tenant).select_related("model").filter(pk=version_id).first()
    if version is None:
        raise NotFound("No such model version in this tenant.")
    return version

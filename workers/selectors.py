from portal.errors import NotFound
from tenants.models import Tenant
from workers.models import ACTIVE_STATES, Deployment, TritonServer


def deployment_list(*, tenant: Tenant, include_history: bool = False):
    qs = Deployment.objects.for_tenant(tenant).select_related("model_version__model", "server")
    if not include_history:
        qs = qs.filter(state__in=ACTIVE_STATES)
    return qs.order_by("-created_at")


def deployment_get(*, tenant: Tenant, deployment_id: int) -> Deployment:
    deployment = (
        Deployment.objects.for_tenant(tenant).select_related("model_version__model", "server")
        .filter(pk=deployment_id).first()
    )
    if deployment is None:
        raise NotFound("No such deployment in this tenant.")
    return deployment


def deployment_active_for_model(*, tenant: Tenant, model_id: int) -> bool:
    return Deployment.objects.for_tenant(tenant).filter(
        model_version__model_id=model_id, state__in=ACTIVE_STATES
    ).exists()


def server_list():
    return TritonServer.objects.all()

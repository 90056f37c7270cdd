from django.db.models import Max

from gateway.contract.errors import NotFound
from graph_editor.models import Graph, GraphVersion, MLModel, ModelVersion
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


def graph_list(*, tenant: Tenant):
    """The tenant's graphs by name, each with `latest_version`: its highest number, or None."""
    return Graph.objects.for_tenant(tenant).annotate(latest_version=Max("versions__number")).order_by("name", "pk")


def graph_get(*, tenant: Tenant, graph_id: int) -> Graph:
    graph = graph_list(tenant=tenant).filter(pk=graph_id).first()
    if graph is None:
        raise NotFound("No such graph in this tenant.")
    return graph


def graph_version_list(*, tenant: Tenant, graph_id: int):
    """A graph's versions, newest first."""
    graph = graph_get(tenant=tenant, graph_id=graph_id)
    return GraphVersion.objects.for_tenant(tenant).filter(graph=graph).select_related("graph", "author").order_by(
        "-number")


def graph_version_get(*, tenant: Tenant, graph_id: int, number: int) -> GraphVersion:
    version = graph_version_list(tenant=tenant, graph_id=graph_id).filter(number=number).first()
    if version is None:
        raise NotFound(f"This graph has no version {number}.")
    return version

from django.db import connection
from django.db.models import Q

from gateway.contract.errors import NotFound
from graph_editor.models import ModelVersion
from tenants.models import Tenant
from workers.models import ACTIVE_STATES, Deployment, TritonServer


def deployment_list(*, tenant: Tenant, include_history: bool = False):
    qs = (Deployment.objects.for_tenant(tenant).select_related("model_version__model", "graph_version__graph")
          .prefetch_related("replica_set__server"))
    if not include_history:
        qs = qs.filter(state__in=ACTIVE_STATES)
    return qs.order_by("-created_at")


def deployment_get(*, tenant: Tenant, deployment_id: int) -> Deployment:
    deployment = (
        Deployment.objects.for_tenant(tenant).select_related("model_version__model", "graph_version__graph")
        .prefetch_related("replica_set__server").filter(pk=deployment_id).first()
    )
    if deployment is None:
        raise NotFound("No such deployment in this tenant.")
    return deployment


def deployment_active_for_model(*, tenant: Tenant, model_id: int) -> bool:
    """Whether an active deployment serves a version of the model, alone or as a step of a
    deployed graph (which names it in its spec)."""
    active = Deployment.objects.for_tenant(tenant).filter(state__in=ACTIVE_STATES)
    if active.filter(model_version__model_id=model_id).exists():
        return True
    versions = ModelVersion.objects.for_tenant(tenant).filter(model_id=model_id).values_list("pk", flat=True)
    steps = Q()
    for version in versions:
        steps |= Q(graph_version__spec__nodes__contains=[{"kind": "model", "model_version": version}])
    return bool(steps) and active.filter(steps).exists()


def server_list():
    return TritonServer.objects.all()


def coldstart_stats(*, tenant: Tenant, deployment_ids: list[int]) -> dict[int, dict]:
    """Per deployment, from its metered inferences: cold starts, their share of the
    inference requests and the p50/p99 time those requests were held for the load."""
    empty = {"requests": 0, "cold_starts": 0, "share": 0.0, "p50_ms": None, "p99_ms": None}
    result = {pk: dict(empty) for pk in deployment_ids}
    if not deployment_ids:
        return result
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT deployment_id, count(*), count(*) FILTER (WHERE cold_start),
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY cold_start_ms) FILTER (WHERE cold_start),
                   percentile_cont(0.99) WITHIN GROUP (ORDER BY cold_start_ms) FILTER (WHERE cold_start)
            FROM billing_usageevent
            WHERE tenant_id = %s AND deployment_id = ANY(%s) AND endpoint = 'infer'
            GROUP BY deployment_id
            """,
            [tenant.pk, list(deployment_ids)],
        )
        for pk, requests, cold, p50, p99 in cursor.fetchall():
            result[pk] = {"requests": requests, "cold_starts": cold, "share": round(cold / requests, 4),
                          "p50_ms": round(p50, 1) if p50 is not None else None,
                          "p99_ms": round(p99, 1) if p99 is not None else None}
    return result

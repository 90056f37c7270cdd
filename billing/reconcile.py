"""Reconciliation of metered usage against Triton's own per-model statistics.

Triton counts the inference requests each loaded model answered successfully since it
was loaded (`inference_stats.success.count`). Every such request came through the
gateway, so the usage rows of the deployment since its replicas were loaded with status
200 on the infer endpoint must number exactly the sum over its replicas. (A replica
removed since, by eviction or a dead server, takes its count with it: reconcile right
after such a change reads short.) A difference means lost or doubled usage,
or calls that reached Triton around the gateway."""
from django.db.models import Count

from billing.models import UsageEvent
from workers.models import Deployment, DeploymentState
from workers.triton import client as triton


def usage_reconcile(*, tenant=None) -> list[dict]:
    """One line per ready deployment: Triton's count, the metered count, and whether they agree."""
    deployments = Deployment.unscoped.filter(state=DeploymentState.READY).prefetch_related("replica_set__server")
    if tenant is not None:
        deployments = deployments.filter(tenant=tenant)
    lines = []
    for deployment in deployments.order_by("tenant_id", "name"):
        replicas = deployment.replicas_ready()
        if not replicas:
            continue
        try:
            stats = [s for replica in replicas
                     for s in triton.model_statistics(replica.server.http_url, deployment.triton_name)]
        except Exception as exc:
            lines.append({"tenant": deployment.tenant_id, "deployment": deployment.name, "id": deployment.pk,
                          "triton": None, "metered": None, "agree": False, "error": str(exc)})
            continue
        served = sum(s.get("inference_stats", {}).get("success", {}).get("count", 0) for s in stats)
        since = min(replica.loaded_at for replica in replicas)
        metered = UsageEvent.unscoped.filter(
            deployment=deployment, endpoint="infer", status=200, occurred_at__gte=since,
        ).aggregate(n=Count("id"))["n"]
        lines.append({"tenant": deployment.tenant_id, "deployment": deployment.name, "id": deployment.pk,
                      "triton": served, "metered": metered, "agree": served == metered, "error": ""})
    return lines

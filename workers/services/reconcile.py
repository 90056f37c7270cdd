"""Reconcile what the database records with what the servers run, for what a lost task,
a restarted Triton or a failed load left behind."""
from django.utils import timezone

from workers import queue
from workers.models import Deployment, DeploymentState, Replica, ReplicaState, TritonServer, UnitHold
from workers.services.replicas import replicas_lost
from workers.triton import client as triton


def deployments_reconcile_run() -> list[int]:
    """Replicas recorded ready that their server no longer has loaded (a restarted Triton)
    are dropped and loaded again; deployments stuck pending or loading get their load
    queued again, and warm ones short of replicas get the missing ones."""
    requeued = []
    stale = timezone.now() - timezone.timedelta(seconds=60)
    for deployment in Deployment.unscoped.filter(state__in=[DeploymentState.PENDING, DeploymentState.LOADING],
                                                 updated_at__lt=stale):
        queue.deployment_load(deployment.pk)
        requeued.append(deployment.pk)
    for server in TritonServer.objects.filter(enabled=True, healthy=True):
        try:
            loaded = {m["name"] for m in triton.repository_index(server.http_url) if m.get("state") == "READY"}
        except triton.TritonError:
            continue
        # A graph's replica also needs every unit it holds (server#4828: an ensemble goes
        # when a composing model does, but an orchestrator would stay and fail its calls).
        holds: dict[int, set[str]] = {}
        for deployment_id, name in UnitHold.objects.filter(server=server).values_list("deployment_id", "triton_name"):
            holds.setdefault(deployment_id, set()).add(name)
        stale_replicas = [r for r in Replica.objects.filter(server=server, state=ReplicaState.READY)
                          .select_related("deployment", "server")
                          if r.deployment.triton_name not in loaded or holds.get(r.deployment_id, set()) - loaded]
        for deployment_id in replicas_lost(stale_replicas, reason=f"Server {server.name} no longer has it loaded"):
            queue.deployment_load(deployment_id)
            requeued.append(deployment_id)
    for deployment in Deployment.unscoped.filter(state=DeploymentState.READY):
        if deployment.replica_set.count() < deployment.replicas and deployment.pk not in requeued:
            queue.deployment_load(deployment.pk)
    return requeued

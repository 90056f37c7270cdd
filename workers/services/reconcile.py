"""Reconcile what the database records with what the servers run, for what a lost task,
a restarted Triton or a failed load left behind."""
from django.utils import timezone

from workers import queue
from workers.models import Deployment, DeploymentState, Replica, ReplicaState, TritonServer
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
        stale_replicas = [r for r in Replica.objects.filter(server=server, state=ReplicaState.READY)
                          .select_related("deployment", "server") if r.deployment.triton_name not in loaded]
        for deployment_id in replicas_lost(stale_replicas, reason=f"Server {server.name} no longer has it loaded"):
            queue.deployment_load(deployment_id)
            requeued.append(deployment_id)
    for deployment in Deployment.unscoped.filter(state=DeploymentState.READY):
        if deployment.replica_set.count() < deployment.replicas and deployment.pk not in requeued:
            queue.deployment_load(deployment.pk)
    return requeued

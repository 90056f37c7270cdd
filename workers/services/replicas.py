"""Replicas that stop serving: one unloaded on purpose (eviction, fewer replicas asked
for), and those a server lost (it died, or restarted without them)."""
import logging

from django.db import transaction

from workers.models import Deployment, DeploymentState, Replica, UnitHold
from workers.services.publish import deployment_publish, deployment_state_set
from workers.services.targets import replica_triton_remove

log = logging.getLogger(__name__)


def replica_remove(replica: Replica, *, reason: str) -> None:
    """Unload one replica (inside the caller's transaction). A deployment left without
    replicas is cold: its route stays and the next call wakes it."""
    deployment = Deployment.unscoped.select_for_update(of=("self",)).get(pk=replica.deployment_id)
    Replica.objects.filter(pk=replica.pk).delete()
    if not deployment.replica_set.exists() and deployment.state == DeploymentState.READY:
        deployment_state_set(deployment, DeploymentState.COLD, error="")
    else:
        deployment_publish(deployment)
    replica_triton_remove(deployment, replica.server, alive=replica.server.healthy)
    log.info("replica of %s on %s removed: %s", deployment.triton_name, replica.server.name, reason)


def replicas_lost(replicas: list[Replica], *, reason: str) -> list[int]:
    """Forget replicas that no longer serve (their server died, or restarted without the
    model); a deployment left without one turns loading. Returns the deployments to load
    again. Rows are locked in deployment order."""
    moved = []
    with transaction.atomic():
        for replica in sorted(replicas, key=lambda r: r.deployment_id):
            deployment = Deployment.unscoped.select_for_update().get(pk=replica.deployment_id)
            Replica.objects.filter(pk=replica.pk).delete()
            UnitHold.objects.filter(deployment=deployment, server=replica.server).delete()  # the server lost them
            log.warning("%s loses its replica on %s: %s", deployment.triton_name, replica.server.name, reason)
            if deployment.state not in (DeploymentState.READY, DeploymentState.LOADING):
                continue
            if deployment.replica_set.exists():
                deployment_publish(deployment)
            else:
                deployment_state_set(deployment, DeploymentState.LOADING, error=f"{reason}; loading it again")
            moved.append(deployment.pk)
    return moved

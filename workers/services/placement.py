"""Placement: which server takes a deployment's next replica, and which idle deployments
are evicted (scaled to zero) to make room on it."""
import logging

from django.conf import settings
from django.db.models import F, Q, Sum
from django.utils import timezone

from workers.models import Deployment, DeploymentState, Replica, ReplicaState, TritonServer
from workers.services.replicas import replica_remove
from workers.triton import client as triton

log = logging.getLogger(__name__)


def server_free_mb(server: TritonServer) -> int:
    used = Replica.objects.filter(server=server).aggregate(total=Sum("memory_mb"))["total"] or 0
    return server.memory_mb - used


def _evictable(server: TritonServer, exclude_deployment_id: int):
    """Replicas on `server` of deployments that may scale to zero, least recently used first."""
    idle_before = timezone.now() - timezone.timedelta(seconds=settings.EVICT_MIN_IDLE_S)
    return (Replica.objects.filter(server=server, state=ReplicaState.READY, deployment__min_instances=0,
                                   deployment__state=DeploymentState.READY)
            .exclude(deployment_id=exclude_deployment_id)
            .filter(Q(deployment__last_used_at__isnull=True) | Q(deployment__last_used_at__lt=idle_before))
            .select_related("deployment", "server")
            .order_by(F("deployment__last_used_at").asc(nulls_first=True), "pk"))


def server_pick(*, deployment: Deployment, memory_mb: int, evict: bool = True) -> TritonServer:
    """Placement: an enabled, healthy server without a replica of the deployment, with
    room for `memory_mb`, the one with the most room. When none has room, the least
    recently used idle deployments of the best candidate are evicted (scaled to zero)
    until it has. Raises TritonUnreachable when no server can take it."""
    servers = TritonServer.objects.filter(enabled=True, healthy=True).exclude(replicas__deployment=deployment)
    if deployment.hardware == "gpu":
        servers = servers.filter(gpus__gt=0)
    candidates = sorted(((server_free_mb(s), s.pk, s) for s in servers.select_for_update()), reverse=True)
    if not candidates:
        if deployment.hardware == "gpu":
            raise triton.TritonUnreachable("No healthy Triton server with a GPU is registered.")
        raise triton.TritonUnreachable(
            "No healthy Triton server is registered; start one with `manage.py triton_serve`.")
    for free, _, server in candidates:
        if free >= memory_mb:
            return server
    if evict:
        for free, _, server in candidates:
            victims, freed = [], 0
            for replica in _evictable(server, deployment.pk):
                # A victim whose row is locked (being woken or changed right now) is skipped,
                # not waited for: its own placement may be waiting for these servers' rows.
                if Deployment.unscoped.select_for_update(skip_locked=True).filter(
                        pk=replica.deployment_id).values_list("pk", flat=True).first() is None:
                    continue
                victims.append(replica)
                freed += replica.memory_mb
                if free + freed >= memory_mb:
                    for victim in victims:
                        log.info("evicting %s from %s for %s", victim.deployment.triton_name, server.name,
                                 deployment.triton_name)
                        replica_remove(victim, reason=f"evicted for {deployment.triton_name}")
                    return server
    raise triton.TritonUnreachable(
        f"No Triton server has {memory_mb} MB free for it, and no idle deployment can make room.")

"""What the Celery tasks do to a deployment in Triton: load it (placing its replicas),
wake it from zero, scale it to zero, apply new settings to its loaded replicas, fit its
replica count, unload it for good. Each is idempotent: a redelivered task does no harm.

A warm deployment has one or more replicas, each loaded on its own Triton server; a
cold one (scaled to zero) has none, and its route stays in the gateway's directory so
that a call wakes it (the gateway holds the call and queues `deployment_wake`)."""
import logging
import time

from django.db import transaction
from django.utils import timezone

from gateway.contract.errors import PlatformError
from workers.models import Deployment, DeploymentState, Replica, ReplicaState, TritonServer
from workers.services.placement import server_pick
from workers.services.publish import deployment_publish, deployment_state_set
from workers.services.replicas import replica_remove
from workers.services.reservations import warm_reservation_sync
from workers.services.servers import measured_memory_mb
from workers.services.targets import compiled_files_remove, replica_triton_load, replica_triton_remove
from workers.services.triton_config import replica_memory_mb
from workers.triton import client as triton

log = logging.getLogger(__name__)


class PlacementPending(Exception):
    """No server could take the deployment right now; the load task retries."""


def _wait_or_fail(deployment_id: int, reason: str, final_attempt: bool) -> None:
    """No server can take the deployment now: stay pending (the task retries) or, on the
    last attempt, fail with the reason."""
    with transaction.atomic():
        current = Deployment.unscoped.select_for_update().get(pk=deployment_id)
        if current.state not in (DeploymentState.PENDING, DeploymentState.LOADING):
            return
        if current.replica_set.exists():
            return
        if final_attempt:
            deployment_state_set(current, DeploymentState.FAILED, error=reason)
            return
        deployment_state_set(current, DeploymentState.PENDING, error=f"Waiting for a Triton server: {reason}")
    raise PlacementPending(reason)


def deployment_load_run(*, deployment_id: int, final_attempt: bool = True, wake: bool = False) -> None:
    """Place and load the replicas a pending or loading deployment lacks (with `wake`, a
    cold one: it turns loading in the same transaction that places it). It is ready (and
    routed) as soon as one replica is; the others follow. Ends ready, or failed with
    nothing left behind; while no server can take it, it stays pending and raises
    PlacementPending, unless this is the final attempt."""
    started = time.monotonic()
    states = (DeploymentState.PENDING, DeploymentState.LOADING, DeploymentState.READY)
    while True:
        with transaction.atomic():
            deployment = (Deployment.unscoped.select_for_update(of=("self",))
                          .select_related("model_version", "graph_version").filter(pk=deployment_id).first())
            if deployment is None or deployment.state not in (*states, *((DeploymentState.COLD,) if wake else ())):
                return
            if wake and deployment.state == DeploymentState.COLD:
                deployment.instances = max(1, deployment.min_instances)
                deployment.state = DeploymentState.LOADING
                deployment.save(update_fields=["state", "instances", "updated_at"])
                deployment_publish(deployment)
            wake = False
            placed = deployment.replica_set.count()
            if placed >= deployment.replicas:
                return
            has_replica = placed > 0
            memory = replica_memory_mb(deployment)
            try:
                server = server_pick(deployment=deployment, memory_mb=memory)
            except triton.TritonUnreachable as exc:
                if has_replica:
                    log.info("deployment %s keeps %s replica(s): %s", deployment.pk,
                             deployment.replica_set.count(), exc)
                    return
                reason = str(exc)
                server = None
            else:
                replica = Replica.objects.create(deployment=deployment, server=server, instances=deployment.instances,
                                                 memory_mb=memory)
                if deployment.state == DeploymentState.PENDING:
                    deployment_state_set(deployment, DeploymentState.LOADING, error="")
        if server is None:
            _wait_or_fail(deployment_id, reason, final_attempt)
            return
        placed_ms = (time.monotonic() - started) * 1000
        if not _replica_load(deployment, replica):
            return
        log.info("deployment %s: replica on %s routed %.0f ms after the task started (placement %.0f ms)",
                 deployment.pk, replica.server.name, (time.monotonic() - started) * 1000, placed_ms)
        _replica_measure(deployment, replica)


def _replica_load(deployment: Deployment, replica: Replica) -> bool:
    """Write the entry and load one replica. False when the deployment is done with
    (failed, undeployed, scaled down); True when the caller should go on placing."""
    server = replica.server
    try:
        seconds = replica_triton_load(deployment, server, replica.instances,
                                      replica.memory_mb / max(replica.instances, 1))
    except PlatformError as exc:
        log.warning("deployment %s: its graph cannot be compiled: %s", deployment.pk, exc.message)
        replica_triton_remove(deployment, server)
        return _replica_failed(deployment, replica, f"The graph could not be compiled: {exc.message}")
    except triton.TritonUnreachable as exc:
        log.warning("deployment %s on %s: %s; will retry", deployment.pk, server.name, exc)
        TritonServer.objects.filter(pk=server.pk).update(healthy=False)
        replica_triton_remove(deployment, server, alive=False)
        Replica.objects.filter(pk=replica.pk).delete()
        return True  # placed again, elsewhere, by the caller's next round
    except (triton.TritonError, OSError) as exc:
        log.warning("deployment %s failed to load: %s", deployment.pk, exc, exc_info=isinstance(exc, OSError))
        replica_triton_remove(deployment, server)
        return _replica_failed(deployment, replica, f"Triton could not load the model: {exc}")

    with transaction.atomic():
        current = Deployment.unscoped.select_for_update(of=("self",)).get(pk=deployment.pk)
        if current.state not in (DeploymentState.LOADING, DeploymentState.READY) or \
                not Replica.objects.filter(pk=replica.pk).exists():
            # Undeployed or scaled down while loading: whoever did that owns the cleanup,
            # unless the replica row is already gone.
            if not Replica.objects.filter(pk=replica.pk).exists():
                replica_triton_remove(deployment, server)
            return False
        Replica.objects.filter(pk=replica.pk).update(state=ReplicaState.READY, loaded_at=timezone.now(),
                                                     load_seconds=round(seconds, 3))
        if current.state == DeploymentState.LOADING:
            deployment_state_set(current, DeploymentState.READY, ready_at=timezone.now(),
                                 load_seconds=round(seconds, 3), error="")
        else:
            deployment_publish(current)
    return True


def _replica_failed(deployment: Deployment, replica: Replica, error: str) -> bool:
    """The replica could not load: it goes, and the deployment fails unless another one
    serves it. False: the caller stops placing."""
    with transaction.atomic():
        Replica.objects.filter(pk=replica.pk).delete()
        current = Deployment.unscoped.select_for_update().get(pk=deployment.pk)
        if current.state == DeploymentState.LOADING and not current.replica_set.exists():
            deployment_state_set(current, DeploymentState.FAILED, error=error)
    return False


def _replica_measure(deployment: Deployment, replica: Replica) -> None:
    """Measured once it is routed: a cold call does not wait for it."""
    memory = measured_memory_mb(deployment.triton_name)
    if memory:
        with transaction.atomic():
            Replica.objects.filter(pk=replica.pk).update(memory_mb=memory)
            Deployment.unscoped.filter(pk=deployment.pk).update(memory_mb=memory)
            if deployment.min_instances:
                # What min_instances reserves is billed by the memory measured, from now on.
                current = Deployment.unscoped.select_for_update().filter(pk=deployment.pk).first()
                if current is not None:
                    warm_reservation_sync(deployment=current)


def deployment_wake_run(*, deployment_id: int) -> None:
    """A call reached a cold deployment (or the autoscaler pre-warms it): load it. With no
    server able to take it now, it waits (PlacementPending; the load task retries)."""
    deployment_load_run(deployment_id=deployment_id, wake=True, final_attempt=False)


def deployment_scale_down_run(*, deployment_id: int, reason: str) -> None:
    """Scale a ready deployment to zero: its route turns cold first (new calls are held
    and wake it again), then every replica is unloaded; Triton lets the requests in
    flight finish before it unloads."""
    with transaction.atomic():
        deployment = Deployment.unscoped.select_for_update().filter(pk=deployment_id).first()
        if deployment is None or deployment.state != DeploymentState.READY:
            return
        replicas = list(deployment.replica_set.select_related("server"))
        Replica.objects.filter(pk__in=[r.pk for r in replicas]).delete()
        deployment_state_set(deployment, DeploymentState.COLD, error="")
        for replica in replicas:
            replica_triton_remove(deployment, replica.server, alive=replica.server.healthy)
    log.info("deployment %s scaled to zero: %s", deployment_id, reason)


def deployment_reconfigure_run(*, deployment_id: int, instances: int | None = None) -> None:
    """Apply the deployment's batching settings and instance count to its loaded replicas.
    Triton reloads a loaded model beside the running one and switches when the new one is
    ready, so requests in flight are not dropped."""
    with transaction.atomic():
        deployment = (Deployment.unscoped.select_for_update(of=("self",))
                      .select_related("model_version", "graph_version").filter(pk=deployment_id).first())
        if deployment is None or deployment.state != DeploymentState.READY:
            return
        if instances is not None:
            instances = min(max(instances, max(1, deployment.min_instances)), deployment.max_instances)
            Deployment.unscoped.filter(pk=deployment.pk).update(instances=instances)
            deployment.instances = instances
        replicas = list(deployment.replica_set.filter(state=ReplicaState.READY).select_related("server"))
    for replica in replicas:
        server = replica.server
        try:
            replica_triton_load(deployment, server, deployment.instances)
        except (triton.TritonError, OSError, PlatformError) as exc:
            log.warning("reconfiguring %s on %s failed: %s", deployment.triton_name, server.name, exc)
            continue
        fields = {"instances": deployment.instances}
        memory = measured_memory_mb(deployment.triton_name)
        if memory:
            fields["memory_mb"] = memory
        Replica.objects.filter(pk=replica.pk).update(**fields)
    deployment_publish(deployment)


def deployment_unload_run(*, deployment_id: int) -> None:
    deployment = Deployment.unscoped.filter(pk=deployment_id).first()
    if deployment is None or deployment.state != DeploymentState.UNLOADING:
        return
    for replica in deployment.replica_set.select_related("server"):
        replica_triton_remove(deployment, replica.server, alive=replica.server.healthy)
    with transaction.atomic():
        current = Deployment.unscoped.select_for_update().get(pk=deployment_id)
        if current.state == DeploymentState.UNLOADING:
            current.replica_set.all().delete()
            deployment_state_set(current, DeploymentState.UNDEPLOYED)
            transaction.on_commit(lambda: compiled_files_remove(current))


def deployment_replicas_fit_run(*, deployment_id: int) -> None:
    """After a change of `replicas`: add the missing ones, or unload the surplus (the
    most recently placed first)."""
    with transaction.atomic():
        deployment = Deployment.unscoped.select_for_update().filter(pk=deployment_id).first()
        if deployment is None or deployment.state != DeploymentState.READY:
            return
        surplus = list(deployment.replica_set.select_related("server").order_by("-pk"))[:max(
            0, deployment.replica_set.count() - deployment.replicas)]
        for replica in surplus:
            replica_remove(replica, reason="fewer replicas requested")
    deployment_load_run(deployment_id=deployment_id)

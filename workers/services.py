"""Deployment lifecycle: create, configure, load into Triton, scale to zero and back,
undeploy; placement on servers with room; server health and reconcile.

Views call the `deployment_*` write services; the Celery tasks call the `*_run` ones,
which talk to Triton and are idempotent (a redelivered task does no harm).

A warm deployment has one or more replicas, each loaded on its own Triton server; a
cold one (scaled to zero) has none, and its route stays in the gateway's directory so
that a call wakes it (the gateway holds the call and queues `deployment_wake`)."""
import logging
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connections, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from gateway.contract.errors import (
    Conflict,
    NotFound,
    PlatformError,
    validation_message,
)
from graph_editor.models import ModelVersion
from portal.events import deployment_event_send
from tenants.models import Tenant, slug_validator
from tenants.quotas import quota_effective_value
from workers.capacity import (
    deployment_instances_reserved,
    model_memory_estimate_mb,
    quota_check_deployment,
)
from workers.directory import directory_put_deployment
from workers.models import (
    Deployment,
    DeploymentState,
    KeepAlive,
    Replica,
    ReplicaState,
    TritonServer,
)
from workers.triton import client as triton
from workers.triton.repository import (
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_QUEUE_DELAY_US,
    config_pbtxt,
    entry_remove,
    entry_write,
)

log = logging.getLogger(__name__)

# Largest values the settings accept, whatever the plan: beyond them a value is a mistake.
MAX_QUEUE_DELAY_US = 10_000_000
MAX_KEEPALIVE_IDLE_S = 7 * 24 * 3600
MAX_REPLICAS = 16


_portal_events = ThreadPoolExecutor(max_workers=1, thread_name_prefix="portal-events")


def _event_send(deployment: Deployment) -> None:
    try:
        deployment_event_send(deployment)
    finally:
        # This thread's database connection, if anything opened one, is not left behind.
        connections.close_all()


def _publish(deployment: Deployment) -> None:
    """After commit: the gateway's directory, then (in the background: a cold start does
    not wait for it) the portal's live view."""
    def publish():
        fresh = (Deployment.unscoped.select_related("model_version").prefetch_related("replica_set__server")
                 .filter(pk=deployment.pk).first())
        if fresh is None:
            return
        directory_put_deployment(fresh)
        _portal_events.submit(_event_send, fresh)

    transaction.on_commit(publish)


def _whole(value, name: str, minimum: int, maximum: int, code: str = "") -> int:
    # bool is an int, but True is not a number.
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
        raise PlatformError(f"{name} must be a whole number from {minimum} to {maximum}.",
                            code=code or f"invalid_{name}")
    return value


def scaling_validate(version: ModelVersion, values: dict) -> dict:
    """Check a deployment's scaling and batching settings together (all keys present);
    returns them, normalised. Plan limits are checked separately (quota_check_deployment)."""
    v = dict(values)
    _whole(v["min_instances"], "min_instances", 0, 32767, "invalid_instances")
    _whole(v["max_instances"], "max_instances", 1, 32767, "invalid_instances")
    if v["min_instances"] > v["max_instances"]:
        raise PlatformError(f"min_instances ({v['min_instances']}) cannot exceed max_instances "
                            f"({v['max_instances']}).", code="invalid_instances")
    _whole(v["replicas"], "replicas", 1, MAX_REPLICAS)
    if v["keepalive"] not in KeepAlive.values:
        raise PlatformError(f"Unknown keep-alive policy {v['keepalive']!r}: choose adaptive or fixed.",
                            code="invalid_keepalive")
    _whole(v["keepalive_idle_s"], "keepalive_idle_s", 1, MAX_KEEPALIVE_IDLE_S)
    _whole(v["max_batch_size"], "max_batch_size", 0, 2**31 - 1, "invalid_batch_size")
    if v["max_batch_size"] and not version.has_batch_dim:
        raise PlatformError("This model has no batch dimension: its max_batch_size must be 0.",
                            code="invalid_batch_size")
    _whole(v["max_queue_delay_us"], "max_queue_delay_us", 0, MAX_QUEUE_DELAY_US, "invalid_batch_size")
    sizes = v["preferred_batch_sizes"]
    if not isinstance(sizes, list) or any(not isinstance(s, int) or isinstance(s, bool) for s in sizes):
        raise PlatformError("preferred_batch_sizes must be a list of whole numbers.", code="invalid_batch_size")
    if sizes and not v["max_batch_size"]:
        raise PlatformError("preferred_batch_sizes need batching: set max_batch_size above 0.",
                            code="invalid_batch_size")
    if any(not 1 <= s <= v["max_batch_size"] for s in sizes):
        raise PlatformError(f"Each preferred batch size must be between 1 and max_batch_size "
                            f"({v['max_batch_size']}).", code="invalid_batch_size")
    v["preferred_batch_sizes"] = sorted(set(sizes))
    return v


def scaling_defaults(version: ModelVersion) -> dict:
    """Defaults derived from the model: batching when it has a batch dimension, scale to zero."""
    batch = DEFAULT_MAX_BATCH_SIZE if version.has_batch_dim else 0
    return {"min_instances": 0, "max_instances": 1, "replicas": 1, "keepalive": KeepAlive.ADAPTIVE,
            "keepalive_idle_s": 600, "max_batch_size": batch, "max_queue_delay_us": DEFAULT_QUEUE_DELAY_US if batch
            else 0, "preferred_batch_sizes": []}


def _quota_check(tenant: Tenant, version: ModelVersion, deployment: Deployment, exclude: int | None = None) -> None:
    quota_check_deployment(tenant=tenant, size_bytes=version.size_bytes,
                           instances=deployment_instances_reserved(deployment), hardware=deployment.hardware,
                           max_batch_size=deployment.max_batch_size, exclude_deployment_id=exclude,
                           max_instances=deployment.max_instances)


def deployment_create(*, tenant: Tenant, model_version_id: int, name: str = "", instances: int | None = None,
                      hardware: str = "cpu", actor=None, **scaling) -> Deployment:
    """Record a deployment of one of the tenant's model versions and queue its load,
    within the tenant's deploy-time limits. `scaling` takes any of min_instances,
    max_instances, replicas, keepalive, keepalive_idle_s, max_batch_size,
    max_queue_delay_us, preferred_batch_sizes; the rest come from the model. `instances`
    is how many to start with (default max(1, min_instances)); max_instances defaults to it."""
    from workers import tasks

    version = ModelVersion.objects.for_tenant(tenant).select_related("model").filter(pk=model_version_id).first()
    if version is None:
        raise NotFound("No such model version in this tenant.")
    name = (name or version.model.name).strip()
    try:
        slug_validator(name)
    except Exception:
        raise PlatformError(f"Invalid deployment name {name!r}: use 1-63 lowercase letters, digits and hyphens.",
                            code="invalid_name") from None
    if hardware not in ("cpu", "gpu"):
        raise PlatformError(f"Unknown hardware {hardware!r}: choose cpu or gpu.", code="invalid_hardware")
    unknown = set(scaling) - set(scaling_defaults(version))
    if unknown:
        raise PlatformError(f"Unknown settings: {', '.join(sorted(unknown))}.", code="invalid_deployment")
    values = scaling_defaults(version)
    values.update({k: v for k, v in scaling.items() if v is not None})
    if instances is not None:
        _whole(instances, "instances", 1, 32767)
        if "max_instances" not in scaling or scaling["max_instances"] is None:
            values["max_instances"] = max(instances, values["min_instances"], 1)
    values = scaling_validate(version, values)
    start = instances if instances is not None else max(1, values["min_instances"])
    if start > values["max_instances"]:
        raise PlatformError(f"instances ({start}) cannot exceed max_instances ({values['max_instances']}).",
                            code="invalid_instances")
    with transaction.atomic():
        # One deploy-time decision per tenant at a time, so limits hold under concurrent requests.
        Tenant.objects.select_for_update().filter(pk=tenant.pk).first()
        if Deployment.objects.for_tenant(tenant).filter(name=name).exclude(state=DeploymentState.UNDEPLOYED).exists():
            raise Conflict(f"A deployment named '{name}' already exists; undeploy it or choose another name.")
        deployment = Deployment(tenant=tenant, name=name, model_version=version, instances=start, hardware=hardware,
                                created_by=actor, **values)
        # A request the columns cannot hold is a bad request, whatever the tenant's limits.
        try:
            deployment.full_clean()
        except ValidationError as exc:
            raise PlatformError(validation_message(exc), code="invalid_deployment") from None
        _quota_check(tenant, version, deployment)
        deployment.save()
        _publish(deployment)
        transaction.on_commit(lambda: tasks.deployment_load.delay(deployment.pk))
    return deployment


def deployment_settings_update(*, tenant: Tenant, deployment_id: int, **changes) -> Deployment:
    """Change a deployment's scaling and batching settings within the tenant's limits.
    Batching changes reach Triton by a reload that keeps serving; a raised min_instances
    wakes a cold deployment."""
    from workers import tasks

    with transaction.atomic():
        Tenant.objects.select_for_update().filter(pk=tenant.pk).first()
        deployment = (Deployment.objects.for_tenant(tenant).select_for_update(of=("self",))
                      .select_related("model_version").filter(pk=deployment_id).first())
        if deployment is None:
            raise NotFound("No such deployment in this tenant.")
        if not deployment.is_active:
            raise Conflict("This deployment is undeployed; its settings can no longer change.")
        current = {k: getattr(deployment, k) for k in scaling_defaults(deployment.model_version)}
        unknown = set(changes) - set(current)
        if unknown:
            raise PlatformError(f"Unknown settings: {', '.join(sorted(unknown))}.", code="invalid_deployment")
        values = scaling_validate(deployment.model_version, {**current, **changes})
        changed = {k for k, v in values.items() if current[k] != v}
        if not changed:
            return deployment
        for key, value in values.items():
            setattr(deployment, key, value)
        deployment.instances = min(max(deployment.instances, max(1, deployment.min_instances)),
                                   deployment.max_instances)
        _quota_check(tenant, deployment.model_version, deployment, exclude=deployment.pk)
        # Only these columns: the autoscaler writes the policy's state beside them.
        deployment.save(update_fields=[*values, "instances", "updated_at"])
        _publish(deployment)
        reload = changed & {"max_batch_size", "max_queue_delay_us", "preferred_batch_sizes", "min_instances",
                            "max_instances"}
        pk = deployment.pk
        if deployment.state == DeploymentState.READY and reload:
            transaction.on_commit(lambda: tasks.deployment_reconfigure.delay(pk))
        if deployment.state == DeploymentState.READY and "replicas" in changed:
            transaction.on_commit(lambda: tasks.deployment_replicas_fit.delay(pk))
        if deployment.state == DeploymentState.COLD and deployment.min_instances > 0:
            transaction.on_commit(lambda: tasks.deployment_wake.delay(pk))
    return deployment


def deployment_retry(*, tenant: Tenant, deployment_id: int) -> Deployment:
    """Queue a failed deployment's load again."""
    from workers import tasks

    with transaction.atomic():
        deployment = Deployment.objects.for_tenant(tenant).select_for_update().filter(pk=deployment_id).first()
        if deployment is None:
            raise NotFound("No such deployment in this tenant.")
        if deployment.state != DeploymentState.FAILED:
            raise Conflict(f"Only a failed deployment can be retried; this one is {deployment.state}.")
        _set_state(deployment, DeploymentState.PENDING, error="")
        transaction.on_commit(lambda: tasks.deployment_load.delay(deployment.pk))
    return deployment


def deployment_undeploy(*, tenant: Tenant, deployment_id: int) -> Deployment:
    from workers import tasks

    with transaction.atomic():
        deployment = Deployment.objects.for_tenant(tenant).select_for_update().filter(pk=deployment_id).first()
        if deployment is None:
            raise NotFound("No such deployment in this tenant.")
        if deployment.state == DeploymentState.UNDEPLOYED:
            return deployment
        deployment.state = DeploymentState.UNLOADING
        deployment.save(update_fields=["state", "updated_at"])
        _publish(deployment)
        transaction.on_commit(lambda: tasks.deployment_unload.delay(deployment.pk))
    return deployment


def deployment_scale_to_zero(*, tenant: Tenant, deployment_id: int) -> Deployment:
    """Unload a deployment from Triton now (the portal's "Unload now"); the next call
    wakes it. A deployment kept warm by min_instances refuses."""
    from workers import tasks

    deployment = Deployment.objects.for_tenant(tenant).filter(pk=deployment_id).first()
    if deployment is None:
        raise NotFound("No such deployment in this tenant.")
    if deployment.min_instances > 0:
        raise Conflict(f"This deployment keeps {deployment.min_instances} instance(s) warm (min_instances); "
                       "set min_instances to 0 to let it scale to zero.")
    if deployment.state not in (DeploymentState.READY, DeploymentState.COLD):
        raise Conflict(f"Only a ready deployment can be unloaded; this one is {deployment.state}.")
    if deployment.state == DeploymentState.READY:
        tasks.deployment_scale_down.delay(deployment.pk, "unload requested")
    return deployment


class PlacementPending(Exception):
    """No server could take the deployment right now; the load task retries."""


def _set_state(deployment: Deployment, state: str, **fields) -> None:
    deployment.state = state
    for key, value in fields.items():
        setattr(deployment, key, value)
    deployment.save(update_fields=["state", "updated_at", *fields.keys()])
    _publish(deployment)


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
            _set_state(current, DeploymentState.FAILED, error=reason)
            return
        _set_state(current, DeploymentState.PENDING, error=f"Waiting for a Triton server: {reason}")
    raise PlacementPending(reason)


# ---- placement ------------------------------------------------------------------------

def replica_memory_mb(deployment: Deployment, instances: int | None = None) -> int:
    """What one replica is expected to hold: measured when it has been loaded (scaled to
    the instance count), estimated from the model file before."""
    instances = instances or deployment.instances
    if deployment.memory_mb:
        loaded = deployment.replica_set.filter(state=ReplicaState.READY).values_list("instances", flat=True).first()
        per_instance = deployment.memory_mb / max(loaded or deployment.instances, 1)
        return max(1, math.ceil(per_instance * instances))
    return model_memory_estimate_mb(size_bytes=deployment.model_version.size_bytes, instances=instances)


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


# ---- loading --------------------------------------------------------------------------

def memory_share_mb(deployment: Deployment, server: TritonServer, reserved_mb: float | None = None) -> int | None:
    """The memory one instance of the deployment may allocate beyond what it holds once
    loaded (its Python-backend runner enforces it; see `_config`); None for no share.
    `reserved_mb`: what placement reserved for one instance, when the caller knows it (a
    cold start does: it saves the queries)."""
    reserved = reserved_mb if reserved_mb else replica_memory_mb(deployment, instances=1)
    proportional = math.ceil(settings.DEPLOYMENT_MEMORY_HEADROOM * reserved)
    ceilings = [server.memory_mb]
    plan_limit = quota_effective_value(tenant_id=deployment.tenant_id, field="max_model_memory_mb")
    if plan_limit is not None:
        ceilings.append(plan_limit)
    return max(settings.DEPLOYMENT_MEMORY_SHARE_MB, min(proportional, *ceilings)) or None


def _config(deployment: Deployment, server: TritonServer, instances: int, reserved_mb: float | None = None) -> str:
    """The deployment's config.pbtxt for `server`, with `instances` instances.

    Memory share (`memory_limit_mb`, per instance: each instance is its own stub process,
    which may map that much more than it has while it builds its session or runs a batch;
    runner_model.py): what placement reserves for one instance (`replica_memory_mb`: the
    weights twice plus 64 MB of runtime, estimated from the file until measured) times
    DEPLOYMENT_MEMORY_HEADROOM (4), at most the server's memory and the tenant's
    max_model_memory_mb, never less than DEPLOYMENT_MEMORY_SHARE_MB (1024). It bounds a
    request's burst and is not reserved: the shares on a server may add up to more than it
    has, as Kubernetes limits do above requests. Both settings at 0 turn it off. Native
    onnxruntime entries get none: only our runner enforces it."""
    version = deployment.model_version
    native_onnx = "onnxruntime" in server.backends
    return config_pbtxt(
        triton_name=deployment.triton_name, inputs=version.inputs, outputs=version.outputs,
        has_batch_dim=version.has_batch_dim, native_onnx=native_onnx,
        gpu=deployment.hardware == "gpu", max_batch_size=deployment.max_batch_size, instances=instances,
        queue_delay_us=deployment.max_queue_delay_us, preferred_batch_sizes=deployment.preferred_batch_sizes,
        memory_limit_mb=None if native_onnx else memory_share_mb(deployment, server, reserved_mb),
    )


def measured_memory_mb(triton_name: str) -> int | None:
    """Resident memory of a loaded model's Python-backend stubs, when the server runs on
    this host (a local server); None where it cannot be seen from here."""
    needle = f"/{triton_name}/".encode()
    total_kb, found = 0, False
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if needle not in f.read():
                    continue
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total_kb += int(line.split()[1])
                        found = True
                        break
        except (OSError, ValueError):
            continue
    return math.ceil(total_kb / 1024) if found else None


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
            deployment = (Deployment.unscoped.select_for_update(of=("self",)).select_related("model_version")
                          .filter(pk=deployment_id).first())
            if deployment is None or deployment.state not in (*states, *((DeploymentState.COLD,) if wake else ())):
                return
            if wake and deployment.state == DeploymentState.COLD:
                deployment.instances = max(1, deployment.min_instances)
                deployment.state = DeploymentState.LOADING
                deployment.save(update_fields=["state", "instances", "updated_at"])
                _publish(deployment)
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
                    _set_state(deployment, DeploymentState.LOADING, error="")
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
    repository = Path(server.repository_path)
    try:
        entry_write(repository=repository, triton_name=deployment.triton_name,
                    onnx_path=deployment.model_version.absolute_path,
                    config=_config(deployment, server, replica.instances,
                                   replica.memory_mb / max(replica.instances, 1)),
                    native_onnx="onnxruntime" in server.backends)
        seconds = triton.model_load(server.http_url, deployment.triton_name, timeout=settings.TRITON_LOAD_TIMEOUT_S)
    except triton.TritonUnreachable as exc:
        log.warning("deployment %s on %s: %s; will retry", deployment.pk, server.name, exc)
        TritonServer.objects.filter(pk=server.pk).update(healthy=False)
        entry_remove(repository=repository, triton_name=deployment.triton_name)
        Replica.objects.filter(pk=replica.pk).delete()
        return True  # placed again, elsewhere, by the caller's next round
    except (triton.TritonError, OSError) as exc:
        log.warning("deployment %s failed to load: %s", deployment.pk, exc)
        _cleanup_in_triton(server, deployment.triton_name, repository)
        with transaction.atomic():
            Replica.objects.filter(pk=replica.pk).delete()
            current = Deployment.unscoped.select_for_update().get(pk=deployment.pk)
            if current.state == DeploymentState.LOADING and not current.replica_set.exists():
                _set_state(current, DeploymentState.FAILED, error=f"Triton could not load the model: {exc}")
        return False

    with transaction.atomic():
        current = Deployment.unscoped.select_for_update(of=("self",)).get(pk=deployment.pk)
        if current.state not in (DeploymentState.LOADING, DeploymentState.READY) or \
                not Replica.objects.filter(pk=replica.pk).exists():
            # Undeployed or scaled down while loading: whoever did that owns the cleanup,
            # unless the replica row is already gone.
            if not Replica.objects.filter(pk=replica.pk).exists():
                _cleanup_in_triton(server, deployment.triton_name, repository)
            return False
        Replica.objects.filter(pk=replica.pk).update(state=ReplicaState.READY, loaded_at=timezone.now(),
                                                     load_seconds=round(seconds, 3))
        if current.state == DeploymentState.LOADING:
            _set_state(current, DeploymentState.READY, ready_at=timezone.now(), load_seconds=round(seconds, 3),
                       error="")
        else:
            _publish(current)
    return True


def _replica_measure(deployment: Deployment, replica: Replica) -> None:
    """Measured once it is routed: a cold call does not wait for it."""
    memory = measured_memory_mb(deployment.triton_name)
    if memory:
        Replica.objects.filter(pk=replica.pk).update(memory_mb=memory)
        Deployment.unscoped.filter(pk=deployment.pk).update(memory_mb=memory)


def _cleanup_in_triton(server: TritonServer, triton_name: str, repository: Path) -> None:
    try:
        triton.model_unload(server.http_url, triton_name)
    except triton.TritonError as exc:
        log.warning("unload of %s on %s failed: %s", triton_name, server.name, exc)
    entry_remove(repository=repository, triton_name=triton_name)


def replica_remove(replica: Replica, *, reason: str) -> None:
    """Unload one replica (inside the caller's transaction). A deployment left without
    replicas is cold: its route stays and the next call wakes it."""
    deployment = Deployment.unscoped.select_for_update(of=("self",)).get(pk=replica.deployment_id)
    Replica.objects.filter(pk=replica.pk).delete()
    if not deployment.replica_set.exists() and deployment.state == DeploymentState.READY:
        _set_state(deployment, DeploymentState.COLD, error="")
    else:
        _publish(deployment)
    if replica.server.healthy:
        _cleanup_in_triton(replica.server, deployment.triton_name, Path(replica.server.repository_path))
    log.info("replica of %s on %s removed: %s", deployment.triton_name, replica.server.name, reason)


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
        _set_state(deployment, DeploymentState.COLD, error="")
        for replica in replicas:
            if replica.server.healthy:
                _cleanup_in_triton(replica.server, deployment.triton_name, Path(replica.server.repository_path))
    log.info("deployment %s scaled to zero: %s", deployment_id, reason)


def deployment_reconfigure_run(*, deployment_id: int, instances: int | None = None) -> None:
    """Apply the deployment's batching settings and instance count to its loaded replicas.
    Triton reloads a loaded model beside the running one and switches when the new one is
    ready, so requests in flight are not dropped."""
    with transaction.atomic():
        deployment = (Deployment.unscoped.select_for_update(of=("self",)).select_related("model_version")
                      .filter(pk=deployment_id).first())
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
            entry_write(repository=Path(server.repository_path), triton_name=deployment.triton_name,
                        onnx_path=deployment.model_version.absolute_path,
                        config=_config(deployment, server, deployment.instances),
                        native_onnx="onnxruntime" in server.backends)
            triton.model_load(server.http_url, deployment.triton_name, timeout=settings.TRITON_LOAD_TIMEOUT_S)
        except (triton.TritonError, OSError) as exc:
            log.warning("reconfiguring %s on %s failed: %s", deployment.triton_name, server.name, exc)
            continue
        fields = {"instances": deployment.instances}
        memory = measured_memory_mb(deployment.triton_name)
        if memory:
            fields["memory_mb"] = memory
        Replica.objects.filter(pk=replica.pk).update(**fields)
    _publish(deployment)


def deployment_unload_run(*, deployment_id: int) -> None:
    deployment = Deployment.unscoped.filter(pk=deployment_id).first()
    if deployment is None or deployment.state != DeploymentState.UNLOADING:
        return
    for replica in deployment.replica_set.select_related("server"):
        _cleanup_in_triton(replica.server, deployment.triton_name, Path(replica.server.repository_path))
    with transaction.atomic():
        current = Deployment.unscoped.select_for_update().get(pk=deployment_id)
        if current.state == DeploymentState.UNLOADING:
            current.replica_set.all().delete()
            _set_state(current, DeploymentState.UNDEPLOYED)


# ---- health and reconcile -------------------------------------------------------------

def servers_check_run() -> dict:
    """Health of every enabled server. A server that stops answering loses its replicas at
    once: the gateway stops routing to it, and its deployments are placed elsewhere."""
    from workers import tasks

    result = {}
    for server in TritonServer.objects.filter(enabled=True):
        healthy = triton.server_live(server.http_url)
        fields = {"healthy": healthy}
        if healthy:
            fields["last_seen_at"] = timezone.now()
        TritonServer.objects.filter(pk=server.pk).update(**fields)
        result[server.name] = healthy
        if not healthy:
            lost = list(Replica.objects.filter(server=server).select_related("server"))
            for deployment_id in replicas_lost(lost, reason=f"Server {server.name} stopped answering"):
                tasks.deployment_load.delay(deployment_id)
    return result


def replicas_lost(replicas: list[Replica], *, reason: str) -> list[int]:
    """Forget replicas that no longer serve (their server died, or restarted without the
    model); a deployment left without one turns loading. Returns the deployments to load
    again. Rows are locked in deployment order."""
    moved = []
    with transaction.atomic():
        for replica in sorted(replicas, key=lambda r: r.deployment_id):
            deployment = Deployment.unscoped.select_for_update().get(pk=replica.deployment_id)
            Replica.objects.filter(pk=replica.pk).delete()
            log.warning("%s loses its replica on %s: %s", deployment.triton_name, replica.server.name, reason)
            if deployment.state not in (DeploymentState.READY, DeploymentState.LOADING):
                continue
            if deployment.replica_set.exists():
                _publish(deployment)
            else:
                _set_state(deployment, DeploymentState.LOADING, error=f"{reason}; loading it again")
            moved.append(deployment.pk)
    return moved


def deployments_reconcile_run() -> list[int]:
    """Replicas recorded ready that their server no longer has loaded (a restarted Triton)
    are dropped and loaded again; deployments stuck pending or loading get their load
    queued again, and warm ones short of replicas get the missing ones."""
    from workers import tasks

    requeued = []
    stale = timezone.now() - timezone.timedelta(seconds=60)
    for deployment in Deployment.unscoped.filter(state__in=[DeploymentState.PENDING, DeploymentState.LOADING],
                                                 updated_at__lt=stale):
        tasks.deployment_load.delay(deployment.pk)
        requeued.append(deployment.pk)
    for server in TritonServer.objects.filter(enabled=True, healthy=True):
        try:
            loaded = {m["name"] for m in triton.repository_index(server.http_url) if m.get("state") == "READY"}
        except triton.TritonError:
            continue
        stale_replicas = [r for r in Replica.objects.filter(server=server, state=ReplicaState.READY)
                          .select_related("deployment", "server") if r.deployment.triton_name not in loaded]
        for deployment_id in replicas_lost(stale_replicas, reason=f"Server {server.name} no longer has it loaded"):
            tasks.deployment_load.delay(deployment_id)
            requeued.append(deployment_id)
    for deployment in Deployment.unscoped.filter(state=DeploymentState.READY):
        if deployment.replica_set.count() < deployment.replicas and deployment.pk not in requeued:
            tasks.deployment_load.delay(deployment.pk)
    return requeued


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


def server_restarted_run(*, server_name: str) -> list[int]:
    """A Triton server answers again after a (re)start, with no model loaded (`manage.py
    triton_serve` calls this each time its server is live): it is healthy, the replicas
    recorded on it are forgotten and their deployments loaded again, here or elsewhere.
    Returns those deployments; nothing happens for a server that is not registered."""
    from workers import tasks

    server = TritonServer.objects.filter(name=server_name).first()
    if server is None:
        return []
    TritonServer.objects.filter(pk=server.pk).update(healthy=True, last_seen_at=timezone.now())
    # Replicas of deployments being undeployed are left to their unload, which also removes their entries.
    lost = list(Replica.objects.filter(server=server, deployment__state__in=[DeploymentState.READY,
                                                                             DeploymentState.LOADING])
                .select_related("server"))
    moved = replicas_lost(lost, reason=f"Server {server.name} restarted")
    for deployment_id in moved:
        tasks.deployment_load.delay(deployment_id)
    return moved

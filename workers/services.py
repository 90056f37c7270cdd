"""Deployment lifecycle: create, load into Triton, undeploy; server health and reconcile.

Views call the `deployment_*` write services; the Celery tasks call the `*_run` ones,
which talk to Triton and are idempotent (a redelivered task does no harm)."""
import logging
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from gateway.directory import directory_put_deployment
from graph_editor.models import ModelVersion
from portal.errors import Conflict, NotFound, PlatformError, validation_message
from portal.events import deployment_event_send
from tenants.models import Tenant, slug_validator
from tenants.quotas import quota_check_deployment
from workers.models import Deployment, DeploymentState, TritonServer
from workers.triton import client as triton
from workers.triton.repository import DEFAULT_MAX_BATCH_SIZE, config_pbtxt, entry_remove, entry_write

log = logging.getLogger(__name__)


def _publish(deployment: Deployment) -> None:
    """After commit: the gateway's directory, then the portal's live view."""
    def publish():
        directory_put_deployment(deployment)
        deployment_event_send(deployment)

    transaction.on_commit(publish)


def deployment_create(*, tenant: Tenant, model_version_id: int, name: str = "", instances: int = 1,
                      hardware: str = "cpu", max_batch_size: int | None = None, actor=None) -> Deployment:
    """Record a deployment of one of the tenant's model versions and queue its load,
    within the tenant's deploy-time limits."""
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
    # bool is an int, but True is not a number of instances.
    if not isinstance(instances, int) or isinstance(instances, bool) or instances < 1:
        raise PlatformError("instances must be a whole number of at least 1.", code="invalid_instances")
    if max_batch_size is None:
        max_batch_size = DEFAULT_MAX_BATCH_SIZE if version.has_batch_dim else 0
    if not isinstance(max_batch_size, int) or isinstance(max_batch_size, bool) or max_batch_size < 0:
        raise PlatformError("max_batch_size must be a whole number, 0 or more.", code="invalid_batch_size")
    if max_batch_size and not version.has_batch_dim:
        raise PlatformError("This model has no batch dimension: its max_batch_size must be 0.",
                            code="invalid_batch_size")
    with transaction.atomic():
        # One deploy-time decision per tenant at a time, so limits hold under concurrent requests.
        Tenant.objects.select_for_update().filter(pk=tenant.pk).first()
        if Deployment.objects.for_tenant(tenant).filter(name=name).exclude(state=DeploymentState.UNDEPLOYED).exists():
            raise Conflict(f"A deployment named '{name}' already exists; undeploy it or choose another name.")
        deployment = Deployment(tenant=tenant, name=name, model_version=version, instances=instances,
                                hardware=hardware, max_batch_size=max_batch_size, created_by=actor)
        # A request the columns cannot hold (e.g. more instances than they count) is a bad
        # request, whatever the tenant's limits.
        try:
            deployment.full_clean()
        except ValidationError as exc:
            raise PlatformError(validation_message(exc), code="invalid_deployment") from None
        quota_check_deployment(tenant=tenant, size_bytes=version.size_bytes, instances=instances, hardware=hardware,
                               max_batch_size=max_batch_size)
        deployment.save()
        _publish(deployment)
        transaction.on_commit(lambda: tasks.deployment_load.delay(deployment.pk))
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
        _set_state(deployment, DeploymentState.PENDING, server=None, error="")
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


class PlacementPending(Exception):
    """No server could take the deployment right now; the load task retries."""


def server_pick(*, deployment: Deployment) -> TritonServer:
    """Placement: an enabled, healthy server, the one with the fewest active deployments."""
    from django.db.models import Count, Q

    from workers.models import ACTIVE_STATES

    servers = TritonServer.objects.filter(enabled=True, healthy=True)
    if deployment.hardware == "gpu":
        servers = servers.filter(has_gpu=True)
    servers = (
        servers
        .annotate(load=Count("deployments", filter=Q(deployments__state__in=ACTIVE_STATES)))
        .order_by("load", "pk")
    )
    server = servers.first()
    if server is None:
        if deployment.hardware == "gpu":
            raise triton.TritonUnreachable("No healthy Triton server with a GPU is registered.")
        raise triton.TritonUnreachable(
            "No healthy Triton server is registered; start one with `manage.py triton_serve`.")
    return server


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
        if final_attempt:
            _set_state(current, DeploymentState.FAILED, error=reason)
            return
        _set_state(current, DeploymentState.PENDING, server=None, error=f"Waiting for a Triton server: {reason}")
    raise PlacementPending(reason)


def deployment_load_run(*, deployment_id: int, final_attempt: bool = True) -> None:
    """Write the Triton entry and load it. Ends ready, or failed with nothing left behind;
    while no server is reachable it stays pending and raises PlacementPending, unless
    this is the final attempt."""
    with transaction.atomic():
        deployment = (
            Deployment.unscoped.select_for_update(of=("self",)).select_related("model_version", "server")
            .filter(pk=deployment_id).first()
        )
        if deployment is None or deployment.state not in (DeploymentState.PENDING, DeploymentState.LOADING):
            return
        try:
            server = deployment.server if deployment.server and deployment.server.enabled else server_pick(
                deployment=deployment)
        except triton.TritonUnreachable as exc:
            reason = str(exc)
            server = None
        else:
            _set_state(deployment, DeploymentState.LOADING, server=server, error="")
    if server is None:
        _wait_or_fail(deployment_id, reason, final_attempt)
        return

    version = deployment.model_version
    native_onnx = "onnxruntime" in server.backends
    repository = Path(server.repository_path)
    try:
        config = config_pbtxt(
            triton_name=deployment.triton_name, inputs=version.inputs, outputs=version.outputs,
            has_batch_dim=version.has_batch_dim, native_onnx=native_onnx, gpu=deployment.hardware == "gpu",
            max_batch_size=deployment.max_batch_size, instances=deployment.instances,
        )
        entry_write(repository=repository, triton_name=deployment.triton_name, onnx_path=version.absolute_path,
                    config=config, native_onnx=native_onnx)
        seconds = triton.model_load(server.http_url, deployment.triton_name, timeout=settings.TRITON_LOAD_TIMEOUT_S)
    except triton.TritonUnreachable as exc:
        log.warning("deployment %s: %s; will retry", deployment.pk, exc)
        TritonServer.objects.filter(pk=server.pk).update(healthy=False)
        entry_remove(repository=repository, triton_name=deployment.triton_name)
        _wait_or_fail(deployment.pk, str(exc), final_attempt)
        return
    except (triton.TritonError, OSError) as exc:
        log.warning("deployment %s failed to load: %s", deployment.pk, exc)
        _cleanup_in_triton(server, deployment.triton_name, repository)
        with transaction.atomic():
            current = Deployment.unscoped.select_for_update().get(pk=deployment.pk)
            if current.state == DeploymentState.LOADING:
                _set_state(current, DeploymentState.FAILED, error=f"Triton could not load the model: {exc}")
        return

    with transaction.atomic():
        current = Deployment.unscoped.select_for_update(of=("self",)).select_related("server").get(pk=deployment.pk)
        if current.state != DeploymentState.LOADING:
            # Undeployed while loading: the unload task owns the cleanup.
            return
        _set_state(current, DeploymentState.READY, ready_at=timezone.now(), load_seconds=round(seconds, 3))


def _cleanup_in_triton(server: TritonServer, triton_name: str, repository: Path) -> None:
    try:
        triton.model_unload(server.http_url, triton_name)
    except triton.TritonError as exc:
        log.warning("unload of %s on %s failed: %s", triton_name, server.name, exc)
    entry_remove(repository=repository, triton_name=triton_name)


def deployment_unload_run(*, deployment_id: int) -> None:
    deployment = Deployment.unscoped.select_related("server").filter(pk=deployment_id).first()
    if deployment is None or deployment.state != DeploymentState.UNLOADING:
        return
    if deployment.server is not None:
        _cleanup_in_triton(deployment.server, deployment.triton_name, Path(deployment.server.repository_path))
    with transaction.atomic():
        current = Deployment.unscoped.select_for_update().get(pk=deployment_id)
        if current.state == DeploymentState.UNLOADING:
            _set_state(current, DeploymentState.UNDEPLOYED)


def servers_check_run() -> dict:
    """Health of every enabled server; a server that comes back gets its ready deployments reloaded."""
    result = {}
    for server in TritonServer.objects.filter(enabled=True):
        healthy = triton.server_ready(server.http_url)
        fields = {"healthy": healthy}
        if healthy:
            fields["last_seen_at"] = timezone.now()
        TritonServer.objects.filter(pk=server.pk).update(**fields)
        result[server.name] = healthy
    return result


def deployments_reconcile_run() -> list[int]:
    """Deployments recorded ready that their server no longer has loaded (a restarted Triton)
    go back to loading; deployments stuck pending get their load queued again."""
    from workers import tasks

    requeued = []
    stale_pending = timezone.now() - timezone.timedelta(seconds=60)
    for deployment in Deployment.unscoped.filter(state=DeploymentState.PENDING, updated_at__lt=stale_pending):
        tasks.deployment_load.delay(deployment.pk)
        requeued.append(deployment.pk)
    for server in TritonServer.objects.filter(enabled=True, healthy=True):
        try:
            loaded = {m["name"] for m in triton.repository_index(server.http_url) if m.get("state") == "READY"}
        except triton.TritonError:
            continue
        for deployment in Deployment.unscoped.filter(server=server, state=DeploymentState.READY):
            if deployment.triton_name in loaded:
                continue
            with transaction.atomic():
                current = Deployment.unscoped.select_for_update().get(pk=deployment.pk)
                if current.state != DeploymentState.READY:
                    continue
                _set_state(current, DeploymentState.LOADING)
                transaction.on_commit(lambda pk=current.pk: tasks.deployment_load.delay(pk))
            requeued.append(deployment.pk)
    return requeued

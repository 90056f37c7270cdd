"""The deployment services the portal, the API and the admin call: create one (of a model
version or of a graph version), change its settings, retry a failed one, undeploy it,
unload it now. Each writes in one transaction and queues the work for Triton
(workers/services/lifecycle.py) after commit."""
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from gateway.contract.errors import Conflict, NotFound, PlatformError, validation_message
from graph_editor.graphs.plan import ensemble_refusal, graph_plan
from graph_editor.graphs.validate import graph_validate
from graph_editor.models import GraphVersion, ModelVersion
from tenants.audit import audit_record
from tenants.models import Tenant, slug_name_clean
from workers import queue
from workers.capacity import deployment_instances_reserved, quota_check_deployment
from workers.models import GRAPH_EXECUTORS, Deployment, DeploymentState, Executor
from workers.services.publish import deployment_publish, deployment_state_set
from workers.services.reservations import warm_reservation_sync
from workers.services.scaling import scaling_defaults, scaling_validate, whole_number_check


def _quota_check(tenant: Tenant, deployment: Deployment, exclude: int | None = None) -> None:
    quota_check_deployment(tenant=tenant, size_bytes=deployment.target_size_bytes,
                           instances=deployment_instances_reserved(deployment), hardware=deployment.hardware,
                           max_batch_size=deployment.max_batch_size, exclude_deployment_id=exclude,
                           max_instances=deployment.max_instances)


EXECUTOR_CHOICES = ("auto", *GRAPH_EXECUTORS)


def graph_executor_choose(*, tenant: Tenant, graph_version: GraphVersion, requested: str) -> str:
    """The executor a graph version is served with. `auto`: fused into one ONNX model
    while the model versions it names weigh at most GRAPH_FUSE_MAX_MB together (one hop,
    the fastest; each graph then holds its own copy of the weights), else its steps as
    shared Triton models: an ensemble, or a BLS orchestrator when the graph has a switch
    (an ensemble has no conditionals). README "How a graph is executed" has the figures.
    A named executor that cannot run the graph is a 400 (invalid_executor)."""
    if requested not in EXECUTOR_CHOICES:
        raise PlatformError(f"Unknown executor {requested!r}: choose one of {', '.join(EXECUTOR_CHOICES)}.",
                            code="invalid_executor")
    if requested == Executor.FUSED:
        return requested
    if requested == "auto":
        ids = {n.get("model_version") for n in graph_version.spec.get("nodes", []) if n.get("kind") == "model"}
        weights = sum(ModelVersion.objects.for_tenant(tenant).filter(pk__in=ids).values_list("size_bytes", flat=True))
        if weights <= settings.GRAPH_FUSE_MAX_MB * 2**20:
            return Executor.FUSED
    plan = graph_plan(tenant=tenant, spec=graph_version.spec)
    reason = ensemble_refusal(plan)
    if requested == "auto":
        return Executor.BLS if reason else Executor.ENSEMBLE
    if requested == Executor.ENSEMBLE and reason:
        raise PlatformError(f"This graph cannot be served as an ensemble: {reason}.", code="invalid_executor")
    return requested


def _target(tenant: Tenant, model_version_id: int | None, graph_version_id: int | None,
            executor: str = "auto") -> dict:
    """The deployment's target fields for one of the tenant's model versions or graph
    versions (exactly one is named), with the executor that serves it."""
    if (model_version_id is None) == (graph_version_id is None):
        raise PlatformError("Deploy either a model version or a graph version: name exactly one.",
                            code="invalid_target")
    if model_version_id is not None:
        version = ModelVersion.objects.for_tenant(tenant).select_related("model").filter(pk=model_version_id).first()
        if version is None:
            raise NotFound("No such model version in this tenant.")
        if executor not in ("auto", Executor.MODEL):
            raise PlatformError("`executor` applies to graph versions; a model version is served as it is.",
                                code="invalid_executor")
        return {"model_version": version, "executor": Executor.MODEL}
    graph_version = (GraphVersion.objects.for_tenant(tenant).select_related("graph")
                     .filter(pk=graph_version_id).first())
    if graph_version is None:
        raise NotFound("No such graph version in this tenant.")
    # Saved valid, but a model version it names may have been deleted since.
    check = graph_validate(tenant=tenant, spec=graph_version.spec)
    if not check.valid:
        raise PlatformError(f"This graph version can no longer be deployed: {check.errors[0].message}",
                            code="invalid_graph")
    return {"graph_version": graph_version,
            "executor": graph_executor_choose(tenant=tenant, graph_version=graph_version, requested=executor)}


def node_instances_clean(deployment: Deployment, value) -> dict[str, int]:
    """`node_instances` checked against the deployment's graph and executor: node ids of
    its model, op and switch nodes, each a whole number from 1 to max_instances."""
    if value in (None, {}):
        return {}
    if not isinstance(value, dict):
        raise PlatformError("node_instances must be an object: node id -> instances.", code="invalid_deployment")
    if not deployment.runs_units:
        raise PlatformError("node_instances applies to a graph deployed with the ensemble or bls executor; a model "
                            "or a fused graph is one Triton model: set instances instead.", code="invalid_deployment")
    steps = {n.get("id") for n in deployment.graph_version.spec.get("nodes", [])
             if n.get("kind") in ("model", "op", "switch")}
    unknown = sorted(str(node) for node in value if node not in steps)
    if unknown:
        raise PlatformError(f"node_instances names {', '.join(unknown)}, which is not a model, op or switch node of "
                            f"this graph version.", code="invalid_deployment")
    for node, count in value.items():
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= deployment.max_instances:
            raise PlatformError(f"node_instances['{node}'] must be a whole number from 1 to max_instances "
                                f"({deployment.max_instances}).", code="invalid_deployment")
    return dict(value)


def deployment_create(*, tenant: Tenant, model_version_id: int | None = None, graph_version_id: int | None = None,
                      name: str = "", instances: int | None = None, hardware: str = "cpu", actor=None,
                      executor: str = "auto", node_instances: dict | None = None, **scaling) -> Deployment:
    """Record a deployment of one of the tenant's model versions or graph versions (exactly
    one) and queue its load, within the tenant's deploy-time limits. `scaling` takes any of
    min_instances, max_instances, replicas, keepalive, keepalive_idle_s, max_batch_size,
    max_queue_delay_us, preferred_batch_sizes; the rest come from the target. `instances`
    is how many to start with (default max(1, min_instances)); max_instances defaults to it."""
    target = _target(tenant, model_version_id, graph_version_id, executor)
    deployment = Deployment(tenant=tenant, **target)
    default_name = deployment.graph_version.graph.name if deployment.is_graph else deployment.model_version.model.name
    name = slug_name_clean(name or default_name, what="deployment")
    if hardware not in ("cpu", "gpu"):
        raise PlatformError(f"Unknown hardware {hardware!r}: choose cpu or gpu.", code="invalid_hardware")
    has_batch_dim = deployment.target_signature()["has_batch_dim"]
    values = scaling_defaults(has_batch_dim=has_batch_dim)
    unknown = set(scaling) - set(values)
    if unknown:
        raise PlatformError(f"Unknown settings: {', '.join(sorted(unknown))}.", code="invalid_deployment")
    values.update({k: v for k, v in scaling.items() if v is not None})
    if instances is not None:
        whole_number_check(instances, "instances", 1, 32767)
        if "max_instances" not in scaling or scaling["max_instances"] is None:
            values["max_instances"] = max(instances, values["min_instances"], 1)
    values = scaling_validate(values, has_batch_dim=has_batch_dim)
    start = instances if instances is not None else max(1, values["min_instances"])
    if start > values["max_instances"]:
        raise PlatformError(f"instances ({start}) cannot exceed max_instances ({values['max_instances']}).",
                            code="invalid_instances")
    with transaction.atomic():
        # One deploy-time decision per tenant at a time, so limits hold under concurrent requests.
        Tenant.objects.select_for_update().filter(pk=tenant.pk).first()
        if Deployment.objects.for_tenant(tenant).filter(name=name).exclude(state=DeploymentState.UNDEPLOYED).exists():
            raise Conflict(f"A deployment named '{name}' already exists; undeploy it or choose another name.")
        deployment.name, deployment.instances, deployment.hardware, deployment.created_by = name, start, hardware, actor
        for key, value in values.items():
            setattr(deployment, key, value)
        deployment.node_instances = node_instances_clean(deployment, node_instances)
        # A request the columns cannot hold is a bad request, whatever the tenant's limits.
        try:
            deployment.full_clean()
        except ValidationError as exc:
            raise PlatformError(validation_message(exc), code="invalid_deployment") from None
        _quota_check(tenant, deployment)
        deployment.save()
        warm_reservation_sync(deployment=deployment)
        target_ids = ({"graph_version": deployment.graph_version_id, "executor": deployment.executor}
                      if deployment.is_graph
                      else {"model_version": deployment.model_version_id})
        audit_record(event_type="deployment.created", target=deployment,
                     new={**target_ids, "hardware": hardware, "instances": start, **values,
                          **({"node_instances": deployment.node_instances} if deployment.node_instances else {})})
        deployment_publish(deployment)
        transaction.on_commit(lambda: queue.deployment_load(deployment.pk))
    return deployment


def deployment_settings_update(*, tenant: Tenant, deployment_id: int, **changes) -> Deployment:
    """Change a deployment's scaling and batching settings within the tenant's limits.
    Batching changes reach Triton by a reload that keeps serving; a raised min_instances
    wakes a cold deployment."""
    with transaction.atomic():
        Tenant.objects.select_for_update().filter(pk=tenant.pk).first()
        deployment = (Deployment.objects.for_tenant(tenant).select_for_update(of=("self",))
                      .select_related("model_version", "graph_version").filter(pk=deployment_id).first())
        if deployment is None:
            raise NotFound("No such deployment in this tenant.")
        if not deployment.is_active:
            raise Conflict("This deployment is undeployed; its settings can no longer change.")
        has_batch_dim = deployment.target_signature()["has_batch_dim"]
        current = {k: getattr(deployment, k) for k in scaling_defaults(has_batch_dim=has_batch_dim)}
        current["node_instances"] = deployment.node_instances
        unknown = set(changes) - set(current)
        if unknown:
            raise PlatformError(f"Unknown settings: {', '.join(sorted(unknown))}.", code="invalid_deployment")
        node_instances = changes.pop("node_instances", current["node_instances"])
        values = scaling_validate({**current, **changes}, has_batch_dim=has_batch_dim)
        for key, value in values.items():
            setattr(deployment, key, value)
        # Checked against the new max_instances, set just above.
        values["node_instances"] = deployment.node_instances = node_instances_clean(deployment, node_instances)
        changed = {k for k, v in values.items() if current[k] != v}
        if not changed:
            return deployment
        deployment.instances = min(max(deployment.instances, max(1, deployment.min_instances)),
                                   deployment.max_instances)
        _quota_check(tenant, deployment, exclude=deployment.pk)
        # Only these columns: the autoscaler writes the policy's state beside them.
        deployment.save(update_fields=[*values, "instances", "updated_at"])
        warm_reservation_sync(deployment=deployment)
        audit_record(event_type="deployment.settings_changed", target=deployment,
                     old={k: current[k] for k in changed}, new={k: values[k] for k in changed})
        deployment_publish(deployment)
        reload = changed & {"max_batch_size", "max_queue_delay_us", "preferred_batch_sizes", "min_instances",
                            "max_instances", "node_instances"}
        pk = deployment.pk
        if deployment.state == DeploymentState.READY and reload:
            transaction.on_commit(lambda: queue.deployment_reconfigure(pk))
        if deployment.state == DeploymentState.READY and "replicas" in changed:
            transaction.on_commit(lambda: queue.deployment_replicas_fit(pk))
        if deployment.state == DeploymentState.COLD and deployment.min_instances > 0:
            transaction.on_commit(lambda: queue.deployment_wake(pk))
    return deployment


def deployment_retry(*, tenant: Tenant, deployment_id: int) -> Deployment:
    """Queue a failed deployment's load again."""
    with transaction.atomic():
        deployment = Deployment.objects.for_tenant(tenant).select_for_update().filter(pk=deployment_id).first()
        if deployment is None:
            raise NotFound("No such deployment in this tenant.")
        if deployment.state != DeploymentState.FAILED:
            raise Conflict(f"Only a failed deployment can be retried; this one is {deployment.state}.")
        deployment_state_set(deployment, DeploymentState.PENDING, error="")
        transaction.on_commit(lambda: queue.deployment_load(deployment.pk))
    return deployment


def deployment_undeploy(*, tenant: Tenant, deployment_id: int) -> Deployment:
    with transaction.atomic():
        deployment = Deployment.objects.for_tenant(tenant).select_for_update().filter(pk=deployment_id).first()
        if deployment is None:
            raise NotFound("No such deployment in this tenant.")
        if deployment.state == DeploymentState.UNDEPLOYED:
            return deployment
        previous_state = deployment.state
        deployment.state = DeploymentState.UNLOADING
        deployment.save(update_fields=["state", "updated_at"])
        if deployment.min_instances:
            warm_reservation_sync(deployment=deployment)
        audit_record(event_type="deployment.undeployed", target=deployment, old={"state": previous_state},
                     new={"state": DeploymentState.UNDEPLOYED})
        deployment_publish(deployment)
        transaction.on_commit(lambda: queue.deployment_unload(deployment.pk))
    return deployment


def deployment_scale_to_zero(*, tenant: Tenant, deployment_id: int) -> Deployment:
    """Unload a deployment from Triton now (the portal's "Unload now"); the next call
    wakes it. A deployment kept warm by min_instances refuses."""
    deployment = Deployment.objects.for_tenant(tenant).filter(pk=deployment_id).first()
    if deployment is None:
        raise NotFound("No such deployment in this tenant.")
    if deployment.min_instances > 0:
        raise Conflict(f"This deployment keeps {deployment.min_instances} instance(s) warm (min_instances); "
                       "set min_instances to 0 to let it scale to zero.")
    if deployment.state not in (DeploymentState.READY, DeploymentState.COLD):
        raise Conflict(f"Only a ready deployment can be unloaded; this one is {deployment.state}.")
    if deployment.state == DeploymentState.READY:
        queue.deployment_scale_down(deployment.pk, "unload requested")
    return deployment

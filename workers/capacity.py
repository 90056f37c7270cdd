"""Deploy-time checks: what a deployment will reserve, and whether the tenant's limits
allow it (hardware, instances, batch size, deployments, model memory)."""
import math

from gateway.contract.errors import QuotaExceeded
from tenants.models import Tenant
from tenants.quotas import quota_effective
from workers.models import ACTIVE_STATES, Deployment

INSTANCE_OVERHEAD_MB = 64


def model_memory_estimate_mb(*, size_bytes: int, instances: int) -> int:
    """Memory a deployment is expected to take: the weights, twice (file and session), and
    the runtime of each instance."""
    return instances * (math.ceil(2 * size_bytes / 2**20) + INSTANCE_OVERHEAD_MB)


def deployment_instances_reserved(deployment) -> int:
    """The instances a deployment may run at most, over all its replicas: what its memory
    is reserved for."""
    return deployment.max_instances * deployment.replicas


def quota_check_deployment(*, tenant: Tenant, size_bytes: int, instances: int, hardware: str, max_batch_size: int,
                           exclude_deployment_id: int | None = None, max_instances: int | None = None) -> None:
    """Refuse a deployment (or a change of one) that the tenant's limits do not allow.
    `instances` is the most it may run over all replicas (its memory reservation),
    `max_instances` the most per replica (default `instances`). Call inside the
    transaction that writes it, after locking the tenant row."""
    limits = quota_effective(tenant=tenant)["values"]
    if limits["allowed_hardware"] is not None and hardware not in limits["allowed_hardware"]:
        raise QuotaExceeded(f"Your plan does not include {hardware.upper()} deployments "
                            f"(allowed: {', '.join(limits['allowed_hardware'])}).")
    per_replica = instances if max_instances is None else max_instances
    if limits["max_instances"] is not None and per_replica > limits["max_instances"]:
        raise QuotaExceeded(f"At most {limits['max_instances']} instances per deployment; asked for {per_replica}.")
    if limits["max_batch_size"] is not None and max_batch_size > limits["max_batch_size"]:
        raise QuotaExceeded(f"The largest batch size allowed is {limits['max_batch_size']}; asked for "
                            f"{max_batch_size}.")
    active = (Deployment.objects.for_tenant(tenant).filter(state__in=ACTIVE_STATES)
              .select_related("model_version", "graph_version"))
    if exclude_deployment_id:
        active = active.exclude(pk=exclude_deployment_id)
    active = list(active)
    if limits["max_deployments"] is not None and len(active) + 1 > limits["max_deployments"]:
        raise QuotaExceeded(f"Your tenant may have at most {limits['max_deployments']} deployments; undeploy one "
                            "or ask for a higher limit.")
    if limits["max_model_memory_mb"] is not None:
        used = sum(model_memory_estimate_mb(size_bytes=d.target_size_bytes,
                                            instances=deployment_instances_reserved(d)) for d in active)
        wanted = model_memory_estimate_mb(size_bytes=size_bytes, instances=instances)
        if used + wanted > limits["max_model_memory_mb"]:
            raise QuotaExceeded(f"This deployment needs about {wanted} MB; your tenant uses {used} MB of its "
                                f"{limits['max_model_memory_mb']} MB model memory.")

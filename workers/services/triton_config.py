"""The config.pbtxt a deployment's replica is loaded with: batching, instances and the
memory share of each instance."""
import math

from django.conf import settings

from tenants.quotas import quota_effective_value
from workers.capacity import model_memory_estimate_mb
from workers.models import Deployment, ReplicaState, TritonServer
from workers.triton.repository import config_pbtxt


def replica_memory_mb(deployment: Deployment, instances: int | None = None) -> int:
    """What one replica is expected to hold: measured when it has been loaded (scaled to
    the instance count), estimated from the weights it loads before."""
    instances = instances or deployment.instances
    if deployment.memory_mb:
        loaded = deployment.replica_set.filter(state=ReplicaState.READY).values_list("instances", flat=True).first()
        per_instance = deployment.memory_mb / max(loaded or deployment.instances, 1)
        return max(1, math.ceil(per_instance * instances))
    return model_memory_estimate_mb(size_bytes=deployment.target_size_bytes, instances=instances)


def memory_share_mb(deployment: Deployment, server: TritonServer, reserved_mb: float | None = None) -> int | None:
    """The memory one instance of the deployment may allocate beyond what it holds once
    loaded (its Python-backend runner enforces it; see `deployment_config_pbtxt`); None for no share.
    `reserved_mb`: what placement reserved for one instance, when the caller knows it (a
    cold start does: it saves the queries)."""
    reserved = reserved_mb if reserved_mb else replica_memory_mb(deployment, instances=1)
    proportional = math.ceil(settings.DEPLOYMENT_MEMORY_HEADROOM * reserved)
    ceilings = [server.memory_mb]
    plan_limit = quota_effective_value(tenant_id=deployment.tenant_id, field="max_model_memory_mb")
    if plan_limit is not None:
        ceilings.append(plan_limit)
    return max(settings.DEPLOYMENT_MEMORY_SHARE_MB, min(proportional, *ceilings)) or None


def deployment_config_pbtxt(deployment: Deployment, server: TritonServer, instances: int,
                            reserved_mb: float | None = None) -> str:
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
    native_onnx = "onnxruntime" in server.backends
    return config_pbtxt(
        triton_name=deployment.triton_name, **deployment.target_signature(), native_onnx=native_onnx,
        gpu=deployment.hardware == "gpu", max_batch_size=deployment.max_batch_size, instances=instances,
        queue_delay_us=deployment.max_queue_delay_us, preferred_batch_sizes=deployment.preferred_batch_sizes,
        memory_limit_mb=None if native_onnx else memory_share_mb(deployment, server, reserved_mb),
    )

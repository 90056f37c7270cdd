"""Warm reserved memory: the history the `reserved_gb_h` meter bills from.

A deployment reserves memory while `min_instances` ≥ 1 keeps it warm and it is neither
failed nor undeployed (scaled to zero it is woken again at once, so it still reserves).
What it reserves is one replica's memory at `min_instances` instances (measured once it
has been loaded, else the estimate placement uses: `replica_memory_mb`) times its
replicas. The services that change any of these call `warm_reservation_sync` inside
their transaction: creation, settings changes, undeploy, state changes and a memory
re-measure."""
from datetime import datetime

from django.utils import timezone

from workers.models import Deployment, DeploymentState, WarmReservation
from workers.services.triton_config import replica_memory_mb

NOT_RESERVING = (DeploymentState.FAILED, DeploymentState.UNLOADING, DeploymentState.UNDEPLOYED)


def warm_memory_mb(deployment: Deployment) -> int:
    """The memory the deployment keeps reserved now, in MB (0: none)."""
    if deployment.min_instances < 1 or deployment.state in NOT_RESERVING:
        return 0
    return replica_memory_mb(deployment, instances=deployment.min_instances) * max(deployment.replicas, 1)


def warm_reservation_sync(*, deployment: Deployment, now: datetime | None = None) -> WarmReservation | None:
    """Make the reservation history match the deployment as it is now: the open row is
    kept when the reserved memory is unchanged, else closed at `now` and, when memory is
    still reserved, followed by a new one. Returns the open row, if any."""
    now = now or timezone.now()
    want = warm_memory_mb(deployment)
    current = (WarmReservation.unscoped.select_for_update().filter(deployment_id=deployment.pk, ended_at__isnull=True)
               .first())
    if current is not None and current.memory_mb == want:
        return current
    if current is not None:
        current.ended_at = max(now, current.started_at)
        current.save(update_fields=["ended_at"])
    if not want:
        return None
    return WarmReservation.unscoped.create(tenant_id=deployment.tenant_id, deployment=deployment, memory_mb=want,
                                           started_at=now)

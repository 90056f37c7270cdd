"""Live events to the portal: deployment state changes go to the tenant's Channels group,
which the deployments websocket (portal/consumers.py) relays to the tenant's open pages."""
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


def tenant_group(tenant_id: int) -> str:
    return f"tenant-{tenant_id}"


def deployment_payload(deployment) -> dict:
    return {
        "id": deployment.pk,
        "name": deployment.name,
        "state": deployment.state,
        "state_label": deployment.get_state_display(),
        "error": deployment.error,
        "server": deployment.server.name if deployment.server else None,
        "replicas": [r.server.name for r in deployment.replicas_ready()],
        "instances": deployment.instances,
        "ready_at": deployment.ready_at.isoformat() if deployment.ready_at else None,
        "load_seconds": deployment.load_seconds,
    }


def deployment_event_send(deployment) -> None:
    """Best effort: a state change is committed whether or not anyone is watching, and the
    page falls back to polling the REST API when the channel layer is unreachable."""
    event = {"type": "deployment.changed", "deployment": deployment_payload(deployment)}
    try:
        async_to_sync(get_channel_layer().group_send)(tenant_group(deployment.tenant_id), event)
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("deployment event for %s not sent: %s", deployment.pk, exc)

"""Live events to the portal: deployment state changes go to the tenant's Channels group."""
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

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
        "server": deployment.server.name if deployment.server_id and deployment.server else None,
        "ready_at": deployment.ready_at.isoformat() if deployment.ready_at else None,
        "load_seconds": deployment.load_seconds,
    }


def deployment_event_send(deployment) -> None:
    """Best effort: the page falls back to polling when the channel layer is unavailable."""
    try:
        async_to_sync(get_channel_layer().group_send)(
            tenant_group(deployment.tenant_id), {"type": "deployment.changed", "deployment": deployment_payload(deployment)}
        )
    except Exception as exc:
        log.warning("deployment event for %s not sent: %s", deployment.pk, exc)

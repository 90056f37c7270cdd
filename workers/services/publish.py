"""What a deployment change tells the rest of the platform once it commits: its route in
the gateway's directory, and its state on the portal's open pages."""
from concurrent.futures import ThreadPoolExecutor

from django.db import connections, transaction

from workers.directory import directory_put_deployment
from workers.events import deployment_event_send
from workers.models import Deployment
from workers.services.reservations import warm_reservation_sync

_portal_events = ThreadPoolExecutor(max_workers=1, thread_name_prefix="portal-events")


def _event_send(deployment: Deployment) -> None:
    try:
        deployment_event_send(deployment)
    finally:
        # This thread's database connection, if anything opened one, is not left behind.
        connections.close_all()


def deployment_publish(deployment: Deployment) -> None:
    """After commit: the gateway's directory, then (in the background: a cold start does
    not wait for it) the portal's live view."""
    def publish():
        fresh = (Deployment.unscoped.select_related("model_version", "graph_version")
                 .prefetch_related("replica_set__server").filter(pk=deployment.pk).first())
        if fresh is None:
            return
        directory_put_deployment(fresh)
        _portal_events.submit(_event_send, fresh)

    transaction.on_commit(publish)


def deployment_state_set(deployment: Deployment, state: str, **fields) -> None:
    """Save a new state (and `fields`) inside the caller's transaction, and publish it."""
    deployment.state = state
    for key, value in fields.items():
        setattr(deployment, key, value)
    deployment.save(update_fields=["state", "updated_at", *fields.keys()])
    if deployment.min_instances:
        # Failing or being undeployed ends what min_instances reserved; a retry reserves again.
        warm_reservation_sync(deployment=deployment)
    deployment_publish(deployment)

"""The control queue's tasks: each takes ids and calls one service. Services and the
autoscaler queue them by name (workers/queue.py); beat's schedule is in workers/celery.py."""
from celery import shared_task

from workers import autoscaler
from workers.services import lifecycle, reconcile, servers

LOAD_RETRY_S = 2
LOAD_MAX_RETRIES = 60  # about two minutes of waiting for a Triton server


@shared_task(bind=True, queue="control", acks_late=True, max_retries=LOAD_MAX_RETRIES)
def deployment_load(self, deployment_id: int) -> None:
    try:
        lifecycle.deployment_load_run(deployment_id=deployment_id,
                                      final_attempt=self.request.retries >= LOAD_MAX_RETRIES)
    except lifecycle.PlacementPending as exc:
        raise self.retry(exc=exc, countdown=LOAD_RETRY_S) from exc


@shared_task(queue="control", acks_late=True)
def deployment_wake(deployment_id: int) -> None:
    """Queued by the gateway when a call reaches a cold deployment, and by the autoscaler
    to pre-warm one. Waiting for a server with room is the load task's job."""
    try:
        lifecycle.deployment_wake_run(deployment_id=deployment_id)
    except lifecycle.PlacementPending:
        deployment_load.apply_async((deployment_id,), countdown=LOAD_RETRY_S)


@shared_task(queue="control", acks_late=True)
def deployment_scale_down(deployment_id: int, reason: str) -> None:
    lifecycle.deployment_scale_down_run(deployment_id=deployment_id, reason=reason)


@shared_task(queue="control", acks_late=True)
def deployment_reconfigure(deployment_id: int, instances: int | None = None) -> None:
    lifecycle.deployment_reconfigure_run(deployment_id=deployment_id, instances=instances)


@shared_task(queue="control", acks_late=True)
def deployment_replicas_fit(deployment_id: int) -> None:
    lifecycle.deployment_replicas_fit_run(deployment_id=deployment_id)


@shared_task(queue="control", acks_late=True)
def deployment_unload(deployment_id: int) -> None:
    lifecycle.deployment_unload_run(deployment_id=deployment_id)


@shared_task(queue="control", acks_late=True, expires=10)
def servers_check() -> dict:
    return servers.servers_check_run()


@shared_task(queue="control", acks_late=True, expires=30)
def deployments_reconcile() -> list[int]:
    return reconcile.deployments_reconcile_run()


@shared_task(queue="control", acks_late=True, expires=5)
def deployments_autoscale() -> dict:
    return autoscaler.autoscale_run()

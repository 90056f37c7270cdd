from celery import shared_task

from workers import services


@shared_task(acks_late=True)
def deployment_load(deployment_id: int) -> None:
    services.deployment_load_run(deployment_id=deployment_id)


@shared_task(acks_late=True)
def deployment_unload(deployment_id: int) -> None:
    services.deployment_unload_run(deployment_id=deployment_id)


@shared_task(acks_late=True, expires=10)
def servers_check() -> dict:
    return services.servers_check_run()


@shared_task(acks_late=True, expires=30)
def deployments_reconcile() -> list[int]:
    return services.deployments_reconcile_run()

from celery import shared_task

from gateway.directory import directory_sync_all


@shared_task(acks_late=True, expires=60)
def directory_sync() -> dict:
    return directory_sync_all()

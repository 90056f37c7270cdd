from celery import shared_task

from billing import rollups
from billing.quotas import quota_counters_restore


@shared_task(queue="control", acks_late=True, expires=60)
def quota_counters_check() -> int:
    return quota_counters_restore()


@shared_task(queue="control", acks_late=True, expires=60)
def usage_rollups_refresh() -> int:
    return len(rollups.usage_rollups_refresh())

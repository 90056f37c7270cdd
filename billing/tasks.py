from celery import shared_task

from billing import invoicing, reconciliation, rollups, spend
from billing.quotas import quota_counters_restore
from billing.stripe_sync import stripe_sync as stripe_sync_run


@shared_task(queue="billing", acks_late=True, expires=60)
def quota_counters_check() -> int:
    return quota_counters_restore()


@shared_task(queue="billing", acks_late=True, expires=60)
def usage_rollups_refresh() -> int:
    return len(rollups.usage_rollups_refresh())


@shared_task(queue="billing", acks_late=True, expires=60)
def spend_refresh() -> int:
    return spend.spend_refresh_all()


@shared_task(queue="billing", acks_late=True, expires=60)
def invoices_refresh() -> int:
    return invoicing.invoices_refresh()


@shared_task(queue="billing", acks_late=True, expires=300)
def invoices_finalize_due() -> int:
    return len(invoicing.invoices_finalize_due())


@shared_task(queue="billing", acks_late=True, expires=60)
def stripe_sync() -> dict:
    return stripe_sync_run()


@shared_task(queue="billing", acks_late=True, expires=3600)
def billing_reconcile() -> int:
    return len(reconciliation.billing_reconcile_recent())

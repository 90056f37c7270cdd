import os

from celery import Celery
from django.conf import settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("platform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers", "billing", "tenants"])
# The projection into Redis sits above the task modules (docs/architecture.md).
app.autodiscover_tasks(["workers"], related_name="projection")

# The one place that defines the beat schedule.
app.conf.beat_schedule = {
    "triton-servers-health": {"task": "workers.tasks.servers_check", "schedule": 5.0},
    "deployments-reconcile": {"task": "workers.tasks.deployments_reconcile", "schedule": 15.0},
    # Scale to zero, pre-warm and instance counts (workers/autoscaler.py).
    "deployments-autoscale": {"task": "workers.tasks.deployments_autoscale",
                              "schedule": settings.AUTOSCALE_INTERVAL_S},
    "directory-sync": {"task": "workers.projection.directory_sync", "schedule": 30.0},
    # Budget counters Redis lost (a restart without persistence) come back from metered usage.
    "quota-counters-check": {"task": "billing.tasks.quota_counters_check", "schedule": 60.0},
    # Hourly usage rollups, what rating reads: the current hour and any hour a late event reached.
    "usage-rollups-refresh": {"task": "billing.tasks.usage_rollups_refresh", "schedule": 60.0},
    # Spend limits: the gateway's prices, limits, estimate offsets and past-due blocks, and the spend alerts.
    "spend-refresh": {"task": "billing.tasks.spend_refresh", "schedule": 60.0},
    # Invoices: the month's live drafts, at most a minute behind the rollups; drafts past
    # their month's end plus the grace are finalized (billing/invoicing).
    "invoices-refresh": {"task": "billing.tasks.invoices_refresh", "schedule": 60.0},
    "invoices-finalize-due": {"task": "billing.tasks.invoices_finalize_due", "schedule": 300.0},
    # Stripe (billing/stripe_sync): customers, meters, subscriptions and the meter events of
    # the hours just owed; does nothing without STRIPE_API_KEY.
    "stripe-sync": {"task": "billing.tasks.stripe_sync", "schedule": 60.0},
    # Three-way reconciliation of this month and the last: events, rollups, invoices, Stripe.
    "billing-reconcile": {"task": "billing.tasks.billing_reconcile", "schedule": 24 * 3600.0},
}

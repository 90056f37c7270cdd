"""Deployment lifecycle: create, configure, load into Triton, scale to zero and back,
undeploy; placement on servers with room; server health and reconcile.

Views call the `deployment_*` write services (deployments.py); the Celery tasks call the
`*_run` ones (lifecycle.py, servers.py, reconcile.py), which talk to Triton and are
idempotent. The names other apps use are importable from here."""
from workers.services.deployments import (
    deployment_create,
    deployment_retry,
    deployment_scale_to_zero,
    deployment_settings_update,
    deployment_undeploy,
)
from workers.services.lifecycle import (
    PlacementPending,
    deployment_load_run,
    deployment_reconfigure_run,
    deployment_replicas_fit_run,
    deployment_scale_down_run,
    deployment_unload_run,
    deployment_wake_run,
)
from workers.services.reconcile import deployments_reconcile_run
from workers.services.servers import server_restarted_run, servers_check_run

__all__ = [
    "PlacementPending",
    "deployment_create",
    "deployment_load_run",
    "deployment_reconfigure_run",
    "deployment_replicas_fit_run",
    "deployment_retry",
    "deployment_scale_down_run",
    "deployment_scale_to_zero",
    "deployment_settings_update",
    "deployment_undeploy",
    "deployment_unload_run",
    "deployment_wake_run",
    "deployments_reconcile_run",
    "server_restarted_run",
    "servers_check_run",
]

"""The control plane's projection into Redis, rebuilt whole from PostgreSQL.

Each layer writes its own entries as it changes them (tenants/directory.py for keys and
limits, tenants/quotas for what limits resolve to, workers/directory.py for routes).
Redis may lose them (it keeps nothing on disk here), so `directory_sync_all` rewrites
everything; beat runs it periodically and at start-up, so a lost projection heals itself
within seconds."""
from celery import shared_task

from gateway.contract.keys import (
    INFLIGHT_PREFIX,
    KEY_PREFIX,
    LIMITS_PREFIX,
    ROUTE_PREFIX,
    key_entry_name,
    limits_entry_name,
    route_entry_name,
)
from tenants.directory import api_key_entry, redis_client
from tenants.models import ApiKey
from tenants.quotas import quota_gateway_limits_all
from workers.directory import deployment_entry
from workers.models import Deployment


def inflight_sweep() -> int:
    """Drop the expired leases (of gateways that died holding them): the gateway no longer
    counts them, this only reclaims their memory. Returns how many were dropped."""
    r = redis_client()
    seconds, micros = r.time()
    now = seconds * 1_000_000 + micros
    pipe = r.pipeline(transaction=False)
    for name in r.scan_iter(match=f"{INFLIGHT_PREFIX}*", count=1000):
        pipe.zremrangebyscore(name, "-inf", now)
    return sum(pipe.execute())


def directory_sync_all() -> dict:
    """Rewrite the whole projection from PostgreSQL; remove entries nothing backs."""
    r = redis_client()
    wanted: dict[str, dict] = {}
    for key in ApiKey.unscoped.all():
        wanted[key_entry_name(key.secret_hash)] = api_key_entry(key)
    for deployment in Deployment.unscoped.select_related("model_version").prefetch_related("replica_set__server"):
        if deployment.is_routable:
            wanted[route_entry_name(deployment.tenant_id, deployment.name)] = deployment_entry(deployment)
    for scope, mapping in quota_gateway_limits_all().items():
        if mapping:
            wanted[limits_entry_name(scope)] = mapping
    existing = set()
    for prefix in (KEY_PREFIX, ROUTE_PREFIX, LIMITS_PREFIX):
        existing |= set(r.scan_iter(match=f"{prefix}*", count=1000))
    # One MULTI: a request admitted meanwhile sees the old entries or the new, never none.
    pipe = r.pipeline(transaction=True)
    for name in existing - wanted.keys():
        pipe.delete(name)
    for name, mapping in wanted.items():
        pipe.delete(name)
        pipe.hset(name, mapping=mapping)
    pipe.execute()
    return {"entries": len(wanted), "removed": len(existing - wanted.keys()), "expired_leases": inflight_sweep()}


@shared_task(queue="control", acks_late=True, expires=60)
def directory_sync() -> dict:
    return directory_sync_all()

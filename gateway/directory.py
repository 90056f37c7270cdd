"""The gateway's view of the control plane, kept in Redis.

The control plane writes here (after its transactions commit); the gateway only reads,
with a short in-process cache. Redis may lose this data (it keeps nothing on disk here),
so `directory_sync_all` rebuilds it from PostgreSQL; beat runs it periodically and at
start-up, so a lost projection heals itself within seconds.

Layout:
  gw:key:<sha256 of key>            hash  tenant_id, key_id, scopes, revoked
  gw:route:<tenant_id>:<name>       hash  v (version), deployment_id, model_version_id, triton_model,
                                          state, http_url, grpc_url (of its ready replicas,
                                          space-separated), error, sig (the signature
                                          requests are checked against: gateway/signature.py)
  gw:lim:<scope>                    hash  the request-path limits of a scope (t:<tenant_id>,
                                          d:<deployment_id>, k:<key_id>), tenant ones resolved
                                          against the plan: rate, burst, conc, mreq, mreq_soft,
                                          mcs, mcs_soft, payload (absent = no limit)

gw:wake:<deployment_id> marks a cold deployment whose wake is queued (gateway/coldstart.py);
going cold again clears it. The gateway's own state lives beside it: gw:rate:<scope> (GCRA arrival time),
gw:inflight:<scope> (leases of requests in flight) and gw:use:<scope>:<yyyymm> (monthly
requests and compute microseconds), all written by the gateway's scripts (gateway/lua/).
"""
import redis
from django.conf import settings

from gateway.signature import signature_text

KEY_PREFIX = "gw:key:"
ROUTE_PREFIX = "gw:route:"
LIMITS_PREFIX = "gw:lim:"
INFLIGHT_PREFIX = "gw:inflight:"
USE_PREFIX = "gw:use:"
USAGE_STREAM = "usage:events"
WAKE_PREFIX = "gw:wake:"

_client: redis.Redis | None = None


def redis_client() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    return _client


def key_entry_name(secret_hash: str) -> str:
    return f"{KEY_PREFIX}{secret_hash}"


def route_entry_name(tenant_id: int, deployment_name: str) -> str:
    return f"{ROUTE_PREFIX}{tenant_id}:{deployment_name}"


def api_key_entry(api_key) -> dict:
    return {
        "tenant_id": api_key.tenant_id,
        "key_id": api_key.pk,
        "scopes": ",".join(api_key.scopes),
        "revoked": "1" if api_key.revoked_at else "0",
    }


# Writes a route unless Redis holds a newer one: two publishers that read the row at
# different times may reach Redis in the other order, and the older state must not win.
ROUTE_PUT = """
local current = redis.call('HGET', KEYS[1], 'v')
if current and tonumber(current) > tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
if ARGV[1] ~= '' then redis.call('DEL', ARGV[1]) end
return 1
"""


def deployment_entry(deployment) -> dict:
    servers = [replica.server for replica in deployment.replicas_ready() if replica.server.healthy]
    return {
        # The version: the row's last change (microseconds), first so that ROUTE_PUT finds it.
        "v": int(deployment.updated_at.timestamp() * 1_000_000) if deployment.updated_at else 0,
        "deployment_id": deployment.pk,
        "model_version_id": deployment.model_version_id,
        "triton_model": deployment.triton_name,
        "state": deployment.state,
        "http_url": " ".join(server.http_url for server in servers),
        "grpc_url": " ".join(server.grpc_url for server in servers if server.grpc_url),
        "error": deployment.error[:500],
        "sig": deployment_signature(deployment),
    }


def deployment_signature(deployment) -> str:
    version = deployment.model_version
    return signature_text(inputs=version.inputs, outputs=version.outputs, has_batch_dim=version.has_batch_dim,
                          max_batch_size=deployment.max_batch_size)


def directory_put_api_key(api_key) -> None:
    redis_client().hset(key_entry_name(api_key.secret_hash), mapping=api_key_entry(api_key))


def directory_put_deployment(deployment) -> None:
    name = route_entry_name(deployment.tenant_id, deployment.name)
    if not deployment.is_routable:
        redis_client().delete(name)
        return
    entry = deployment_entry(deployment)
    args = [item for pair in entry.items() for item in pair]
    # Gone cold: the next call must wake it, whoever woke it last time.
    wake = f"{WAKE_PREFIX}{deployment.pk}" if deployment.state == "cold" else ""
    redis_client().eval(ROUTE_PUT, 1, name, wake, *args)


def limits_entry_name(scope: str) -> str:
    return f"{LIMITS_PREFIX}{scope}"


def directory_put_limits(scope: str, mapping: dict) -> None:
    """Replace a scope's limits at once (MULTI), so the gateway never sees half of a change."""
    pipe = redis_client().pipeline(transaction=True)
    pipe.delete(limits_entry_name(scope))
    if mapping:
        pipe.hset(limits_entry_name(scope), mapping=mapping)
    pipe.execute()


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
    from tenants.models import ApiKey
    from tenants.quotas import quota_gateway_limits_all
    from workers.models import Deployment

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

"""The control plane's Redis connection, and the part of the gateway's directory that
tenants own: one entry per API key (gw:key:*), and the limits of a scope (gw:lim:*).

Entries are written after the transaction that changed them commits; the gateway only
reads them. Names and formats are the contract's (gateway/contract/keys.py). The whole
projection is rebuilt from PostgreSQL by workers/projection.py."""
import redis
from django.conf import settings

from gateway.contract.keys import key_entry_name, limits_entry_name

_client: redis.Redis | None = None


def redis_client() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    return _client


def api_key_entry(api_key) -> dict:
    return {
        "tenant_id": api_key.tenant_id,
        "key_id": api_key.pk,
        "scopes": ",".join(api_key.scopes),
        "revoked": "1" if api_key.revoked_at else "0",
    }


def directory_put_api_key(api_key) -> None:
    redis_client().hset(key_entry_name(api_key.secret_hash), mapping=api_key_entry(api_key))


def directory_put_limits(scope: str, mapping: dict) -> None:
    """Replace a scope's limits at once (MULTI), so the gateway never sees half of a change."""
    pipe = redis_client().pipeline(transaction=True)
    pipe.delete(limits_entry_name(scope))
    if mapping:
        pipe.hset(limits_entry_name(scope), mapping=mapping)
    pipe.execute()

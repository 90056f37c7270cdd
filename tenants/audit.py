"""The audit log: who changed a plan, quota, API key or deployment setting, when, from
what to what, and through which surface (Zulip's RealmAuditLog pattern).

Services call `audit_record` inside the transaction that makes the change, so a change
and its record commit together or not at all. Who acts comes from the request's context,
set once per request by the surface that received it (`audit_acting`): the admin, the
REST API (a user's session or an API key), or a portal page. Anything else (Celery tasks,
management commands) is the system."""
import contextvars
from contextlib import contextmanager
from dataclasses import dataclass

from tenants.models import AuditLog, Surface


@dataclass(frozen=True)
class Actor:
    surface: str = Surface.SYSTEM
    user: object = None
    api_key: object = None


SYSTEM = Actor()
# The object type recorded for a model, where its model name is not already the API's word.
OBJECT_TYPES = {"apikey": "api_key", "billingaccount": "billing_account", "creditnote": "credit_note",
                "graphversion": "graph_version", "mlmodel": "model", "priceversion": "price_version"}

_actor: contextvars.ContextVar[Actor | None] = contextvars.ContextVar("audit_actor", default=None)


def audit_actor() -> Actor:
    """Who is acting now: the surface's actor inside `audit_acting`, else the system."""
    return _actor.get() or SYSTEM


@contextmanager
def audit_acting(*, surface: str, user=None, api_key=None):
    """Changes made inside are recorded as made by `user` (or `api_key`) through `surface`."""
    if user is not None and not getattr(user, "is_authenticated", False):
        user = None
    token = _actor.set(Actor(surface=surface, user=user, api_key=api_key))
    try:
        yield
    finally:
        _actor.reset(token)


def audit_changes(old: dict, new: dict) -> tuple[dict, dict]:
    """The fields whose value differs, as (old values, new values)."""
    changed = [field for field in sorted(old.keys() | new.keys()) if old.get(field) != new.get(field)]
    return {field: old.get(field) for field in changed}, {field: new.get(field) for field in changed}


def audit_record(*, event_type: str, target, old: dict | None = None, new: dict | None = None,
                 tenant=None) -> AuditLog | None:
    """Record a change of `target` (a model instance). With both `old` and `new`, only the
    fields that differ are kept, and nothing is recorded when none does. `tenant` defaults
    to the target's own (none for a platform-wide object such as a plan)."""
    if old is not None and new is not None:
        old, new = audit_changes(old, new)
        if not new and not old:
            return None
    actor = audit_actor()
    if tenant is None:
        tenant_id = target.pk if target._meta.label == "tenants.Tenant" else getattr(target, "tenant_id", None)
    else:
        tenant_id = tenant.pk
    return AuditLog.unscoped.create(
        tenant_id=tenant_id, surface=actor.surface, acting_user=actor.user, acting_api_key=actor.api_key,
        event_type=event_type, object_type=OBJECT_TYPES.get(target._meta.model_name, target._meta.model_name),
        object_id=target.pk, object_repr=str(target)[:200], old_value=old, new_value=new,
    )


def audit_log_list(*, tenant, event_type: str | None = None, object_type: str | None = None, since=None,
                   until=None):
    """The tenant's own log, newest first; `since` and `until` bound occurred_at (inclusive)."""
    rows = AuditLog.objects.for_tenant(tenant).select_related("acting_user", "acting_api_key")
    if event_type:
        rows = rows.filter(event_type=event_type)
    if object_type:
        rows = rows.filter(object_type=object_type)
    if since is not None:
        rows = rows.filter(occurred_at__gte=since)
    if until is not None:
        rows = rows.filter(occurred_at__lte=until)
    return rows.order_by("-occurred_at", "-id")

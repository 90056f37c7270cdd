import secrets

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from gateway.contract.errors import NotFound, PlatformError
from gateway.contract.hashing import hash_api_key
from tenants.audit import audit_record
from tenants.directory import directory_put_api_key
from tenants.models import ApiKey, Membership, Role, Scope, Tenant
from tenants.signals import tenant_created

User = get_user_model()

KEY_PREFIX_LEN = 8


def tenant_create(*, name: str, slug: str, plan=None) -> Tenant:
    """A tenant on `plan` (empty: the default plan). Its limits reach the gateway once it
    commits: tenants.quotas answers tenant_created."""
    with transaction.atomic():
        tenant = Tenant(name=name, slug=slug, plan=plan)
        tenant.full_clean()
        tenant.save()
        tenant_created.send(sender=Tenant, tenant=tenant)
    return tenant


def membership_add(*, tenant: Tenant, user, role: str = Role.MEMBER) -> Membership:
    membership, _ = Membership.unscoped.update_or_create(tenant=tenant, user=user, defaults={"role": role})
    return membership


def user_create(*, username: str, password: str, email: str = "") -> "User":
    user = User(username=username, email=email)
    user.set_password(password)
    user.full_clean()
    user.save()
    return user


def api_key_create(*, tenant: Tenant, label: str, scopes: list[str], actor=None) -> tuple[ApiKey, str]:
    """Create a key and return it with its secret, which is never stored."""
    label = (label or "").strip()
    if not label:
        raise PlatformError("Give the key a label, so that you can tell your keys apart.")
    valid = {s.value for s in Scope}
    scopes = sorted(set(scopes or []))
    if not scopes:
        raise PlatformError(f"Choose at least one scope: {', '.join(sorted(valid))}.")
    unknown = set(scopes) - valid
    if unknown:
        raise PlatformError(f"Unknown scope(s) {', '.join(sorted(unknown))}; valid: {', '.join(sorted(valid))}.")
    prefix = secrets.token_hex(KEY_PREFIX_LEN // 2)
    raw_key = f"ik_{prefix}_{secrets.token_urlsafe(32)}"
    with transaction.atomic():
        api_key = ApiKey(
            tenant=tenant, label=label[:120], prefix=prefix, secret_hash=hash_api_key(raw_key),
            scopes=scopes, created_by=actor,
        )
        api_key.full_clean()
        api_key.save()
        audit_record(event_type="api_key.created", target=api_key, new={"label": api_key.label, "scopes": scopes})
        transaction.on_commit(lambda: directory_put_api_key(api_key))
    return api_key, raw_key


def api_key_revoke(*, tenant: Tenant, key_id: int) -> ApiKey:
    with transaction.atomic():
        api_key = ApiKey.objects.for_tenant(tenant).select_for_update().filter(pk=key_id).first()
        if api_key is None:
            raise NotFound("No such API key in this tenant.")
        if api_key.revoked_at is None:
            api_key.revoked_at = timezone.now()
            api_key.save(update_fields=["revoked_at"])
            audit_record(event_type="api_key.revoked", target=api_key, old={"revoked_at": None},
                         new={"revoked_at": api_key.revoked_at})
        transaction.on_commit(lambda: directory_put_api_key(api_key))
    return api_key


def api_key_authenticate(*, raw_key: str) -> ApiKey | None:
    """The control plane's key check (REST API). The gateway has its own, Redis-backed."""
    if not raw_key or not raw_key.startswith("ik_"):
        return None
    api_key = ApiKey.unscoped.select_related("tenant").filter(secret_hash=hash_api_key(raw_key)).first()
    if api_key is None or api_key.revoked_at is not None:
        return None
    now = timezone.now()
    if api_key.last_used_at is None or (now - api_key.last_used_at).total_seconds() > 60:
        ApiKey.unscoped.filter(pk=api_key.pk).update(last_used_at=now)
    return api_key

"""Tenancy fails closed: tenant-owned rows are reached through `Model.objects.for_tenant(t)`.

Any other use of `objects` raises. The explicit bypass, for the admin, workers and
maintenance code, is the `unscoped` manager (grep for it)."""
from django.db import models


class TenantRequired(RuntimeError):
    pass


class TenantScopedQuerySet(models.QuerySet):
    pass


class TenantScopedManager(models.Manager):
    def get_queryset(self):
        raise TenantRequired(
            f"{self.model.__name__}.objects needs a tenant: use .for_tenant(tenant) "
            f"or, deliberately, {self.model.__name__}.unscoped"
        )

    def for_tenant(self, tenant) -> TenantScopedQuerySet:
        if tenant is None or getattr(tenant, "pk", None) is None:
            raise TenantRequired(f"{self.model.__name__}.objects.for_tenant() got no tenant")
        return TenantScopedQuerySet(self.model, using=self._db).filter(tenant_id=tenant.pk)


class TenantOwned(models.Model):
    """Base for every tenant-owned model. `unscoped` is the default manager so that
    Django internals (admin, related lookups) keep working; application code uses
    `objects.for_tenant()`."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")

    unscoped = models.Manager()
    objects = TenantScopedManager()

    class Meta:
        abstract = True
        default_manager_name = "unscoped"
        base_manager_name = "unscoped"

"""The quotas layer's answers to the signals of the tenants core (connected in TenantsConfig.ready)."""
from django.dispatch import receiver

from tenants.quotas.publish import tenant_limits_publish
from tenants.signals import tenant_created


@receiver(tenant_created)
def tenant_created_publish_limits(sender, *, tenant, **kwargs) -> None:
    """A new tenant's limits (its plan's, or the default plan's) reach the gateway once it commits."""
    tenant_limits_publish(tenant=tenant)

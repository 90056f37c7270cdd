"""What the tenants core tells the layers above it, without importing them."""
from django.dispatch import Signal

# Sent inside the transaction that creates a tenant (kwarg `tenant`), once it is saved.
# The quotas layer answers by publishing the tenant's limits when that transaction commits.
tenant_created = Signal()

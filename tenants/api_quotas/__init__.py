"""Quotas over the REST API: what a tenant may use and uses (members read), the limits
its owners put on their own deployments and keys, and the staff-only admin endpoints
for plans, quotas at every level and a tenant's plan.

Every change goes through the services of tenants.quotas, so it is in force on the
gateway once committed.

  limits.py        the limits serializers every endpoint shares
  overview.py      a tenant's limits and consumption (GET /quotas)
  scope_limits.py  a tenant's own limits on its deployments and keys
  staff.py         the staff-only permission and error responses
  plans.py         plans and a tenant's plan (staff)
  quotas.py        quotas at every level (staff)"""

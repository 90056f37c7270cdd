"""Every Redis key the platform uses, by the one name each has in Python and in Lua.

Written by the control plane (its projection of PostgreSQL), read by the gateway:
  gw:key:<sha256 of key>            hash  tenant_id, key_id, scopes, revoked
  gw:route:<tenant_id>:<name>       hash  v (version), deployment_id, model_version_id, triton_model,
                                          state, http_url, grpc_url (of its ready replicas,
                                          space-separated), error, sig (the signature
                                          requests are checked against: signature.py),
                                          hw (its hardware, cpu or gpu: which prices apply)
  gw:lim:<scope>                    hash  the request-path limits of a scope (t:<tenant_id>,
                                          d:<deployment_id>, k:<key_id>), tenant ones resolved
                                          against the plan: rate, burst, conc, mreq, mreq_soft,
                                          mcs, mcs_soft, payload (absent = no limit)

Written by billing (billing/spend.py: the tenant's prices, spend limit and standing):
  gw:bill:<tenant_id>               hash  req_cpu, ms_cpu, req_gpu, ms_gpu: list prices in
                                          micro-units of the plan's currency per request
                                          and per compute ms on that hardware (decimal
                                          strings; absent = free); limit (micro-units;
                                          absent = none), soft ("1": flag, do not refuse),
                                          cur (currency, for messages); month (yyyymm),
                                          ofs: that month's exact ledger total less what
                                          the counter charged for the same usage, in
                                          micro-units (may be negative), ofs_next: the
                                          next month's opening (its base fee); blocked
                                          ("1": past due beyond the grace)

Written by the gateway's scripts (lua/):
  gw:rate:<scope>                   string  GCRA theoretical arrival time
  gw:inflight:<scope>               zset    leases of requests in flight, scored by expiry
  gw:use:<scope>:<yyyymm>           hash    req, cus: the month's requests and compute µs;
                                            spend (tenant scopes): their cost at list prices,
                                            in micro-units (gw:bill:<tenant_id>)
  gw:act:<deployment_id>            hash    activity since the autoscaler's last pass
  usage:events                      stream  one usage event per request (usage.py)

Markers:
  gw:wake:<deployment_id>   a cold deployment's wake is queued; going cold clears it
  gw:heal:<deployment_id>   a dead runner's reload is queued (at most one per 10 s)
  gw:autoscale:at / :lock   the autoscaler's last pass and its single-runner lock
"""
KEY_PREFIX = "gw:key:"
ROUTE_PREFIX = "gw:route:"
LIMITS_PREFIX = "gw:lim:"
RATE_PREFIX = "gw:rate:"
INFLIGHT_PREFIX = "gw:inflight:"
USE_PREFIX = "gw:use:"
ACTIVITY_PREFIX = "gw:act:"
BILL_PREFIX = "gw:bill:"
WAKE_PREFIX = "gw:wake:"
HEAL_PREFIX = "gw:heal:"
AUTOSCALE_LAST_PASS = "gw:autoscale:at"
AUTOSCALE_LOCK = "gw:autoscale:lock"
USAGE_STREAM = "usage:events"


def key_entry_name(secret_hash: str) -> str:
    return f"{KEY_PREFIX}{secret_hash}"


def route_entry_name(tenant_id: int | str, deployment_name: str) -> str:
    return f"{ROUTE_PREFIX}{tenant_id}:{deployment_name}"


def limits_entry_name(scope: str) -> str:
    return f"{LIMITS_PREFIX}{scope}"


def use_counter_name(scope: str, month: str) -> str:
    """A scope's monthly counter; `month` is yyyymm (UTC)."""
    return f"{USE_PREFIX}{scope}:{month}"


def bill_entry_name(tenant_id: int | str) -> str:
    """A tenant's prices, spend limit and standing, as billing publishes them."""
    return f"{BILL_PREFIX}{tenant_id}"


def wake_marker_name(deployment_id: int | str) -> str:
    return f"{WAKE_PREFIX}{deployment_id}"


def heal_marker_name(deployment_id: int | str) -> str:
    return f"{HEAL_PREFIX}{deployment_id}"


def activity_name(deployment_id: int | str) -> str:
    return f"{ACTIVITY_PREFIX}{deployment_id}"

"""A scope's consumption against its limits, read from the gateway's own counters in Redis."""
import time

from django.utils import timezone

from gateway.contract.keys import INFLIGHT_PREFIX, use_counter_name
from tenants.directory import redis_client


def usage_month() -> str:
    """The month the gateway's counters count now: yyyymm (UTC)."""
    return timezone.now().strftime("%Y%m")


def scope_consumption(scope: str) -> dict:
    """This month's billable requests and compute seconds of a scope, and its requests in
    flight, as the gateway counts them."""
    r = redis_client()
    pipe = r.pipeline(transaction=False)
    pipe.hmget(use_counter_name(scope, usage_month()), "req", "cus")
    pipe.zcount(f"{INFLIGHT_PREFIX}{scope}", f"({int(time.time() * 1_000_000)}", "+inf")
    (req, cus), in_flight = pipe.execute()
    return {"requests": int(req or 0), "compute_seconds": round(int(cus or 0) / 1e6, 3), "in_flight": in_flight}

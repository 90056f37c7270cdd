"""Spend limits and past-due refusals as callers meet them, on the real stack: a hard limit
refuses once the estimate reaches it, with an overshoot bounded by the requests in flight,
across two gateway processes; a soft one flags; a tenant past due beyond its grace gets
402 until it pays (billing/spend.py)."""
import http.client
import json
import math
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billing.invoicing import month_rating, month_start
from billing.models import PriceVersion, QuotaAlert, UsageEvent
from billing.rollups import usage_rollups_refresh
from billing.spend import billing_past_due_set, spend_limit_set
from gateway.contract.keys import bill_entry_name, use_counter_name
from tenants.directory import redis_client
from tenants.models import Plan
from tenants.quotas import tenant_plan_set
from tenants.services import api_key_create
from tests.gateway.test_gateway import digits_deployment, infer_body, wait_usage  # noqa: F401
from tests.gateway.test_quotas import infer, second_gateway  # noqa: F401

pytestmark = pytest.mark.integration

# Per 1,000 requests and per compute second: 1,000 and 1 micro-units per request and per ms.
REQUESTS_PRICE, COMPUTE_PRICE, BASE_FEE = Decimal("1.00"), Decimal("0.001"), Decimal("0.02")
PER_REQUEST, PER_MS = 1000, 1
MICRO = Decimal(1_000_000)


@pytest.fixture
def priced(acme):
    """acme on a plan with a base fee, and prices per request and per CPU compute second."""
    plan = Plan.objects.create(name="Metered", slug="metered")
    version = PriceVersion.objects.create(plan=plan, effective_from=datetime(2020, 1, 1, tzinfo=UTC), currency="usd",
                                          base_fee=BASE_FEE)
    version.prices.create(component="requests", tiers=[{"up_to": None, "unit_price": str(REQUESTS_PRICE)}])
    version.prices.create(component="compute_cpu", tiers=[{"up_to": None, "unit_price": str(COMPUTE_PRICE)}])
    tenant_plan_set(tenant=acme, plan=plan)
    return plan


def cost_micro(event: UsageEvent) -> Decimal:
    """What a billable request costs at these prices, exactly."""
    return PER_REQUEST + PER_MS * Decimal(str(round(event.compute_ms, 3)))


def until_refused(ports: list[int], raw: str, *, clients_per_port: int, refusals: int = 2,
                  deadline_s: float = 25.0) -> list[tuple[int, dict, dict]]:
    """Keep-alive clients, all starting at once, each sending until it is refused
    `refusals` times: every answer, as (status, headers, body)."""
    answers, lock = [], threading.Lock()
    start = threading.Barrier(len(ports) * clients_per_port)
    stop_at = time.monotonic() + deadline_s
    headers = {"Authorization": f"Bearer {raw}", "Content-Type": "application/json"}
    body = infer_body()

    def client(port):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        refused = 0
        start.wait()
        while refused < refusals and time.monotonic() < stop_at:
            connection.request("POST", "/v2/models/digits/infer", body=body, headers=headers)
            response = connection.getresponse()
            answer = (response.status, {k.lower(): v for k, v in response.getheaders()}, json.loads(response.read()))
            refused += answer[0] != 200
            with lock:
                answers.append(answer)
        connection.close()

    workers = [threading.Thread(target=client, args=(port,)) for port in ports for _ in range(clients_per_port)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return answers


def test_a_hard_spend_limit_overshoots_at_most_the_requests_in_flight_across_two_gateways(
        stack, acme, alice, priced, digits_deployment, second_gateway):
    _, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    limit = Decimal("0.05")
    spend_limit_set(tenant=acme, amount=limit, enforcement="hard", actor=alice)
    # The month opens with its base fee: the gateway's estimate starts there.
    entry = redis_client().hgetall(bill_entry_name(acme.pk))
    assert (entry["limit"], entry["ofs"], entry["req_cpu"], entry["ms_cpu"]) == ("50000", "20000", "1000", "1")

    clients_per_port = 8
    ports = [int(stack.gateway_url.rsplit(":", 1)[1]), second_gateway]
    answers = until_refused(ports, raw, clients_per_port=clients_per_port)
    served = [a for a in answers if a[0] == 200]
    refused = [a for a in answers if a[0] != 200]
    assert len(refused) == clients_per_port * len(ports) * 2
    for status, headers, body in refused:
        assert (status, body["code"], headers.get("x-should-retry")) == (429, "insufficient_quota", "false")
        assert "monthly spend limit of 0.05 USD" in body["error"]
        assert "retry-after" not in headers

    events = [e for e in wait_usage(acme, len(served)) if e.status == 200]
    assert len(events) == len(served)
    # The gateway's counter charged each request its list price, rounded up.
    counter = redis_client().hget(use_counter_name(f"t:{acme.pk}", datetime.now(UTC).strftime("%Y%m")), "spend")
    assert int(counter) == sum(math.ceil(cost_micro(e)) for e in events)

    # The ledger: base fee + every served request at these prices. It reached the limit,
    # and went past it by at most the requests in flight (one per client) at the longest
    # compute time seen.
    spent = BASE_FEE * MICRO + sum(cost_micro(e) for e in events)
    in_flight = clients_per_port * len(ports)
    bound = in_flight * (PER_REQUEST + PER_MS * Decimal(str(max(e.compute_ms for e in events))))
    # (Refusals began once the counter, each request rounded up to the micro-unit, reached it.)
    assert limit * MICRO - len(events) <= spent <= limit * MICRO + bound
    # The same, as the invoice rates it: three lines, each rounded to the cent.
    usage_rollups_refresh()
    rating = month_rating(tenant=acme, period_start=month_start(datetime.now(UTC)))
    assert len(rating.lines) == 3 and abs(rating.total - spent / MICRO) <= Decimal("0.015")
    assert rating.total <= limit + bound / MICRO + Decimal("0.015")

    # Raising the limit lets the tenant in again at once.
    spend_limit_set(tenant=acme, amount=Decimal("1.00"), enforcement="hard", actor=alice)
    assert infer(stack, raw)[0] == 200


def test_a_soft_spend_limit_serves_and_flags(stack, acme, alice, priced, digits_deployment):
    _, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    spend_limit_set(tenant=acme, amount=Decimal("0.02"), enforcement="soft", actor=alice)
    # The base fee alone reaches it: every request is served, flagged.
    answers = [infer(stack, raw) for _ in range(3)]
    assert [(a[0], a[1].get("x-quota-warning")) for a in answers] == [(200, "tenant_spend_limit")] * 3
    events = wait_usage(acme, 3)
    assert {e.flags for e in events} == {"tenant_spend_limit"}
    # Spend alerts come from the ledger (billing/alerts.py), not from the flag.
    assert not QuotaAlert.objects.for_tenant(acme).exists()
    # A hard limit of the same amount refuses the next one; no limit serves it unflagged.
    spend_limit_set(tenant=acme, amount=Decimal("0.02"), enforcement="hard", actor=alice)
    assert infer(stack, raw)[0] == 429
    spend_limit_set(tenant=acme, amount=None, enforcement="hard", actor=alice)
    status, headers, _ = infer(stack, raw)
    assert (status, headers.get("x-quota-warning")) == (200, None)


def test_past_due_is_served_in_the_grace_then_402_until_paid(stack, acme, priced, digits_deployment):
    _, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    now = datetime.now(UTC)
    billing_past_due_set(tenant=acme, since=now - timedelta(hours=1))
    assert infer(stack, raw)[0] == 200

    billing_past_due_set(tenant=acme, since=now - timedelta(days=3, minutes=1))
    counter = use_counter_name(f"t:{acme.pk}", now.strftime("%Y%m"))
    before = redis_client().hgetall(counter)
    status, headers, body = infer(stack, raw)
    assert (status, json.loads(body)["code"], headers["x-should-retry"]) == (402, "payment_required", "false")
    assert "update the payment method on the portal's Billing page" in json.loads(body)["error"]
    # A refusal consumes nothing.
    assert redis_client().hgetall(counter) == before

    billing_past_due_set(tenant=acme, since=None)  # invoice.paid
    assert infer(stack, raw)[0] == 200

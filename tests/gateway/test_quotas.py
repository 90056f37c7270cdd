"""Request-path quotas as callers meet them, on the real stack: rates, concurrency,
budgets, payload sizes, their headers, their precedence, live changes, several gateway
processes, a gateway or Redis that dies."""
import http.client
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from billing.models import QuotaAlert, UsageEvent
from gateway.contract.hashing import hash_api_key
from gateway.contract.keys import key_entry_name, limits_entry_name, route_entry_name
from tenants.directory import redis_client
from tenants.models import Plan, Quota
from tenants.quotas import quota_clear, quota_set
from tenants.services import api_key_create
from tests.gateway.test_gateway import (  # noqa: F401
    call,
    digits_deployment,
    infer_body,
    wait_usage,
    write_route,
)
from tests.stack import free_port

pytestmark = pytest.mark.integration


def limit(level, target, **values):
    return quota_set(level=level, target=target, values=values)


def infer(stack, raw, *, port=None, body=None, name="digits"):
    url = f"http://127.0.0.1:{port}" if port else stack.gateway_url
    return call(type("S", (), {"gateway_url": url}), f"/v2/models/{name}/infer", key=raw, body=body or infer_body())


class SlowUpstream:
    """A stand-in Triton that answers every request after `delay` seconds and records how
    many requests it held at once: what the gateway let through is what it sees."""

    def __init__(self, delay: float):
        upstream = self
        self.delay, self.active, self.peak, self.lock = delay, 0, 0, threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with upstream.lock:
                    upstream.active += 1
                    upstream.peak = max(upstream.peak, upstream.active)
                time.sleep(upstream.delay)
                with upstream.lock:
                    upstream.active -= 1
                body = json.dumps({"model_name": self.path.split("/")[3], "outputs": []}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def slow_upstream():
    upstream = SlowUpstream(delay=1.0)
    yield upstream
    upstream.close()


@pytest.fixture
def second_gateway(stack):
    proc, port = stack.gateway_start("gateway-2")
    yield port
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)


def hammer(ports: list[int], path: str, raw: str, *, seconds: float, threads_per_port: int, body: bytes | None = None,
           on_response=None) -> dict:
    """Keep-alive clients sending as fast as they can; counts answers by status."""
    counts, lock, stop_at = {}, threading.Lock(), time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {raw}"}
    if body:
        headers["Content-Type"] = "application/json"

    def client(port):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while time.monotonic() < stop_at:
            try:
                connection.request("POST" if body else "GET", path, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                with lock:
                    counts["error"] = counts.get("error", 0) + 1
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                time.sleep(0.05)
                continue
            if on_response:
                on_response(response)
            with lock:
                counts[response.status] = counts.get(response.status, 0) + 1
        connection.close()

    workers = [threading.Thread(target=client, args=(port,)) for port in ports for _ in range(threads_per_port)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return counts


# ---- rate ------------------------------------------------------------------------------

def test_a_key_rate_holds_within_5_percent_over_10_s_across_two_gateway_processes(
        stack, acme, digits_deployment, second_gateway):
    api_key, raw = api_key_create(tenant=acme, label="busy", scopes=["infer"])
    limit("key", api_key, rate_per_second=40, rate_burst=10)
    started = time.monotonic()
    counts = hammer([stack.gateway_port, second_gateway], "/v2/models/digits/ready", raw, seconds=10,
                    threads_per_port=4)
    elapsed = time.monotonic() - started
    expected = 10 + 40 * elapsed
    assert counts.get(429, 0) > counts[200], f"the load did not exceed the limit: {counts}"
    assert abs(counts[200] - expected) <= 0.05 * expected, f"{counts[200]} admitted, expected {expected:.0f}"
    assert set(counts) <= {200, 429}, counts


def test_headers_on_success_and_on_refusal(stack, acme, digits_deployment):
    api_key, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    limit("tenant", acme, rate_per_second=100, rate_burst=100)
    limit("key", api_key, rate_per_second=5, rate_burst=3)

    status, headers, _ = infer(stack, raw)
    assert status == 200
    assert headers["RateLimit-Policy"] == '"tenant";q=100;w=1, "key";q=3;w=1'
    assert headers["RateLimit"].startswith('"tenant";r=99;t=1, "key";r=2;t=1')
    assert (headers["x-ratelimit-limit-requests"], headers["x-ratelimit-remaining-requests"]) == ("3", "2")
    assert headers["x-ratelimit-reset-requests"].endswith("s") and 0 < float(
        headers["x-ratelimit-reset-requests"][:-1]) <= 0.2 + 1e-9
    assert infer(stack, raw)[1]["x-ratelimit-remaining-requests"] == "1"
    assert infer(stack, raw)[1]["x-ratelimit-remaining-requests"] == "0"

    status, headers, body = infer(stack, raw)
    assert status == 429
    assert json.loads(body)["code"] == "rate_limited" and "key" in json.loads(body)["error"]
    assert headers["Retry-After"] == "1"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert 0 < float(headers["x-ratelimit-reset-requests"][:-1]) <= 0.2 + 1e-9
    time.sleep(float(headers["x-ratelimit-reset-requests"][:-1]))
    assert infer(stack, raw)[0] == 200
    # Refusals are not admitted: they leave no usage event.
    assert len(wait_usage(acme, 4)) == 4
    time.sleep(0.5)
    assert UsageEvent.objects.for_tenant(acme).count() == 4


# ---- concurrency -----------------------------------------------------------------------

def _burst(ports, raw, name, n):
    results = []
    lock = threading.Lock()

    def one(port):
        status, headers, body = infer(None, raw, port=port, name=name)
        with lock:
            results.append((status, json.loads(body).get("code") if status != 200 else "ok"))

    threads = [threading.Thread(target=one, args=(ports[i % len(ports)],)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(results)


def test_a_concurrency_cap_is_exact_across_gateway_processes(stack, acme, slow_upstream, second_gateway):
    api_key, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    write_route(acme, "slow", http_url=slow_upstream.url)
    limit("key", api_key, max_concurrency=3)

    results = _burst([stack.gateway_port, second_gateway], raw, "slow", 12)
    assert results == [(200, "ok")] * 3 + [(429, "concurrency_limit")] * 9
    assert slow_upstream.peak == 3
    # The leases went with the answers: the next three are admitted again.
    assert _burst([stack.gateway_port], raw, "slow", 3) == [(200, "ok")] * 3


def infer_until_killed(raw: str, port: int) -> None:
    """A call through a gateway the test kills: its connection breaks, as expected."""
    try:
        infer(None, raw, port=port, name="slow")
    except (OSError, http.client.HTTPException):
        pass


def test_leases_of_a_gateway_that_died_expire(stack, acme, slow_upstream):
    api_key, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    slow_upstream.delay = 30
    write_route(acme, "slow", http_url=slow_upstream.url)
    limit("key", api_key, max_concurrency=2)
    proc, port = stack.gateway_start("gateway-doomed", env={"GATEWAY_LEASE_TTL_S": "2"})
    for _ in range(2):
        threading.Thread(target=infer_until_killed, args=(raw, port), daemon=True).start()
    deadline = time.monotonic() + 5
    while slow_upstream.active < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    slow_upstream.delay = 0
    status, _, body = infer(stack, raw, name="slow")
    assert (status, json.loads(body)["code"]) == (429, "concurrency_limit")
    time.sleep(2.5)
    assert infer(stack, raw, name="slow")[0] == 200


# ---- budgets ---------------------------------------------------------------------------

def test_a_hard_request_budget_refuses_once_spent_without_retry(stack, acme, digits_deployment):
    _, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    limit("tenant", acme, monthly_requests=3)
    assert [infer(stack, raw)[0] for _ in range(3)] == [200] * 3
    # Metadata and readiness are not inference: they do not spend the budget.
    assert call(stack, "/v2/models/digits", key=raw)[0] == 200
    status, headers, body = infer(stack, raw)
    assert (status, json.loads(body)["code"], headers["x-should-retry"]) == (429, "insufficient_quota", "false")
    assert "3 requests for this month" in json.loads(body)["error"]
    assert "Retry-After" not in headers
    # Raising the budget lets the tenant in again at once.
    limit("tenant", acme, monthly_requests=4)
    assert infer(stack, raw)[0] == 200


def test_a_soft_request_budget_serves_flags_and_alerts_once(stack, acme, digits_deployment):
    api_key, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    limit("key", api_key, monthly_requests=2, monthly_requests_enforcement="soft")
    answers = [infer(stack, raw) for _ in range(4)]
    assert [a[0] for a in answers] == [200] * 4
    assert [a[1].get("x-quota-warning") for a in answers] == [None, None, "key_monthly_requests",
                                                               "key_monthly_requests"]
    events = wait_usage(acme, 4)
    assert sorted(e.flags for e in events) == ["", "", "key_monthly_requests", "key_monthly_requests"]
    [alert] = QuotaAlert.objects.for_tenant(acme)
    assert alert.limit == "key_monthly_requests"


def test_a_hard_compute_budget_counts_metered_compute(stack, acme, digits_deployment):
    api_key, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    limit("key", api_key, monthly_compute_seconds=0.000001)
    assert infer(stack, raw)[0] == 200
    status, _, body = infer(stack, raw)
    assert (status, json.loads(body)["code"]) == (429, "insufficient_quota")
    [event] = wait_usage(acme, 1)
    used = redis_client().hgetall(f"gw:use:k:{api_key.pk}:{event.occurred_at:%Y%m}")
    assert int(used["req"]) == 1 and int(used["cus"]) == round(event.compute_ms * 1000) > 0


# ---- payload and precedence ------------------------------------------------------------

def test_payload_limits_follow_precedence(stack, acme, digits_deployment):
    from tenants.quotas import plan_default

    plan = plan_default() or Plan.objects.create(name="Standard", slug="standard", is_default=True)
    api_key, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    body = infer_body(8)  # a few kilobytes
    limit("plan", plan, max_payload_bytes=1000)
    status, _, answer = infer(stack, raw, body=body)
    assert (status, json.loads(answer)["code"]) == (413, "payload_too_large")
    assert "tenant limit of 1000 bytes" in json.loads(answer)["error"]
    # The tenant's own value overrides its plan's, looser or not...
    limit("tenant", acme, max_payload_bytes=len(body) + 1)
    assert infer(stack, raw, body=body)[0] == 200
    # ...and a deployment's or key's own limit applies on top of it.
    limit("deployment", digits_deployment, max_payload_bytes=len(body) - 1)
    status, _, answer = infer(stack, raw, body=body)
    assert status == 413 and "deployment limit" in json.loads(answer)["error"]
    quota_clear(quota=Quota.objects.get(deployment=digits_deployment))
    assert infer(stack, raw, body=body)[0] == 200
    limit("key", api_key, max_payload_bytes=100)
    status, _, answer = infer(stack, raw, body=body)
    assert status == 413 and "key limit of 100 bytes" in json.loads(answer)["error"]


def test_the_tightest_rate_of_plan_tenant_deployment_and_key_applies(stack, acme, digits_deployment):
    from tenants.quotas import plan_default

    plan = plan_default() or Plan.objects.create(name="Standard", slug="standard", is_default=True)
    key_a, raw_a = api_key_create(tenant=acme, label="a", scopes=["infer"])
    key_b, raw_b = api_key_create(tenant=acme, label="b", scopes=["infer"])
    limit("plan", plan, rate_per_second=0.01, rate_burst=1)
    assert [infer(stack, raw_a)[0], infer(stack, raw_b)[0]] == [200, 429]  # the tenant's rate, shared by its keys
    limit("tenant", acme, rate_per_second=1000, rate_burst=1000)
    limit("deployment", digits_deployment, rate_per_second=0.01, rate_burst=2)
    assert [infer(stack, raw_a)[0], infer(stack, raw_b)[0], infer(stack, raw_a)[0]] == [200, 200, 429]
    status, _, body = infer(stack, raw_b)
    assert "deployment" in json.loads(body)["error"]
    limit("deployment", digits_deployment, rate_per_second=1000, rate_burst=1000)
    limit("key", key_a, rate_per_second=0.01, rate_burst=1)
    assert [infer(stack, raw_a)[0], infer(stack, raw_a)[0], infer(stack, raw_b)[0]] == [200, 429, 200]


def test_limit_changes_apply_to_the_next_request(stack, acme, digits_deployment):
    api_key, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    limit("key", api_key, rate_per_second=0.01, rate_burst=1)
    assert [infer(stack, raw)[0], infer(stack, raw)[0]] == [200, 429]
    limit("key", api_key, rate_per_second=None, rate_burst=None)
    assert infer(stack, raw)[0] == 200
    limit("key", api_key, max_concurrency=1, monthly_requests=3)
    assert [infer(stack, raw)[0], infer(stack, raw)[0]] == [200, 429]


# ---- a gateway or a consumer killed mid-load -------------------------------------------

def _collect_request_ids(received: set, lock):
    def on_response(response):
        if response.status != 429:
            with lock:
                received.add(response.getheader("x-request-id"))
    return on_response


def test_sigkill_of_a_gateway_mid_load_loses_and_doubles_no_usage(stack, acme, digits_deployment):
    """Every response a client received is metered, once. The requests a gateway was
    answering at the instant it died (usage recorded, body not yet written) are the only rows
    a client may not have seen: at most the requests in flight, and stamped at the kill."""
    api_key, raw = api_key_create(tenant=acme, label="load", scopes=["infer"])
    limit("tenant", acme, rate_per_second=100_000, rate_burst=100_000)
    proc, port = stack.gateway_start("gateway-killed")
    received, lock, killed_at = set(), threading.Lock(), []

    def kill():
        killed_at.append(time.time())
        os.killpg(proc.pid, signal.SIGKILL)

    threading.Timer(1.5, kill).start()
    counts = hammer([port], "/v2/models/digits/infer", raw, seconds=3, threads_per_port=8, body=infer_body(),
                    on_response=_collect_request_ids(received, lock))
    proc.wait()
    assert counts.get(200, 0) > 50 and counts.get("error", 0) > 0, counts
    stack.wait_quiet()
    rows = list(UsageEvent.objects.for_tenant(acme).filter(api_key=api_key))
    metered = {str(row.request_id) for row in rows}
    assert len(metered) == len(rows)
    assert received <= metered
    unseen = [row for row in rows if str(row.request_id) not in received]
    assert len(unseen) <= 8, [(r.status, r.occurred_at.timestamp() - killed_at[0]) for r in unseen]
    for row in unseen:
        assert abs(row.occurred_at.timestamp() - killed_at[0]) < 0.5


def test_sigkill_of_the_metering_consumer_mid_load_loses_and_doubles_no_usage(stack, acme, digits_deployment):
    api_key, raw = api_key_create(tenant=acme, label="load", scopes=["infer"])
    limit("tenant", acme, rate_per_second=100_000, rate_burst=100_000)
    received, lock = set(), threading.Lock()
    consumer = stack.procs["metering"]
    killer = threading.Timer(1.0, lambda: os.killpg(consumer.pid, signal.SIGKILL))
    killer.start()
    try:
        hammer([stack.gateway_port], "/v2/models/digits/infer", raw, seconds=2.5, threads_per_port=8,
               body=infer_body(), on_response=_collect_request_ids(received, lock))
        consumer.wait()
    finally:
        # Its successor takes over what it read and never acknowledged.
        stack.metering_restart(claim_idle_ms=500)
    stack.wait_quiet()
    rows = list(UsageEvent.objects.for_tenant(acme).filter(api_key=api_key).values_list("request_id", flat=True))
    assert len(rows) == len(set(rows)) == len(received) > 50
    assert {str(rid) for rid in rows} == received


def test_metering_reconciles_with_tritons_statistics(stack, acme, digits_deployment):
    from io import StringIO

    from django.core.management import call_command

    _, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    for rows in (1, 3, 5):
        assert infer(stack, raw, body=infer_body(rows))[0] == 200
    assert infer(stack, raw, body=infer_body(1, name="nope"))[0] == 400
    stack.wait_quiet()
    out = StringIO()
    call_command("metering_reconcile", "--json", stdout=out)
    [line] = [line for line in json.loads(out.getvalue()) if line["id"] == digits_deployment.pk]
    assert (line["triton"], line["metered"], line["agree"]) == (3, 3, True)


# ---- Redis down ------------------------------------------------------------------------

@pytest.fixture
def private_redis(tmp_path):
    """A Redis of the gateway's own, which the test can stop and start again."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (scripts/ensure_system.sh installs it)")
    port = free_port()

    def start():
        proc = subprocess.Popen([binary, "--port", str(port), "--save", "", "--appendonly", "no",
                                 "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
        import redis as redis_py

        client = redis_py.Redis(port=port, decode_responses=True)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return proc, client
            except redis_py.ConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.05)

    state = {"start": start, "port": port}
    state["proc"], state["client"] = start()
    yield state
    state["proc"].kill()
    state["proc"].wait()


def wait_for(condition, timeout: float = 2.0):
    """The usage record is written before the response but applied by Redis a moment later."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def _copy_directory(names, target):
    source = redis_client()
    for name in names:
        if entry := source.hgetall(name):
            target.hset(name, mapping=entry)


def test_with_redis_down_the_gateway_fails_closed_fast_and_recovers(stack, acme, digits_deployment, private_redis):
    api_key, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    names = [key_entry_name(hash_api_key(raw)), route_entry_name(acme.pk, "digits"), limits_entry_name(f"t:{acme.pk}")]
    _copy_directory(names, private_redis["client"])
    proc, port = stack.gateway_start("gateway-private-redis",
                                     env={"REDIS_URL": f"redis://127.0.0.1:{private_redis['port']}/0"})
    try:
        assert infer(stack, raw, port=port)[0] == 200
        wait_for(lambda: private_redis["client"].xlen("usage:events") == 1)

        private_redis["proc"].kill()
        private_redis["proc"].wait()
        for _ in range(3):
            started = time.monotonic()
            status, headers, body = infer(stack, raw, port=port)
            assert (status, json.loads(body)["code"], headers["Retry-After"]) == (503, "unavailable", "1")
            assert time.monotonic() - started < 1.5
        gateway = type("S", (), {"gateway_url": f"http://127.0.0.1:{port}"})
        assert call(gateway, "/v2/health/ready")[0] == 503
        assert call(gateway, "/v2/health/live")[0] == 200

        # Redis returns empty (no persistence); the control plane's sync rebuilds the directory.
        private_redis["proc"], private_redis["client"] = private_redis["start"]()
        _copy_directory(names, private_redis["client"])
        assert infer(stack, raw, port=port)[0] == 200
        assert call(gateway, "/v2/health/ready")[0] == 200
        wait_for(lambda: private_redis["client"].xlen("usage:events") == 1)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)

"""kill -9 of rating and of finalization mid-run, in a process of their own on the test
database: what committed is whole (each tenant's draft is one transaction), running
again completes the rest, and every invoice equals the hand-computed one, its lines
neither lost nor doubled, each finalized invoice numbered once."""
import os
import signal
import subprocess
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from billing.models import Invoice, InvoiceLine, UsageEvent
from billing.pricing import money_round
from tenants.models import Tenant
from tests.billing.rating_fixtures import cpu_cost, plan_with_prices, requests_cost, roll
from tests.stack import PYTHON, ROOT, database_url

TENANTS = 150
H1 = datetime(2026, 11, 2, 10, tzinfo=UTC)
NOV = date(2026, 11, 1)


def events_of(index: int) -> int:
    return 1 + index % 6


def expected(count: int) -> list[tuple]:
    return [("base_fee", "", Decimal(1), Decimal("10.00")),
            ("usage", "requests", Decimal(count) / 1000, money_round(requests_cost(count))),
            ("usage", "compute_cpu", Decimal(count), money_round(cpu_cost(Decimal(count))))]


def run_killed(code: str, *, after: callable) -> bool:
    """Run `code` in a fresh Django process; kill -9 it as soon as `after()` holds. True
    when it was killed while still running."""
    env = {**os.environ, "DATABASE_URL": database_url(), "DJANGO_SETTINGS_MODULE": "portal.settings_test"}
    proc = subprocess.Popen([PYTHON, "-c", f"import django; django.setup()\n{code}"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while proc.poll() is None and not after() and time.monotonic() < deadline:
        time.sleep(0.002)
    running = proc.poll() is None
    if running:
        os.kill(proc.pid, signal.SIGKILL)
    output = proc.communicate(timeout=30)[0].decode()
    assert running or proc.returncode == 0, output
    return running


def run(code: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url(), "DJANGO_SETTINGS_MODULE": "portal.settings_test"}
    result = subprocess.run([PYTHON, "-c", f"import django; django.setup()\n{code}"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def tenants(transactional_db, settings):
    settings.BILLING_FINALIZE_GRACE_S = 3600
    plan = plan_with_prices()
    tenants = Tenant.objects.bulk_create([Tenant(name=f"T{i}", slug=f"t{i}", plan=plan) for i in range(TENANTS)])
    UsageEvent.unscoped.bulk_create([
        UsageEvent(tenant=tenant, request_id=uuid.uuid4(), deployment_name="gone", status=200, endpoint="infer",
                   latency_ms=2, compute_ms=1000, occurred_at=H1 + timedelta(seconds=n))
        for i, tenant in enumerate(tenants) for n in range(events_of(i))])
    roll(H1)
    return {tenant.pk: events_of(i) for i, tenant in enumerate(tenants)}


def lines_of(invoice: Invoice) -> list[tuple]:
    return [(line.kind, line.component, line.quantity, line.amount)
            for line in InvoiceLine.objects.filter(invoice=invoice).order_by("position")]


def test_kill_9_while_rating_and_finalizing_loses_and_doubles_nothing(tenants):
    refresh = "from datetime import datetime, UTC\nfrom billing.invoicing import invoices_refresh\n" \
              "invoices_refresh(now=datetime(2026, 11, 20, tzinfo=UTC))"
    assert run_killed(refresh, after=lambda: Invoice.unscoped.count() >= 20), "rating finished before the kill"
    drafted = list(Invoice.unscoped.all())
    assert 20 <= len(drafted) < TENANTS
    # What committed before the kill is whole: a draft with all its lines, or nothing.
    for invoice in drafted:
        assert lines_of(invoice) == expected(tenants[invoice.tenant_id])
    run(refresh)

    finalize = "from datetime import datetime, UTC\nfrom billing.invoicing import invoices_finalize_due\n" \
               "invoices_finalize_due(now=datetime(2026, 12, 1, 1, 0, 1, tzinfo=UTC))"
    assert run_killed(finalize, after=lambda: Invoice.unscoped.filter(status="finalized").count() >= 20)
    assert Invoice.unscoped.filter(status="finalized").count() < TENANTS
    run(finalize)

    invoices = list(Invoice.unscoped.all())
    assert sorted(invoice.tenant_id for invoice in invoices) == sorted(tenants)  # one each
    for invoice in invoices:
        want = expected(tenants[invoice.tenant_id])
        assert (invoice.status, invoice.period_start, lines_of(invoice)) == ("finalized", NOV, want)
        assert invoice.total == sum(amount for *_, amount in want)
    numbers = [invoice.number for invoice in invoices]
    assert len(set(numbers)) == TENANTS and all(number.startswith("INV-202611-") for number in numbers)

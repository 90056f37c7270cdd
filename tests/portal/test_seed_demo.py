import json
from decimal import Decimal

import pytest
from django.core.management import call_command

from billing.models import Invoice
from graph_editor.models import Graph, ModelVersion
from tenants.models import ApiKey, Tenant
from workers.models import Deployment


def seed() -> dict:
    from io import StringIO

    out = StringIO()
    call_command("seed_demo", "--json", stdout=out)
    return json.loads(out.getvalue())


@pytest.mark.django_db(transaction=True)
def test_seed_demo_is_idempotent_and_prints_what_a_newcomer_needs(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    first = seed()
    second = seed()
    assert set(first) == {"portal_url", "gateway_url", "triton_url", "username", "password", "api_key", "model",
                          "graph", "graph_id", "billing"}
    assert first == second
    # The banner names the live draft's total (test_seed_demo_prices_* checks what it holds).
    tenant = Tenant.objects.get(slug="demo")
    draft = Invoice.objects.for_tenant(tenant).get(status="draft")
    assert first["billing"] == {"draft_total": str(draft.total), "currency": draft.currency.upper()}
    assert first["model"] == "digits" and first["username"] == "demo"
    tenant = Tenant.objects.get(slug="demo")
    assert sorted(ModelVersion.objects.for_tenant(tenant).values_list("model__name", flat=True)) == [
        "digits", "digits-forest"]
    # The demo graph: one version, valid (saved versions always are), digits in, label out.
    [graph] = Graph.objects.for_tenant(tenant)
    assert (graph.pk, graph.name) == (first["graph_id"], "digits-pipeline")
    [version] = graph.versions.all()
    assert [t["name"] for t in version.inputs] == ["image"]
    assert {t["name"] for t in version.outputs} == {"label", "name", "score"}
    # The model and the graph, each deployed once.
    deployments = Deployment.objects.for_tenant(tenant)
    assert sorted(deployments.values_list("name", flat=True)) == ["digits", "digits-pipeline"]
    assert first["graph"] == "digits-pipeline"
    assert deployments.get(name="digits-pipeline").graph_version.graph_id == first["graph_id"]
    [key] = ApiKey.objects.for_tenant(tenant)
    assert sorted(key.scopes) == ["infer", "manage"]
    assert (tmp_path / "demo.json").stat().st_mode & 0o777 == 0o600
    from django.contrib.auth import authenticate

    assert authenticate(username="demo", password=first["password"]) is not None


@pytest.mark.django_db(transaction=True)
def test_seed_demo_replaces_a_revoked_demo_key(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    first = seed()
    tenant = Tenant.objects.get(slug="demo")
    from tenants.services import api_key_revoke

    api_key_revoke(tenant=tenant, key_id=ApiKey.objects.for_tenant(tenant).get().pk)
    second = seed()
    assert second["api_key"] != first["api_key"]
    assert ApiKey.objects.for_tenant(tenant).filter(revoked_at=None).count() == 1


@pytest.mark.django_db(transaction=True)
def test_seed_demo_retries_a_failed_demo_deployment(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    seed()
    tenant = Tenant.objects.get(slug="demo")
    Deployment.objects.for_tenant(tenant).update(state="failed", error="Triton was down")
    seed()
    assert {(d.name, d.state, d.error) for d in Deployment.objects.for_tenant(tenant)} == {
        ("digits", "pending", ""), ("digits-pipeline", "pending", "")}


@pytest.mark.django_db(transaction=True)
def test_seed_demo_gives_the_demo_prices_a_spend_limit_and_a_live_draft_invoice(settings, tmp_path):
    from datetime import UTC, datetime

    from django.utils import timezone

    from billing.models import BillingAccount, Invoice, InvoiceLine, Price, PriceVersion, UsageEvent
    from tenants.models import AuditLog, Plan
    from tenants.quotas import tenant_plan

    settings.VAR_DIR = tmp_path
    # The default plan a migration makes (a transactional test before this one flushed it).
    Plan.objects.get_or_create(is_default=True, defaults={"name": "Standard", "slug": "standard"})
    seed()
    tenant = Tenant.objects.get(slug="demo")
    now = timezone.now()
    month = datetime(now.year, now.month, 1, tzinfo=UTC)

    def state() -> dict:
        return {
            "versions": list(PriceVersion.objects.values_list("plan_id", "effective_from", "base_fee")),
            "prices": Price.objects.count(),
            "events": UsageEvent.objects.for_tenant(tenant).count(),
            "limit": BillingAccount.objects.filter(tenant=tenant).values_list("spend_limit",
                                                                              "spend_limit_enforcement").get(),
            "audit": AuditLog.objects.for_tenant(tenant).filter(event_type="spend_limit.changed").count(),
            "invoices": list(Invoice.objects.for_tenant(tenant).values_list("period_start", "status")),
        }

    first = state()
    # The demo's plan is priced from this month: a base fee, and an allowance and two tiers
    # for each component.
    [version] = PriceVersion.objects.filter(plan=tenant_plan(tenant))
    assert (version.effective_from, version.base_fee, version.currency) == (month, Decimal("10.00"), "usd")
    prices = {p.component: p for p in version.prices.all()}
    assert set(prices) == {"requests", "compute_cpu", "compute_gpu", "reserved_memory"}
    assert all(p.free_allowance > 0 and len(p.tiers) == 2 for p in prices.values())
    assert first["limit"] == (Decimal("100.00"), "hard") and first["audit"] == 1
    # Usage across the month so far, on both demo deployments, rated into a live draft.
    events = UsageEvent.objects.for_tenant(tenant)
    assert first["events"] > 100
    assert events.filter(occurred_at__lt=month).count() == 0 and events.filter(occurred_at__gt=now).count() == 0
    assert set(events.values_list("deployment_name", flat=True)) == {"digits", "digits-pipeline"}
    [draft] = Invoice.objects.for_tenant(tenant)
    assert (draft.status, draft.period_start) == ("draft", month.date()) and draft.total > Decimal("10.00")
    lines = InvoiceLine.objects.filter(invoice=draft, kind="usage")
    assert set(lines.values_list("deployment_name", flat=True)) == {"digits", "digits-pipeline"}
    assert sum(line.amount for line in InvoiceLine.objects.filter(invoice=draft)) == draft.total

    # Seeding again changes nothing.
    seed()
    assert state() == first

import json

import pytest
from django.core.management import call_command

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
                          "graph", "graph_id"}
    assert first == second
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

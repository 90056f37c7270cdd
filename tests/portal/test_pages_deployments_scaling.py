"""Scaling on the Deployments page: where each deployment runs, its instances, keep-alive
policy and cold starts; owners and admins change its scaling settings and unload it now,
members read, and another tenant's deployments do not exist here."""
import uuid

import pytest
from django.utils import timezone

from billing.models import UsageEvent
from tenants.quotas import quota_set
from tests.portal.test_pages import flashes, table_rows
from tests.tenants.test_api_quotas import standard  # noqa: F401
from workers.models import (
    Deployment,
    DeploymentState,
    Replica,
    ReplicaState,
    TritonServer,
)

pytestmark = pytest.mark.django_db

SETTINGS = ("min_instances", "max_instances", "replicas", "keepalive", "keepalive_idle_s", "max_batch_size",
            "max_queue_delay_us", "preferred_batch_sizes")


@pytest.fixture
def scaling_objects(acme, acme_objects, standard):  # noqa: F811
    """acme on the Standard plan: digits ready on one of its two replicas, with eight metered
    calls of which two were cold starts (held 300 and 500 ms), and a second deployment that
    has scaled to zero."""
    digits = acme_objects["deployment"]
    Deployment.unscoped.filter(pk=digits.pk).update(instances=2, max_instances=3, replicas=2)
    server = TritonServer.objects.create(name="triton-a", http_url="http://127.0.0.1:8100", repository_path="/tmp/r")
    Replica.objects.create(deployment=digits, server=server, state=ReplicaState.READY, instances=2, memory_mb=120)
    for held_ms in (None, None, None, None, None, None, 300.0, 500.0):
        UsageEvent.unscoped.create(tenant=acme, api_key=acme_objects["key"], request_id=uuid.uuid4(),
                                   deployment=digits, deployment_name="digits", status=200, latency_ms=2.5,
                                   upstream_ms=2.0, bytes_in=10, bytes_out=20, occurred_at=timezone.now(),
                                   cold_start=held_ms is not None, cold_start_ms=held_ms)
    idle = Deployment.unscoped.create(tenant=acme, name="digits-idle", model_version=acme_objects["version"],
                                      state=DeploymentState.COLD, keepalive="fixed", keepalive_idle_s=900)
    return {**acme_objects, "idle": idle}


@pytest.fixture
def scale_downs(monkeypatch) -> list[tuple]:
    """The unloads queued (the task itself is tested with the lifecycle)."""
    queued = []
    monkeypatch.setattr("workers.queue.deployment_scale_down", lambda *args: queued.append(args))
    return queued


def settings_of(deployment: Deployment) -> dict:
    deployment.refresh_from_db()
    return {field: getattr(deployment, field) for field in SETTINGS}


def settings_post(deployment: Deployment, **values) -> dict:
    """The settings form as the page fills it in, with some fields changed."""
    current = settings_of(deployment)
    current["preferred_batch_sizes"] = ", ".join(str(size) for size in current["preferred_batch_sizes"])
    current.update(values)
    return {f"d{deployment.pk}-{field}": value for field, value in current.items()}


def unload_form(page: str, deployment: Deployment) -> str:
    return page.split(f'action="/deployments/{deployment.pk}/unload/"')[1].split(">")[0]


@pytest.mark.parametrize("who", ["alice", "carol"])
def test_the_page_shows_placement_instances_keepalive_and_cold_starts(client, alice, carol, scaling_objects, who):
    client.force_login({"alice": alice, "carol": carol}[who])
    page = client.get("/deployments/").content.decode()
    [header, idle, digits] = table_rows(page, "deployments")
    assert header == ["Name and endpoint", "Model", "State", "Replicas", "Instances", "Keep-alive", "Cold starts", ""]
    assert digits[2:4] == ["Ready", "triton-a 1 of 2 replicas load –"]
    assert digits[4:7] == ["2 now min 0 · max 3", "Adaptive learns its idle times",
                           "2 of 8 (25%) p50 400 ms · p99 498 ms"]
    assert idle[0].endswith("0 × CPU · batches up to 64")
    assert idle[2:4] == ["Scaled to zero", "– 0 of 1 replica load –"]
    assert idle[4:7] == ["0 now min 0 · max 1", "Fixed unloads after 15 min idle", "no calls yet"]
    assert f'<tr data-deployment="{scaling_objects["idle"].pk}">' in page
    assert 'class="badge state-cold"' in page


def test_owners_get_unload_and_settings_where_they_apply(client, alice, scaling_objects):
    digits, idle = scaling_objects["deployment"], scaling_objects["idle"]
    warm = Deployment.unscoped.create(tenant=digits.tenant, name="digits-warm", model_version=digits.model_version,
                                      state=DeploymentState.READY, min_instances=1)
    client.force_login(alice)
    page = client.get("/deployments/").content.decode()
    assert "hidden" not in unload_form(page, digits)
    assert "hidden" in unload_form(page, idle)  # shown by the live update once it is ready again
    assert f'action="/deployments/{warm.pk}/unload/"' not in page  # min_instances keeps it warm
    assert table_rows(page, "deployments")[1][5] == "Adaptive kept warm: never below 1"
    for deployment in (digits, idle, warm):
        assert f'action="/deployments/{deployment.pk}/settings/"' in page
    assert f'name="d{digits.pk}-max_instances" value="3"' in page
    assert f'name="d{digits.pk}-max_batch_size" value="64"' in page


def test_members_get_no_unload_or_settings_forms(client, carol, scaling_objects):
    client.force_login(carol)
    page = client.get("/deployments/").content.decode()
    assert "Unload now" not in page and "Scaling settings" not in page and "/settings/" not in page
    assert page.count('method="post"') == 1  # signing out


def test_saving_the_settings_changes_the_deployment(client, alice, scaling_objects):
    digits = scaling_objects["deployment"]
    client.force_login(alice)
    response = client.post(f"/deployments/{digits.pk}/settings/", settings_post(
        digits, min_instances="1", max_instances="4", replicas="1", keepalive="fixed", keepalive_idle_s="1200",
        max_batch_size="32", max_queue_delay_us="1000", preferred_batch_sizes="16, 4,8"), follow=True)
    assert response.redirect_chain[-1][0] == "/deployments/"
    assert flashes(response) == ["Saved the settings of digits."]
    assert settings_of(digits) == {"min_instances": 1, "max_instances": 4, "replicas": 1, "keepalive": "fixed",
                                   "keepalive_idle_s": 1200, "max_batch_size": 32, "max_queue_delay_us": 1000,
                                   "preferred_batch_sizes": [4, 8, 16]}
    page = response.content.decode()
    digits_row = table_rows(page, "deployments")[2]
    assert digits_row[3] == "triton-a 1 of 1 replica load –"
    assert digits_row[4:6] == ["2 now min 1 · max 4", "Fixed kept warm: never below 1"]
    assert f'name="d{digits.pk}-preferred_batch_sizes" value="4, 8, 16"' in page
    assert f'action="/deployments/{digits.pk}/unload/"' not in page


@pytest.mark.parametrize("values, error", [
    ({"min_instances": "3", "max_instances": "2"}, "min_instances (3) cannot exceed max_instances (2)."),
    ({"replicas": "17"}, "replicas must be a whole number from 1 to 16."),
    ({"preferred_batch_sizes": "128"}, "Each preferred batch size must be between 1 and max_batch_size (64)."),
    ({"preferred_batch_sizes": "4, eight"}, "Enter whole numbers separated by commas, e.g. 4, 8."),
    ({"keepalive": "forever"}, "Select a valid choice. forever is not one of the available choices."),
    ({"max_instances": ""}, "This field is required."),
    ({"keepalive_idle_s": "0"}, "Ensure this value is greater than or equal to 1."),
])
def test_a_bad_value_says_why_and_changes_nothing(client, alice, scaling_objects, values, error):
    digits = scaling_objects["deployment"]
    before = settings_of(digits)
    client.force_login(alice)
    response = client.post(f"/deployments/{digits.pk}/settings/", settings_post(digits, **values))
    assert response.status_code == 400
    page = response.content.decode().replace("&#x27;", "'")
    assert error in page
    assert page.count("<details class=\"limits-edit settings-edit\" open>") == 1
    assert 'href="/deployments/" class="active"' in page
    assert settings_of(digits) == before


@pytest.mark.parametrize("limits, values, error", [
    ({"max_instances": 3}, {"max_instances": "4"}, "At most 3 instances per deployment; asked for 4."),
    ({}, {"max_batch_size": "300"}, "The largest batch size allowed is 256; asked for 300."),
    ({"max_model_memory_mb": 100}, {"replicas": "4"}, "This deployment needs about"),
])
def test_settings_beyond_the_plan_are_refused_with_the_reason(client, alice, acme, scaling_objects, limits, values,
                                                              error):
    if limits:
        quota_set(level="tenant", target=acme, values=limits)
    digits = scaling_objects["deployment"]
    before = settings_of(digits)
    client.force_login(alice)
    response = client.post(f"/deployments/{digits.pk}/settings/", settings_post(digits, **values))
    assert response.status_code == 400
    [alert] = response.context["rows"][1]["form"].non_field_errors()
    assert alert.startswith(error)
    assert error in response.content.decode()
    assert settings_of(digits) == before


def test_unload_now_queues_the_scale_down(client, alice, scaling_objects, scale_downs):
    digits = scaling_objects["deployment"]
    client.force_login(alice)
    response = client.post(f"/deployments/{digits.pk}/unload/", follow=True)
    assert response.redirect_chain[-1][0] == "/deployments/"
    assert flashes(response) == ["Unloading digits: it turns Scaled to zero, and its next call loads it again."]
    assert scale_downs == [(digits.pk, "unload requested")]


@pytest.mark.parametrize("state, min_instances, message", [
    ("ready", 1, "This deployment keeps 1 instance(s) warm (min_instances); set min_instances to 0 to let it "
                 "scale to zero."),
    ("loading", 0, "Only a ready deployment can be unloaded; this one is loading."),
    ("cold", 0, "digits is already scaled to zero."),
])
def test_unload_now_says_why_when_there_is_nothing_to_unload(client, alice, scaling_objects, scale_downs, state,
                                                              min_instances, message):
    digits = scaling_objects["deployment"]
    Deployment.unscoped.filter(pk=digits.pk).update(state=state, min_instances=min_instances)
    client.force_login(alice)
    response = client.post(f"/deployments/{digits.pk}/unload/", follow=True)
    assert flashes(response) == [message]
    assert scale_downs == []


def _writes(objects: dict) -> list[tuple[str, dict]]:
    digits = objects["deployment"]
    return [(f"/deployments/{digits.pk}/unload/", {}),
            (f"/deployments/{digits.pk}/settings/", settings_post(digits, max_instances="2"))]


@pytest.mark.parametrize("write", [0, 1])
def test_members_cannot_unload_or_change_settings(client, carol, scaling_objects, scale_downs, write):
    digits = scaling_objects["deployment"]
    before = settings_of(digits)
    path, data = _writes(scaling_objects)[write]
    client.force_login(carol)
    response = client.post(path, data)
    assert response.status_code == 403
    assert "Your role in this tenant is read-only" in response.content.decode()
    assert settings_of(digits) == before and scale_downs == []


@pytest.mark.parametrize("write", [0, 1])
def test_another_tenant_gets_404_on_unload_and_settings(client, bob, scaling_objects, scale_downs, write):
    digits = scaling_objects["deployment"]
    before = settings_of(digits)
    path, data = _writes(scaling_objects)[write]
    client.force_login(bob)
    response = client.post(path, data)
    assert response.status_code == 404
    assert "It may have been deleted, or it belongs to another tenant." in response.content.decode()
    assert settings_of(digits) == before and scale_downs == []
    assert Deployment.objects.for_tenant(digits.tenant).get(pk=digits.pk).state == DeploymentState.READY


@pytest.mark.parametrize("method, path, status", [
    ("post", "/deployments/1/unload/", 302), ("post", "/deployments/1/settings/", 302),
])
def test_anonymous_users_are_sent_to_login(client, method, path, status):
    response = getattr(client, method)(path)
    assert response.status_code == status and response["Location"].startswith("/login/?next=")


@pytest.mark.parametrize("action", ["unload", "settings"])
def test_the_new_actions_take_only_post(client, alice, scaling_objects, action):
    client.force_login(alice)
    assert client.get(f"/deployments/{scaling_objects['deployment'].pk}/{action}/").status_code == 405

"""The audit log: every change to a plan, quota, API key or deployment setting is recorded
with who made it, its old and new values and the surface it came through (the admin, the
API with a session or a key, a portal page, or the system itself). A change that fails
records nothing. Staff read and filter the log in the admin; each tenant reads its own,
and only its own, in the API."""
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from unittest.mock import ANY

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db.models import Max
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from tenants.audit import SYSTEM, Actor, audit_actor
from tenants.middleware import AuditSurfaceMiddleware
from tenants.models import ApiKey, AuditLog, Plan, Quota
from tenants.quotas import plan_save, quota_clear, quota_set, tenant_plan_set
from tenants.services import api_key_create, api_key_revoke, user_create
from tests.api_helpers import key_client, session_client
from tests.tenants.test_admin_quotas import form_data
from tests.tenants.test_api_quotas import standard  # noqa: F401
from tests.workers.test_api_deployment_settings import deploy, digits_version, storage  # noqa: F401
from workers.models import Deployment
from workers.services import deployment_settings_update

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(db):
    user = user_create(username="root", password="root-password-1")
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    return user


@dataclass
class Objects:
    acme: object
    globex: object
    key: ApiKey
    quota: Quota
    pro: Plan
    deployment: Deployment | None = None


@pytest.fixture
def objects(acme, globex, alice, standard) -> Objects:  # noqa: F811
    """acme (alice owns it) with an API key and its own quota, and a Pro plan besides the default."""
    api_key, _ = api_key_create(tenant=acme, label="ci deploys", scopes=["infer"])
    return Objects(acme=acme, globex=globex, key=api_key,
                   quota=quota_set(level="tenant", target=acme, values={"max_models": 3}),
                   pro=plan_save(plan=Plan(name="Pro", slug="pro"), is_default=False, limits={"max_concurrency": 5}))


@pytest.fixture
def deployment(acme, digits_version) -> Deployment:  # noqa: F811
    response = deploy(key_client(acme), digits_version["id"])
    assert response.status_code == 202, response.json()
    return Deployment.objects.for_tenant(acme).get(pk=response.json()["id"])


def recorded_by(action: Callable[[], object]) -> tuple[object, list[AuditLog]]:
    """What `action` returns, and the log entries it wrote."""
    before = AuditLog.unscoped.aggregate(last=Max("id"))["last"] or 0
    result = action()
    return result, list(AuditLog.unscoped.filter(id__gt=before).select_related("acting_user", "acting_api_key")
                        .order_by("id"))


# ---- each change, through each surface ----------------------------------------------------------

@dataclass(frozen=True)
class Change:
    via: str  # admin, api-session, api-key, staff-api, page or system
    event_type: str
    target: str  # the Objects attribute the entry is about
    make: Callable  # (client, objects) -> response, or None for the system
    old: dict | None
    new: dict | None

    def __str__(self) -> str:
        return f"{self.via}:{self.event_type}"


def _admin_change(client, url: str, **changes):
    return client.post(url, {**form_data(client.get(url)), **changes})


def _limits_post(prefix: str, **values) -> dict:
    data = {f"{prefix}-{field}": "" for field in ("rate_per_second", "rate_burst", "max_concurrency",
                                                  "monthly_requests", "monthly_compute_seconds", "max_payload_bytes")}
    data[f"{prefix}-monthly_requests_enforcement"] = data[f"{prefix}-monthly_compute_enforcement"] = "hard"
    return {**data, **{f"{prefix}-{field}": value for field, value in values.items()}}


def _settings_post(deployment: Deployment, **values) -> dict:
    fields = ("min_instances", "max_instances", "replicas", "keepalive", "keepalive_idle_s", "max_batch_size",
              "max_queue_delay_us")
    current = {field: getattr(deployment, field) for field in fields}
    current["preferred_batch_sizes"] = ", ".join(str(size) for size in deployment.preferred_batch_sizes)
    return {f"d{deployment.pk}-{field}": value for field, value in {**current, **values}.items()}


REVOKED = ({"revoked_at": None}, {"revoked_at": ANY})
KEY_CREATED = (None, {"label": "deploys", "scopes": ["infer"]})
KEY_LIMITED = ({"max_concurrency": None}, {"max_concurrency": 3})
SETTINGS_CHANGED = ({"keepalive_idle_s": 600}, {"keepalive_idle_s": 120})
QUOTA_CHANGED = ({"max_models": 3}, {"max_models": 5})
QUOTA_CLEARED = ({"max_models": 3, "monthly_requests_enforcement": "hard", "monthly_compute_enforcement": "hard"},
                 None)
PLAN_CREATED = (ANY, {"name": "Team", "slug": "team", "is_default": False})
PLAN_RENAMED = ({"name": "Pro"}, {"name": "Pro Plus"})
PUT_ON_PRO = ({"plan": None}, {"plan": "pro"})

CHANGES = [
    # The admin, as platform staff.
    Change("admin", "api_key.revoked", "key", lambda c, o: c.post(
        "/admin/tenants/apikey/", {"action": "revoke", "_selected_action": [o.key.pk]}), *REVOKED),
    Change("admin", "quota.changed", "quota", lambda c, o: _admin_change(
        c, f"/admin/tenants/quota/{o.quota.pk}/change/", max_models="5"), *QUOTA_CHANGED),
    Change("admin", "quota.cleared", "quota", lambda c, o: c.post(
        f"/admin/tenants/quota/{o.quota.pk}/delete/", {"post": "yes"}), *QUOTA_CLEARED),
    Change("admin", "tenant.plan_changed", "acme", lambda c, o: _admin_change(
        c, f"/admin/tenants/tenant/{o.acme.pk}/change/", plan=str(o.pro.pk)), *PUT_ON_PRO),
    Change("admin", "plan.created", "team", lambda c, o: c.post("/admin/tenants/plan/add/", {
        **form_data(c.get("/admin/tenants/plan/add/")), "name": "Team", "slug": "team"}), *PLAN_CREATED),
    Change("admin", "plan.changed", "pro", lambda c, o: _admin_change(
        c, f"/admin/tenants/plan/{o.pro.pk}/change/", name="Pro Plus"), *PLAN_RENAMED),
    Change("admin", "deployment.undeployed", "deployment", lambda c, o: c.post(
        "/admin/workers/deployment/", {"action": "undeploy", "_selected_action": [o.deployment.pk]}),
        {"state": ANY}, {"state": "undeployed"}),
    # The tenant's REST API, signed in and with a key.
    *(change for via in ("api-session", "api-key") for change in (
        Change(via, "api_key.created", "created_key", lambda c, o: c.post(
            "/api/v1/keys", {"label": "deploys", "scopes": ["infer"]}, format="json"), *KEY_CREATED),
        Change(via, "api_key.revoked", "key", lambda c, o: c.post(f"/api/v1/keys/{o.key.pk}/revoke"), *REVOKED),
        Change(via, "quota.changed", "key_quota", lambda c, o: c.patch(
            f"/api/v1/keys/{o.key.pk}/limits", {"max_concurrency": 3}, format="json"), *KEY_LIMITED),
        Change(via, "deployment.settings_changed", "deployment", lambda c, o: c.patch(
            f"/api/v1/deployments/{o.deployment.pk}", {"keepalive_idle_s": 120}, format="json"), *SETTINGS_CHANGED),
    )),
    # The staff endpoints of the REST API.
    Change("staff-api", "plan.created", "team", lambda c, o: c.post(
        "/api/v1/admin/plans", {"name": "Team", "slug": "team"}, format="json"), *PLAN_CREATED),
    Change("staff-api", "plan.changed", "pro", lambda c, o: c.patch(
        f"/api/v1/admin/plans/{o.pro.pk}", {"name": "Pro Plus"}, format="json"), *PLAN_RENAMED),
    Change("staff-api", "quota.changed", "quota", lambda c, o: c.patch(
        f"/api/v1/admin/quotas/{o.quota.pk}", {"limits": {"max_models": 5}}, format="json"), *QUOTA_CHANGED),
    Change("staff-api", "quota.cleared", "quota", lambda c, o: c.delete(f"/api/v1/admin/quotas/{o.quota.pk}"),
           *QUOTA_CLEARED),
    Change("staff-api", "tenant.plan_changed", "acme", lambda c, o: c.put(
        f"/api/v1/admin/tenants/{o.acme.pk}/plan", {"plan": o.pro.pk}, format="json"), *PUT_ON_PRO),
    # The portal's pages, signed in.
    Change("page", "api_key.created", "created_key", lambda c, o: c.post(
        "/keys/", {"label": "deploys", "scopes": ["infer"]}), *KEY_CREATED),
    Change("page", "api_key.revoked", "key", lambda c, o: c.post(f"/keys/{o.key.pk}/revoke/"), *REVOKED),
    Change("page", "quota.changed", "key_quota", lambda c, o: c.post(
        f"/quotas/key-limits/{o.key.pk}/", _limits_post(f"k{o.key.pk}", max_concurrency="3")), *KEY_LIMITED),
    Change("page", "deployment.settings_changed", "deployment", lambda c, o: c.post(
        f"/deployments/{o.deployment.pk}/settings/", _settings_post(o.deployment, keepalive_idle_s="120")),
        *SETTINGS_CHANGED),
    # The system: the services called directly, as a task or a management command does.
    Change("system", "api_key.created", "created_key", lambda c, o: api_key_create(
        tenant=o.acme, label="deploys", scopes=["infer"]), *KEY_CREATED),
    Change("system", "api_key.revoked", "key", lambda c, o: api_key_revoke(tenant=o.acme, key_id=o.key.pk),
           *REVOKED),
    Change("system", "quota.changed", "quota", lambda c, o: quota_set(
        level="tenant", target=o.acme, values={"max_models": 5}), *QUOTA_CHANGED),
    Change("system", "quota.cleared", "quota", lambda c, o: quota_clear(quota=o.quota), *QUOTA_CLEARED),
    Change("system", "tenant.plan_changed", "acme", lambda c, o: tenant_plan_set(tenant=o.acme, plan=o.pro),
           *PUT_ON_PRO),
    Change("system", "plan.created", "team", lambda c, o: plan_save(plan=Plan(name="Team", slug="team"),
                                                                    is_default=False), *PLAN_CREATED),
    Change("system", "plan.changed", "pro", lambda c, o: plan_save(plan=_renamed(o.pro, "Pro Plus"),
                                                                   is_default=False), *PLAN_RENAMED),
    Change("system", "deployment.settings_changed", "deployment", lambda c, o: deployment_settings_update(
        tenant=o.acme, deployment_id=o.deployment.pk, keepalive_idle_s=120), *SETTINGS_CHANGED),
]


def _renamed(plan: Plan, name: str) -> Plan:
    plan.name = name
    return plan


@pytest.fixture
def caller(request, admin_client, admin_user, alice, staff, objects):
    """(client, acting user, acting API key) for each way of making a change."""

    def for_surface(via: str):
        if via == "admin":
            return admin_client, admin_user, None
        if via == "api-session":
            return session_client(alice), alice, None
        if via == "api-key":
            api_key, raw = api_key_create(tenant=objects.acme, label="caller", scopes=["manage"])
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
            return client, None, api_key
        if via == "staff-api":
            return session_client(staff), staff, None
        if via == "page":
            client = Client()
            client.force_login(alice)
            return client, alice, None
        return None, None, None

    return for_surface


def _target(objects: Objects, name: str) -> tuple[str, int]:
    """(object_type, id) of what the change is about."""
    target = _target_object(objects, name)
    return target._meta.model_name.replace("apikey", "api_key"), target.pk


def _target_object(objects: Objects, name: str):
    if name == "created_key":
        return ApiKey.unscoped.get(label="deploys")
    if name == "key_quota":
        return Quota.objects.get(api_key=objects.key)
    if name == "team":
        return Plan.objects.get(slug="team")
    return getattr(objects, name)


@pytest.mark.parametrize("change", CHANGES, ids=str)
def test_each_change_is_recorded_with_its_values_surface_and_actor(request, objects, caller, change):
    if change.target == "deployment":
        objects.deployment = request.getfixturevalue("deployment")
    client, user, api_key = caller(change.via)
    existing = change.target in ("key", "quota", "acme", "pro", "deployment")
    target = _target(objects, change.target) if existing else None  # before a removal
    response, entries = recorded_by(lambda: change.make(client, objects))
    if client is not None:
        assert response.status_code in (200, 201, 202, 204, 302), response.content[:2000]
    [entry] = [entry for entry in entries if entry.event_type == change.event_type]
    target = target or _target(objects, change.target)
    surface = "api" if change.via in ("api-session", "api-key", "staff-api") else change.via
    assert (entry.surface, entry.acting_user, entry.acting_api_key) == (surface, user, api_key)
    assert (entry.object_type, entry.object_id) == target
    assert (entry.old_value, entry.new_value) == (change.old, change.new)
    assert entry.tenant_id == (None if change.target in ("pro", "team") else objects.acme.pk)
    assert timezone.now() - entry.occurred_at < timedelta(minutes=1)
    # Each entry is the whole of its request's actor: nothing is left behind for what comes next.
    assert audit_actor() == SYSTEM
    assert {e.surface for e in entries} == {surface}


@pytest.mark.parametrize("path, surface", [("/admin/tenants/quota/", "admin"), ("/api/v1/keys", "api"),
                                           ("/keys/", "page"), ("/", "page"), ("/apix", "page")])
@pytest.mark.parametrize("who", ["alice", "anonymous"])
def test_each_request_acts_through_its_surface_and_leaves_nothing_behind(rf, alice, path, surface, who):
    seen = []

    def failing_view(request):
        seen.append(audit_actor())
        raise RuntimeError("the view failed")

    request = rf.get(path)
    request.user = alice if who == "alice" else AnonymousUser()
    with pytest.raises(RuntimeError):
        AuditSurfaceMiddleware(failing_view)(request)
    assert seen == [Actor(surface=surface, user=alice if who == "alice" else None)]
    assert audit_actor() == SYSTEM


def test_a_creation_records_no_old_values(objects):
    _, entries = recorded_by(lambda: plan_save(plan=Plan(name="Team", slug="team"), is_default=False))
    [created] = [entry for entry in entries if entry.event_type == "plan.created"]
    assert not any((created.old_value or {}).values())


def test_a_change_that_changes_nothing_records_nothing(objects):
    _, entries = recorded_by(lambda: quota_set(level="tenant", target=objects.acme, values={"max_models": 3}))
    assert entries == []


def test_after_an_api_request_a_direct_service_call_is_the_system_again(objects):
    client = key_client(objects.acme)
    assert client.post(f"/api/v1/keys/{objects.key.pk}/revoke").status_code == 200
    _, [entry] = recorded_by(lambda: quota_set(level="tenant", target=objects.acme, values={"max_models": 4}))
    assert (entry.surface, entry.acting_user, entry.acting_api_key) == ("system", None, None)


# ---- a change that fails records nothing -----------------------------------------------------------

@pytest.mark.parametrize("via, make, status", [
    pytest.param("api", lambda c, o: c.patch(f"/api/v1/keys/{o.key.pk}/limits", {"rate_burst": 4}, format="json"),
                 400, id="key limits the model refuses"),
    pytest.param("api", lambda c, o: c.patch(f"/api/v1/deployments/{o.deployment.pk}", {"min_instances": 2},
                                             format="json"), 400, id="settings that do not fit together"),
    pytest.param("api", lambda c, o: c.post(f"/api/v1/keys/{o.globex_key.pk}/revoke"), 404,
                 id="another tenant's key"),
    pytest.param("api", lambda c, o: c.post("/api/v1/keys", {"label": "x", "scopes": ["everything"]}, format="json"),
                 400, id="a key with an unknown scope"),
    # plan_save records the rename, then the limits are refused: both roll back.
    pytest.param("staff-api", lambda c, o: c.patch(f"/api/v1/admin/plans/{o.pro.pk}", {
        "name": "Pro Plus", "limits": {"rate_burst": 4}}, format="json"), 400, id="a rename with bad limits"),
    pytest.param("staff-api", lambda c, o: c.post("/api/v1/admin/plans", {"name": "Again", "slug": "pro"},
                                                  format="json"), 400, id="a plan with a slug in use"),
    pytest.param("admin", lambda c, o: _admin_change(c, f"/admin/tenants/plan/{o.pro.pk}/change/", **{
        "name": "Pro Plus", "quota-0-rate_per_second": "", "quota-0-rate_burst": "10"}), 200,
        id="an admin rename with bad limits"),
    pytest.param("page", lambda c, o: c.post(f"/deployments/{o.deployment.pk}/settings/",
                                             _settings_post(o.deployment, min_instances="2")), 400,
                 id="page settings that do not fit together"),
])
def test_a_change_that_fails_records_nothing(objects, deployment, caller, via, make, status):
    objects.deployment = deployment
    objects.globex_key, _ = api_key_create(tenant=objects.globex, label="globex key", scopes=["infer"])
    client, _, _ = caller({"api": "api-session"}.get(via, via))
    response, entries = recorded_by(lambda: make(client, objects))
    assert response.status_code == status, response.content[:2000]
    assert entries == []
    assert Plan.objects.get(pk=objects.pro.pk).name == "Pro"


# ---- the tenant's own log in the API ---------------------------------------------------------------

@pytest.fixture
def acme_history(objects, alice):
    """acme's changes, one through each surface, and one of globex's."""
    session_client(alice).patch(f"/api/v1/keys/{objects.key.pk}/limits", {"max_concurrency": 3}, format="json")
    quota_set(level="tenant", target=objects.acme, values={"max_models": 5})
    api_key_revoke(tenant=objects.acme, key_id=objects.key.pk)
    quota_set(level="tenant", target=objects.globex, values={"max_models": 9})
    return objects


def _log(client, query: str = ""):
    return client.get(f"/api/v1/audit-log{query}")


@pytest.mark.parametrize("auth", ["key", "session"])
def test_a_tenant_reads_its_own_log_newest_first(acme_history, alice, auth):
    client = key_client(acme_history.acme) if auth == "key" else session_client(alice)
    response = _log(client)
    assert response.status_code == 200, response.json()
    body = response.json()
    entries = body["results"]
    expected = AuditLog.objects.for_tenant(acme_history.acme)
    if auth == "key":  # the key made for the call is in the log too
        assert entries[0]["event_type"] == "api_key.created" and entries[0]["new_value"]["label"] == "api test"
    assert body["count"] == expected.count() == len(entries)
    assert [e["id"] for e in entries] == sorted((e["id"] for e in entries), reverse=True)
    revoked = next(e for e in entries if e["event_type"] == "api_key.revoked")
    assert revoked == {
        "id": ANY, "occurred_at": ANY, "surface": "system", "acting_user": None, "acting_api_key": None,
        "acting_key_prefix": None, "event_type": "api_key.revoked", "object_type": "api_key",
        "object_id": acme_history.key.pk, "object_repr": str(acme_history.key), "old_value": {"revoked_at": None},
        "new_value": {"revoked_at": ANY}}
    limited = next(e for e in entries if e["event_type"] == "quota.changed" and e["surface"] == "api")
    assert (limited["acting_user"], limited["old_value"], limited["new_value"]) == (
        "alice", {"max_concurrency": None}, {"max_concurrency": 3})
    assert {e["object_repr"] for e in entries}.isdisjoint({"Pro", "Standard"})  # platform-wide plans: admin only


def test_an_entry_names_the_api_key_that_made_the_change(acme_history):
    api_key, raw = api_key_create(tenant=acme_history.acme, label="ops", scopes=["manage"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.patch(f"/api/v1/keys/{api_key.pk}/limits", {"max_concurrency": 7}, format="json").status_code == 200
    [entry] = _log(client, "?limit=1").json()["results"]
    assert (entry["acting_user"], entry["acting_api_key"], entry["acting_key_prefix"], entry["surface"]) == (
        None, api_key.pk, api_key.prefix, "api")


@pytest.mark.parametrize("auth", ["key", "session"])
def test_another_tenant_sees_none_of_acmes_log(acme_history, bob, auth):
    client = key_client(acme_history.globex) if auth == "key" else session_client(bob)
    entries = _log(client).json()["results"]
    own = {"api_key.created"} if auth == "key" else set()
    assert {e["event_type"] for e in entries} == own | {"quota.changed"}
    assert all(e["object_repr"] != str(acme_history.key) for e in entries)
    assert not any(e["object_id"] == acme_history.quota.pk for e in entries if e["object_type"] == "quota")
    assert len(entries) == AuditLog.objects.for_tenant(acme_history.globex).count()


@pytest.mark.parametrize("query, expected", [
    ("?event_type=api_key.revoked", {"api_key.revoked"}),
    ("?object_type=quota", {"quota.changed"}),
    ("?object_type=api_key&event_type=api_key.created", {"api_key.created"}),
    ("?event_type=plan.changed", set()),
    ("?since={future}", set()),
    ("?until={past}", set()),
    ("?since={past}&until={future}", {"api_key.created", "api_key.revoked", "quota.changed"}),
])
def test_the_log_is_filtered(acme_history, alice, query, expected):
    now = timezone.now()
    times = {"future": (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
             "past": (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")}
    response = _log(session_client(alice), query.format(**times))
    assert response.status_code == 200, response.json()
    assert {e["event_type"] for e in response.json()["results"]} == expected


def test_the_log_is_paginated(acme_history, alice):
    client = session_client(alice)
    everything = [e["id"] for e in _log(client).json()["results"]]
    page = _log(client, "?limit=2&offset=1").json()
    assert page["count"] == len(everything)
    assert [e["id"] for e in page["results"]] == everything[1:3]


@pytest.mark.parametrize("query, message", [
    ("?since=yesterday", "since: Datetime has wrong format."),
    ("?until=2026-13-01T00:00:00Z", "until: Datetime has wrong format."),
    ("?since=", "since: Datetime has wrong format."),
    ("?object_type=widget", 'object_type: "widget" is not a valid choice.'),
    ("?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z", "until: Must not be earlier than since."),
    ("?limit=lots", "limit: Must be a whole number from 1 to 1000."),
])
def test_a_bad_filter_is_400_with_a_clear_message(acme_history, alice, query, message):
    response = _log(session_client(alice), query)
    assert response.status_code == 400
    body = response.json()
    assert body["error"]["code"] == "invalid_request"
    assert body["error"]["message"].startswith(message), body


def test_members_and_infer_keys_may_not_read_the_log_nor_may_anyone_unsigned(acme_history, carol):
    member = _log(session_client(carol))
    assert member.status_code == 403
    assert member.json() == {"error": {"code": "permission_denied",
                                       "message": "Only owners and admins may read the audit log."}}
    infer = _log(key_client(acme_history.acme, scopes=["infer"]))
    assert infer.status_code == 403
    assert infer.json()["error"]["message"] == "This API key lacks the 'manage' scope."
    assert _log(APIClient()).status_code == 401


# ---- the admin -------------------------------------------------------------------------------------

EVERY = {"api_key.revoked", "quota.changed", "plan.changed", "tenant.plan_changed"}


@pytest.mark.parametrize("query, expected", [
    ("", EVERY),
    ("?surface__exact=admin", {"tenant.plan_changed"}),
    ("?surface__exact=system", {"api_key.revoked", "quota.changed", "plan.changed"}),
    ("?event_type=api_key.revoked", {"api_key.revoked"}),
    ("?object_type=plan", {"plan.changed"}),
    ("?tenant__id__exact={globex}", {"quota.changed", "tenant.plan_changed"}),
    ("?q=root", {"tenant.plan_changed"}),
    ("?q=root%40example.com", {"tenant.plan_changed"}),
    ("?q=ci+deploys", {"api_key.revoked"}),
    ("?occurred_at__year={year}", EVERY),
    ("?occurred_at__year=2000", set()),
])
def test_staff_list_search_and_filter_the_log(client, staff, objects, query, expected):
    staff.is_superuser = True
    staff.email = "root@example.com"
    staff.save(update_fields=["is_superuser", "email"])
    AuditLog.unscoped.all().delete()  # the fixtures' changes: the test starts from an empty log
    api_key_revoke(tenant=objects.acme, key_id=objects.key.pk)
    quota_set(level="tenant", target=objects.globex, values={"max_models": 9})
    plan_save(plan=_renamed(objects.pro, "Pro Plus"), is_default=False)
    client.force_login(staff)
    _admin_change(client, f"/admin/tenants/tenant/{objects.globex.pk}/change/", plan=str(objects.pro.pk))
    response = client.get(f"/admin/tenants/auditlog/{query.format(globex=objects.globex.pk, year=timezone.now().year)}")
    assert response.status_code == 200
    assert {entry.event_type for entry in response.context["cl"].result_list} == expected
    if not query:
        page = response.content.decode()
        assert "max_models: – → 9" in page and "plan: – → pro" in page and "name: Pro → Pro Plus" in page
        assert "the system" in page and "root" in page


def test_an_entry_shows_its_old_and_new_values_and_cannot_be_changed(admin_client, objects):
    _, [entry] = recorded_by(lambda: quota_set(level="tenant", target=objects.acme, values={"max_models": 5}))
    url = f"/admin/tenants/auditlog/{entry.pk}/change/"
    page = admin_client.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert "<tr><td>max_models</td><td>3</td><td>5</td></tr>" in html
    assert 'name="_save"' not in html
    assert admin_client.post(url, {"event_type": "forged"}).status_code == 403
    assert admin_client.get("/admin/tenants/auditlog/add/").status_code == 403
    assert admin_client.post(f"/admin/tenants/auditlog/{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    listed = admin_client.get("/admin/tenants/auditlog/").content.decode()
    assert 'href="/admin/tenants/auditlog/add/"' not in listed and "delete_selected" not in listed
    assert AuditLog.unscoped.get(pk=entry.pk).event_type == "quota.changed"


@pytest.mark.parametrize("who", ["anonymous", "alice"])
def test_the_admin_log_is_refused_to_non_staff(client, alice, objects, who):
    if who == "alice":
        client.force_login(alice)
    response = client.get("/admin/tenants/auditlog/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")

"""Quotas over the REST API: the staff-only admin endpoints (plans, quotas at every level,
a tenant's plan) and the tenant's own (its overview; limits on its own deployments and
keys, never looser than its own). Every change is in Redis for the gateway once committed."""
import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from gateway.contract.keys import limits_entry_name, use_counter_name
from graph_editor.services import model_version_upload
from tenants.directory import redis_client
from tenants.models import Plan, Quota
from tenants.quotas import plan_default, plan_save
from tenants.services import api_key_create, user_create
from tests.api_helpers import key_client, session_client
from workers.models import Deployment, DeploymentState

pytestmark = pytest.mark.django_db

# The Standard plan as migration 0003 creates it.
STANDARD = {"rate_per_second": 200.0, "rate_burst": 400, "max_concurrency": 64, "max_payload_bytes": 32 * 2**20,
            "monthly_requests": None, "monthly_compute_seconds": None, "max_models": 100, "max_deployments": 20,
            "max_instances": 4, "max_model_memory_mb": 16384, "allowed_hardware": ["cpu", "gpu"],
            "max_batch_size": 256}


def limits_in_redis(scope: str) -> dict:
    return redis_client().hgetall(limits_entry_name(scope))


@pytest.fixture
def standard(db):
    """The default plan with its migration's limits (transactional tests elsewhere empty the table)."""
    plan = plan_default() or Plan(name="Standard", slug="standard")
    return plan_save(plan=plan, is_default=True, limits=STANDARD)


@pytest.fixture
def staff(db):
    user = user_create(username="root", password="root-password-1")
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    return user


@pytest.fixture
def staff_client(staff) -> APIClient:
    return session_client(staff)


@pytest.fixture
def objects(acme, globex, standard, digits_onnx, settings, tmp_path):
    """A deployment and an API key in acme and in globex."""
    settings.MODEL_STORAGE_DIR = tmp_path / "models"
    found = {}
    for tenant in (acme, globex):
        version = model_version_upload(tenant=tenant, model_name="digits", chunks=[digits_onnx])
        found[tenant.slug] = {
            "deployment": Deployment.unscoped.create(tenant=tenant, name="digits", model_version=version,
                                                     state=DeploymentState.READY),
            "key": api_key_create(tenant=tenant, label=f"{tenant.slug} key", scopes=["infer"])[0],
        }
    return found


# ---- who may call the admin endpoints ----------------------------------------------------

ADMIN_ENDPOINTS = [
    ("get", "/api/v1/admin/plans", None),
    ("post", "/api/v1/admin/plans", {"name": "Pro", "slug": "pro"}),
    ("get", "/api/v1/admin/plans/{plan}", None),
    ("patch", "/api/v1/admin/plans/{plan}", {"name": "Standard+"}),
    ("get", "/api/v1/admin/quotas", None),
    ("post", "/api/v1/admin/quotas", {"level": "tenant", "target": "{tenant}", "limits": {"max_models": 3}}),
    ("get", "/api/v1/admin/quotas/{quota}", None),
    ("patch", "/api/v1/admin/quotas/{quota}", {"limits": {"max_models": 5}}),
    ("delete", "/api/v1/admin/quotas/{quota}", None),
    ("put", "/api/v1/admin/tenants/{tenant}/plan", {"plan": "{plan}"}),
]


def admin_call(client, method, path, payload, ids):
    url = path.format(**ids)
    if payload is not None:
        payload = {k: int(v.format(**ids)) if isinstance(v, str) and v.startswith("{") else v
                   for k, v in payload.items()}
        return getattr(client, method)(url, payload, format="json")
    return getattr(client, method)(url)


@pytest.fixture
def admin_ids(acme, standard, django_capture_on_commit_callbacks):
    return {"plan": standard.pk, "tenant": acme.pk, "quota": Quota.objects.get(plan=standard).pk}


@pytest.mark.parametrize("method, path, payload", ADMIN_ENDPOINTS)
def test_staff_may_call_every_admin_endpoint(staff_client, admin_ids, method, path, payload):
    response = admin_call(staff_client, method, path, payload, admin_ids)
    assert response.status_code in (200, 201, 204), response.content


@pytest.mark.parametrize("who", ["owner", "member", "manage key", "manage+infer key"])
@pytest.mark.parametrize("method, path, payload", ADMIN_ENDPOINTS)
def test_tenants_users_and_keys_get_403_on_every_admin_endpoint(acme, alice, carol, admin_ids, who, method, path,
                                                                payload):
    client = {"owner": lambda: session_client(alice), "member": lambda: session_client(carol),
              "manage key": lambda: key_client(acme), "manage+infer key": lambda: key_client(acme, ["manage", "infer"])}
    response = admin_call(client[who](), method, path, payload, admin_ids)
    assert response.status_code == 403
    assert response.json() == {"error": {"code": "permission_denied",
                                          "message": "Only platform staff may use the admin API."}}
    assert Plan.objects.count() == 1 and Quota.objects.filter(level="tenant").count() == 0
    assert Plan.objects.get().name == "Standard"


@pytest.mark.parametrize("method, path, payload", ADMIN_ENDPOINTS)
def test_without_credentials_every_admin_endpoint_is_401(admin_ids, method, path, payload):
    response = admin_call(APIClient(), method, path, payload, admin_ids)
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthenticated"


# ---- plans --------------------------------------------------------------------------------

def test_a_plan_is_created_with_its_limits_and_tenants_on_it_get_them(staff_client, acme, standard,
                                                                      django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        created = staff_client.post("/api/v1/admin/plans", {
            "name": "Pro", "slug": "pro",
            "limits": {"rate_per_second": 1000, "max_deployments": 50, "allowed_hardware": ["gpu", "cpu"],
                       "monthly_requests": 10_000_000, "monthly_requests_enforcement": "soft"}}, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert (body["name"], body["slug"], body["is_default"], body["tenants"]) == ("Pro", "pro", False, 0)
    assert body["limits"]["rate_per_second"] == 1000 and body["limits"]["max_deployments"] == 50
    assert body["limits"]["allowed_hardware"] == ["cpu", "gpu"] and body["limits"]["max_models"] is None
    assert body["limits"]["monthly_requests_enforcement"] == "soft"
    assert staff_client.get(f"/api/v1/admin/plans/{body['id']}").json() == body
    assert [p["slug"] for p in staff_client.get("/api/v1/admin/plans").json()] == ["pro", "standard"]

    with django_capture_on_commit_callbacks(execute=True):
        moved = staff_client.put(f"/api/v1/admin/tenants/{acme.pk}/plan", {"plan": body["id"]}, format="json")
    assert moved.status_code == 200, moved.json()
    assert moved.json()["effective_plan"] == "pro" and moved.json()["source"]["rate_per_second"] == "plan"
    assert limits_in_redis(f"t:{acme.pk}") == {"rate": "1000.0", "mreq": "10000000", "mreq_soft": "1"}

    with django_capture_on_commit_callbacks(execute=True):
        changed = staff_client.patch(f"/api/v1/admin/plans/{body['id']}", {"limits": {"rate_per_second": 5}},
                                     format="json")
    assert changed.status_code == 200 and changed.json()["tenants"] == 1
    assert changed.json()["limits"]["max_deployments"] == 50  # only the fields given change
    assert limits_in_redis(f"t:{acme.pk}")["rate"] == "5.0"

    with django_capture_on_commit_callbacks(execute=True):
        back = staff_client.put(f"/api/v1/admin/tenants/{acme.pk}/plan", {"plan": None}, format="json")
    assert back.json()["plan"] is None and back.json()["effective_plan"] == "standard"
    assert limits_in_redis(f"t:{acme.pk}")["rate"] == "200.0"


def test_making_a_plan_the_default_moves_the_flag_and_the_default_cannot_be_unset(
        staff_client, acme, standard, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        pro = staff_client.post("/api/v1/admin/plans", {"name": "Pro", "slug": "pro", "is_default": True,
                                                        "limits": {"max_concurrency": 7}}, format="json").json()
    assert pro["is_default"] is True
    assert Plan.objects.get(pk=standard.pk).is_default is False
    # acme has no plan of its own: it follows the default.
    assert limits_in_redis(f"t:{acme.pk}") == {"conc": "7"}

    refused = staff_client.patch(f"/api/v1/admin/plans/{pro['id']}", {"is_default": False}, format="json")
    assert refused.status_code == 400
    assert refused.json() == {"error": {"code": "invalid_plan",
                                        "message": "Pro is the default plan: make another plan the default instead."}}
    assert Plan.objects.get(pk=pro["id"]).is_default is True


@pytest.mark.parametrize("payload, message", [
    ({"slug": "pro"}, "name: This field is required."),
    ({"name": "Pro", "slug": "Not A Slug"}, "slug: Use 1-63 lowercase letters"),
    ({"name": "Again", "slug": "standard"}, "slug: plan with this slug already exists."),
    ({"name": "Pro", "slug": "pro", "limits": {"rate_per_second": "fast"}}, "rate_per_second: A valid number is "
                                                                            "required."),
    ({"name": "Pro", "slug": "pro", "limits": {"max_models": -1}}, "max_models: Ensure this value is greater than "
                                                                   "or equal to 0."),
    ({"name": "Pro", "slug": "pro", "limits": {"max_models": 0}}, "max_models must be greater than zero"),
    ({"name": "Pro", "slug": "pro", "limits": {"rate_burst": 10}}, "rate_burst needs rate_per_second."),
    ({"name": "Pro", "slug": "pro", "limits": {"allowed_hardware": ["tpu"]}}, '"tpu" is not a valid choice.'),
    ({"name": "Pro", "slug": "pro", "limits": {"allowed_hardware": []}}, "This list may not be empty."),
    ({"name": "Pro", "slug": "pro", "limits": {"max_gpus": 1}}, "limits: max_gpus: Unknown limit."),
    ({"name": "Pro", "slug": "pro", "limits": {"max_instances": 2**40}}, "less than or equal to 2147483647"),
])
def test_a_bad_plan_is_400_with_a_readable_message(staff_client, standard, payload, message):
    response = staff_client.post("/api/v1/admin/plans", payload, format="json")
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]
    assert Plan.objects.count() == 1


def test_unknown_plans_and_tenants_are_404(staff_client, acme, standard):
    assert staff_client.get("/api/v1/admin/plans/999999").status_code == 404
    assert staff_client.patch("/api/v1/admin/plans/999999", {"name": "x"}, format="json").status_code == 404
    unknown_tenant = staff_client.put("/api/v1/admin/tenants/999999/plan", {"plan": None}, format="json")
    assert unknown_tenant.status_code == 404 and unknown_tenant.json()["error"]["code"] == "not_found"
    unknown_plan = staff_client.put(f"/api/v1/admin/tenants/{acme.pk}/plan", {"plan": 999999}, format="json")
    assert unknown_plan.status_code == 404 and unknown_plan.json()["error"]["message"] == "No plan with id 999999."
    assert staff_client.put(f"/api/v1/admin/tenants/{acme.pk}/plan", {}, format="json").status_code == 400


# ---- quotas at every level ------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_quotas_at_every_level_are_created_changed_and_removed_and_redis_follows_each_commit(staff_client, objects,
                                                                                           acme, standard):
    deployment, api_key = objects["acme"]["deployment"], objects["acme"]["key"]
    created = {}
    for level, target, limits in [
        ("tenant", acme.pk, {"max_concurrency": 10, "max_deployments": 2}),
        ("deployment", deployment.pk, {"rate_per_second": 5, "rate_burst": 10}),
        ("key", api_key.pk, {"monthly_compute_seconds": 3.5, "monthly_compute_enforcement": "soft"}),
    ]:
        response = staff_client.post("/api/v1/admin/quotas", {"level": level, "target": target, "limits": limits},
                                     format="json")
        assert response.status_code == 201, response.json()
        body = response.json()
        assert (body["level"], body["target"], body["tenant"]) == (level, target, acme.pk)
        assert {k: body["limits"][k] for k in limits} == limits
        created[level] = body["id"]
    assert limits_in_redis(f"t:{acme.pk}") == {"rate": "200.0", "burst": "400", "conc": "10",
                                               "payload": str(32 * 2**20)}
    assert limits_in_redis(f"d:{deployment.pk}") == {"rate": "5.0", "burst": "10"}
    assert limits_in_redis(f"k:{api_key.pk}") == {"mcs": "3.5", "mcs_soft": "1"}
    assert created["tenant"] and Quota.objects.get(pk=created["tenant"]).max_deployments == 2

    listed = staff_client.get(f"/api/v1/admin/quotas?tenant={acme.pk}").json()
    assert listed["count"] == 3 and {q["level"] for q in listed["results"]} == {"tenant", "deployment", "key"}
    assert [q["id"] for q in staff_client.get("/api/v1/admin/quotas?level=key").json()["results"]] == [created["key"]]
    assert staff_client.get("/api/v1/admin/quotas?level=plan").json()["results"][0]["target_name"] == "Standard"

    changed = staff_client.patch(f"/api/v1/admin/quotas/{created['deployment']}",
                                 {"limits": {"rate_burst": None, "max_concurrency": 2}}, format="json")
    assert changed.status_code == 200
    assert changed.json()["limits"]["rate_per_second"] == 5 and changed.json()["limits"]["rate_burst"] is None
    assert limits_in_redis(f"d:{deployment.pk}") == {"rate": "5.0", "conc": "2"}

    for level, scope, after in [("tenant", f"t:{acme.pk}", {"rate": "200.0", "burst": "400", "conc": "64",
                                                             "payload": str(32 * 2**20)}),
                                ("deployment", f"d:{deployment.pk}", {}), ("key", f"k:{api_key.pk}", {})]:
        assert staff_client.delete(f"/api/v1/admin/quotas/{created[level]}").status_code == 204
        assert limits_in_redis(scope) == after
        assert staff_client.get(f"/api/v1/admin/quotas/{created[level]}").status_code == 404


def test_a_second_quota_for_the_same_target_is_409(staff_client, objects, acme, standard):
    first = staff_client.post("/api/v1/admin/quotas", {"level": "tenant", "target": acme.pk}, format="json")
    assert first.status_code == 201
    again = staff_client.post("/api/v1/admin/quotas", {"level": "tenant", "target": acme.pk,
                                                       "limits": {"max_models": 1}}, format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
    assert f"(id {first.json()['id']})" in again.json()["error"]["message"]
    plan = staff_client.post("/api/v1/admin/quotas", {"level": "plan", "target": standard.pk}, format="json")
    assert plan.status_code == 409
    assert Quota.objects.get(pk=first.json()["id"]).max_models is None


@pytest.mark.parametrize("level", ["plan", "tenant", "deployment", "key"])
def test_an_unknown_target_is_404(staff_client, standard, level):
    response = staff_client.post("/api/v1/admin/quotas", {"level": level, "target": 999999}, format="json")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert "with id 999999" in response.json()["error"]["message"]


@pytest.mark.parametrize("level, limits, message", [
    ("key", {"max_instances": 2}, "max_instances can only be set on a plan or a tenant."),
    ("key", {"max_batch_size": None, "rate_burst": 0}, "rate_burst must be greater than zero"),
    ("deployment", {"allowed_hardware": ["cpu"]}, "allowed_hardware can only be set on a plan or a tenant."),
    ("key", {"rate_burst": 5}, "rate_burst needs rate_per_second."),
    ("deployment", {"max_concurrency": -3}, "max_concurrency: Ensure this value is greater than or equal to 0."),
    ("deployment", {"rate_per_second": -1}, "rate_per_second must be greater than zero"),
    ("deployment", {"monthly_requests": "lots"}, "monthly_requests: A valid integer is required."),
    ("key", {"monthly_requests_enforcement": "maybe"}, '"maybe" is not a valid choice.'),
    ("key", {"max_payload_bytes": 1.5}, "max_payload_bytes: A valid integer is required."),
])
def test_bad_limits_are_400_with_a_readable_message(staff_client, objects, level, limits, message):
    target = objects["acme"]["deployment" if level == "deployment" else "key"].pk
    response = staff_client.post("/api/v1/admin/quotas", {"level": level, "target": target, "limits": limits},
                                 format="json")
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]
    assert not Quota.objects.filter(level=level).exists()


@pytest.mark.parametrize("query", ["level=galaxy", "tenant=abc"])
def test_bad_list_filters_are_400(staff_client, standard, query):
    assert staff_client.get(f"/api/v1/admin/quotas?{query}").status_code == 400


def test_unknown_quotas_are_404(staff_client, standard):
    for method in ("get", "patch", "delete"):
        response = getattr(staff_client, method)("/api/v1/admin/quotas/999999", {"limits": {}}, format="json")
        assert response.status_code == 404


# ---- the tenant's own view ---------------------------------------------------------------

@pytest.mark.parametrize("who", ["alice", "carol", "key"])
def test_owners_members_and_keys_read_the_overview(acme, alice, carol, objects, who):
    client = key_client(acme) if who == "key" else session_client({"alice": alice, "carol": carol}[who])
    redis_client().hset(use_counter_name(f"t:{acme.pk}", f"{timezone.now():%Y%m}"),
                        mapping={"req": 12, "cus": 2_500_000})
    response = client.get("/api/v1/quotas")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["plan"], body["plan_name"]) == ("standard", "Standard")
    assert body["tenant"]["limits"]["max_deployments"] == 20 and body["tenant"]["source"]["max_deployments"] == "plan"
    assert body["tenant"]["source"]["monthly_requests"] is None
    assert body["tenant"]["usage"] == {"requests": 12, "compute_seconds": 2.5, "in_flight": 0, "models": 1,
                                       "deployments": 1, "model_memory_mb": body["tenant"]["usage"]["model_memory_mb"]}
    assert body["tenant"]["usage"]["model_memory_mb"] > 64
    assert [d["name"] for d in body["deployments"]] == ["digits"] and body["deployments"][0]["limits"] is None
    assert "acme key" in [k["label"] for k in body["keys"]]
    assert "globex key" not in str(body)


def test_another_tenant_sees_only_its_own_overview(bob, objects):
    body = session_client(bob).get("/api/v1/quotas").json()
    assert [d["id"] for d in body["deployments"]] == [objects["globex"]["deployment"].pk]
    assert [k["label"] for k in body["keys"]] == ["globex key"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["deployment", "key"])
def test_an_owner_narrows_a_deployments_or_keys_limits_and_the_gateway_has_them(acme, alice, objects, kind):
    target = objects["acme"][kind]
    url = f"/api/v1/{'deployments' if kind == 'deployment' else 'keys'}/{target.pk}/limits"
    scope = f"{'d' if kind == 'deployment' else 'k'}:{target.pk}"
    client = session_client(alice)
    assert all(value is None for field, value in client.get(url).json().items() if not field.endswith("enforcement"))
    # With no quota of its own the enforcement reads as a new one's, never null (the schema says an enum).
    assert client.get(url).json()["monthly_requests_enforcement"] == "hard"

    response = client.patch(url, {"rate_per_second": 20, "rate_burst": 40, "max_concurrency": 64,
                                  "monthly_requests": 1000, "monthly_requests_enforcement": "soft"}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["rate_per_second"] == 20 and response.json()["max_concurrency"] == 64
    assert limits_in_redis(scope) == {"rate": "20.0", "burst": "40", "conc": "64", "mreq": "1000", "mreq_soft": "1"}
    assert client.get(url).json() == response.json()

    # Only the fields given change; null removes one.
    client.patch(url, {"max_concurrency": None}, format="json")
    assert limits_in_redis(scope) == {"rate": "20.0", "burst": "40", "mreq": "1000", "mreq_soft": "1"}
    overview = client.get("/api/v1/quotas").json()
    [entry] = [e for e in overview[f"{kind}s"] if e["id"] == target.pk]
    assert entry["limits"]["rate_per_second"] == 20 and entry["limits"]["max_concurrency"] is None


@pytest.mark.parametrize("kind", ["deployment", "key"])
@pytest.mark.parametrize("payload, code, message", [
    ({"rate_per_second": 500}, "limit_above_tenant",
     "rate_per_second can be at most 200, your tenant's limit; asked for 500."),
    ({"rate_per_second": 100, "rate_burst": 401}, "limit_above_tenant", "rate_burst can be at most 400"),
    ({"max_concurrency": 65}, "limit_above_tenant", "max_concurrency can be at most 64"),
    ({"max_payload_bytes": 2**40}, "limit_above_tenant", "max_payload_bytes can be at most 33,554,432"),
    ({"max_instances": 1}, "invalid_request", "max_instances: Only plans and tenants carry this limit."),
    ({"allowed_hardware": None}, "invalid_request", "allowed_hardware: Only plans and tenants carry this limit."),
    ({"rate_burst": 10}, "invalid_limit", "rate_burst needs rate_per_second."),
    ({"max_concurrency": -1}, "invalid_request", "max_concurrency: Ensure this value is greater than or equal to 0."),
    ({"max_concurrency": 0}, "invalid_limit", "max_concurrency must be greater than zero"),
    ({"rate_per_second": "ten"}, "invalid_request", "rate_per_second: A valid number is required."),
    ({"limits": {"rate_per_second": 1}}, "invalid_request", "limits: Unknown limit."),
])
def test_bad_or_looser_limits_are_400(acme, alice, objects, kind, payload, code, message):
    target = objects["acme"][kind]
    url = f"/api/v1/{'deployments' if kind == 'deployment' else 'keys'}/{target.pk}/limits"
    response = session_client(alice).patch(url, payload, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert message in response.json()["error"]["message"]
    assert not Quota.objects.filter(level=kind).exists()


def test_the_tenants_own_limit_is_the_ceiling_not_the_plans(acme, alice, objects, django_capture_on_commit_callbacks):
    from tenants.quotas import quota_set

    url = f"/api/v1/deployments/{objects['acme']['deployment'].pk}/limits"
    quota_set(level="tenant", target=acme, values={"max_concurrency": 8, "monthly_requests": 100})
    assert session_client(alice).patch(url, {"max_concurrency": 9}, format="json").status_code == 400
    assert session_client(alice).patch(url, {"monthly_requests": 101}, format="json").status_code == 400
    assert session_client(alice).patch(url, {"max_concurrency": 8, "monthly_requests": 100},
                                       format="json").status_code == 200


@pytest.mark.parametrize("auth", ["session", "key"])
@pytest.mark.parametrize("kind", ["deployment", "key"])
@pytest.mark.parametrize("method", ["get", "patch"])
def test_another_tenant_gets_404_on_acmes_limits(bob, globex, objects, auth, kind, method):
    client = session_client(bob) if auth == "session" else key_client(globex)
    target = objects["acme"][kind]
    url = f"/api/v1/{'deployments' if kind == 'deployment' else 'keys'}/{target.pk}/limits"
    response = getattr(client, method)(url, {"max_concurrency": 1}, format="json")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found" and "in this tenant" in response.json()["error"]["message"]
    assert not Quota.objects.filter(level=kind).exists()


@pytest.mark.parametrize("kind", ["deployment", "key"])
def test_a_member_reads_but_cannot_change_limits(carol, objects, kind):
    target = objects["acme"][kind]
    url = f"/api/v1/{'deployments' if kind == 'deployment' else 'keys'}/{target.pk}/limits"
    client = session_client(carol)
    assert client.get(url).status_code == 200
    response = client.patch(url, {"max_concurrency": 1}, format="json")
    assert response.status_code == 403 and "read-only (member)" in response.json()["error"]["message"]
    assert not Quota.objects.filter(level=kind).exists()


def test_an_infer_only_key_cannot_read_quotas(acme, objects):
    response = key_client(acme, scopes=["infer"]).get("/api/v1/quotas")
    assert response.status_code == 403

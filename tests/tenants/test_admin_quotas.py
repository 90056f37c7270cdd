"""The Django admin for plans, quotas and a tenant's plan: every save goes through the
quota services (so the gateway's limits in Redis follow), and what the services refuse
comes back as a form error, never a 500."""
import pytest

from gateway.contract.keys import limits_entry_name
from graph_editor.services import model_version_upload
from tenants.directory import redis_client
from tenants.models import Plan, Quota, Tenant
from tenants.quotas import plan_save, quota_set
from tenants.services import api_key_create
from tests.tenants.test_api_quotas import standard  # noqa: F401
from workers.models import Deployment, DeploymentState

pytestmark = pytest.mark.django_db

ENFORCEMENT = {"monthly_requests_enforcement": "hard", "monthly_compute_enforcement": "hard"}


def limits_in_redis(scope: str) -> dict:
    return redis_client().hgetall(limits_entry_name(scope))


def form_data(page) -> dict:
    """What the browser would post back from an admin change page, unchanged."""
    forms = [page.context["adminform"].form]
    for inline in page.context["inline_admin_formsets"]:
        forms += [inline.formset.management_form, *inline.formset.forms]
    data = {}
    for form in forms:
        for name in form.fields:
            value = form[name].value()
            if value is True:
                value = "on"
            if value is not None and value is not False:
                data[form.add_prefix(name)] = value
    return data


def errors_of(page) -> str:
    forms = [page.context["adminform"].form]
    for inline in page.context["inline_admin_formsets"]:
        forms += inline.formset.forms
    return " ".join(str(e) for form in forms for errors in form.errors.values() for e in errors)


@pytest.fixture
def targets(acme, standard, digits_onnx, settings, tmp_path):  # noqa: F811
    settings.MODEL_STORAGE_DIR = tmp_path / "models"
    version = model_version_upload(tenant=acme, model_name="digits", chunks=[digits_onnx])
    deployment = Deployment.unscoped.create(tenant=acme, name="digits", model_version=version,
                                            state=DeploymentState.READY)
    api_key, _ = api_key_create(tenant=acme, label="ci deploys", scopes=["infer"])
    return {"deployment": deployment, "key": api_key}


# ---- plans ------------------------------------------------------------------------------------

def test_a_plans_limits_are_edited_inline_and_its_tenants_get_them(admin_client, acme, standard,  # noqa: F811
                                                                   django_capture_on_commit_callbacks):
    url = f"/admin/tenants/plan/{standard.pk}/change/"
    page = admin_client.get(url)
    assert page.status_code == 200
    data = form_data(page)
    assert data["quota-0-max_concurrency"] == 64 and data["is_default"] == "on"
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(url, {**data, "quota-0-max_concurrency": "8", "quota-0-monthly_requests": "500"})
    assert response.status_code == 302, errors_of(response)
    quota = Quota.objects.get(plan=standard)
    assert (quota.max_concurrency, quota.monthly_requests, quota.rate_per_second) == (8, 500, 200)
    assert limits_in_redis(f"t:{acme.pk}")["conc"] == "8"
    assert limits_in_redis(f"t:{acme.pk}")["mreq"] == "500"


def test_a_new_plan_is_saved_with_its_limits(admin_client, standard):  # noqa: F811
    data = form_data(admin_client.get("/admin/tenants/plan/add/"))
    response = admin_client.post("/admin/tenants/plan/add/", {
        **data, "name": "Pro", "slug": "pro", "quota-0-rate_per_second": "1000", "quota-0-allowed_hardware": ["gpu"],
        "quota-0-max_instances": "16"})
    assert response.status_code == 302, errors_of(response)
    pro = Plan.objects.get(slug="pro")
    assert pro.is_default is False and Plan.objects.get(pk=standard.pk).is_default is True
    assert (pro.quota.rate_per_second, pro.quota.allowed_hardware, pro.quota.max_instances) == (1000, ["gpu"], 16)
    listed = admin_client.get("/admin/tenants/plan/").content.decode()
    assert "1,000 req/s" in listed and "16 instances" in listed


def test_the_default_plan_moves_and_cannot_just_be_unset(admin_client, acme, standard,  # noqa: F811
                                                         django_capture_on_commit_callbacks):
    pro = plan_save(plan=Plan(name="Pro", slug="pro"), is_default=False, limits={"max_concurrency": 5})
    url = f"/admin/tenants/plan/{pro.pk}/change/"
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(url, {**form_data(admin_client.get(url)), "is_default": "on"})
    assert response.status_code == 302, errors_of(response)
    assert Plan.objects.get(is_default=True) == pro
    assert limits_in_redis(f"t:{acme.pk}") == {"conc": "5"}  # acme has no plan of its own

    data = form_data(admin_client.get(url))
    del data["is_default"]
    refused = admin_client.post(url, data)
    assert refused.status_code == 200
    assert errors_of(refused) == "Pro is the default plan: make another plan the default instead."
    assert Plan.objects.get(pk=pro.pk).is_default is True
    assert admin_client.get(f"/admin/tenants/plan/{pro.pk}/delete/").status_code == 403


@pytest.mark.parametrize("changes, error", [
    ({"quota-0-rate_per_second": "", "quota-0-rate_burst": "10"}, "rate_burst needs rate_per_second."),
    ({"quota-0-max_models": "0"}, "max_models must be greater than zero (leave it empty for no limit)."),
    ({"quota-0-max_instances": str(2**40)}, "Ensure this value is less than or equal to 2147483647."),
    ({"quota-0-max_models": "-1"}, "Ensure this value is greater than or equal to 0."),
    ({"quota-0-rate_per_second": "fast"}, "Enter a number."),
])
def test_limits_a_plan_cannot_have_are_form_errors(admin_client, standard, changes, error):  # noqa: F811
    url = f"/admin/tenants/plan/{standard.pk}/change/"
    response = admin_client.post(url, {**form_data(admin_client.get(url)), **changes})
    assert response.status_code == 200
    page = response.content.decode().replace("&#x27;", "'")
    assert error in page
    quota = Quota.objects.get(plan=standard)
    assert (quota.rate_per_second, quota.rate_burst, quota.max_models, quota.max_instances) == (200, 400, 100, 4)


# ---- quotas -----------------------------------------------------------------------------------

@pytest.fixture
def quotas(acme, globex, targets):
    return {
        "tenant": quota_set(level="tenant", target=acme, values={"max_models": 3}),
        "globex": quota_set(level="tenant", target=globex, values={"max_models": 9}),
        "deployment": quota_set(level="deployment", target=targets["deployment"], values={"max_concurrency": 2}),
        "key": quota_set(level="key", target=targets["key"], values={"rate_per_second": 1.5}),
    }


@pytest.mark.parametrize("query, expected", [
    ("", {"plan", "tenant", "globex", "deployment", "key"}),
    ("?level__exact=key", {"key"}),
    ("?level__exact=tenant", {"tenant", "globex"}),
    ("?tenant__id__exact={acme}", {"tenant", "deployment", "key"}),
    ("?q=ci+deploys", {"key"}),
    ("?q=digits", {"deployment"}),
    ("?q=globex", {"globex"}),
])
def test_quotas_are_listed_filtered_and_searched(admin_client, acme, standard, quotas, query, expected):  # noqa: F811
    response = admin_client.get(f"/admin/tenants/quota/{query.format(acme=acme.pk)}")
    assert response.status_code == 200
    names = {quota.pk: name for name, quota in quotas.items()} | {Quota.objects.get(plan=standard).pk: "plan"}
    assert {names[q.pk] for q in response.context["cl"].result_list} == expected
    if not query:
        page = response.content.decode()
        assert "1.5 req/s" in page and "2 in flight" in page and "3 models" in page


@pytest.mark.parametrize("level, target, limits, scope, redis", [
    ("deployment", "deployment", {"rate_per_second": "5", "rate_burst": "10"}, "d", {"rate": "5.0", "burst": "10"}),
    ("key", "api_key", {"max_concurrency": "3"}, "k", {"conc": "3"}),
    ("tenant", "tenant", {"max_payload_bytes": "1000", "max_deployments": "2"}, "t", None),
])
def test_a_quota_is_added_through_the_service(admin_client, acme, targets, django_capture_on_commit_callbacks, level,
                                              target, limits, scope, redis):
    target_id = {"deployment": targets["deployment"].pk, "api_key": targets["key"].pk, "tenant": acme.pk}[target]
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post("/admin/tenants/quota/add/", {
            "level": level, target: target_id, **ENFORCEMENT, **limits})
    assert response.status_code == 302, errors_of(response)
    quota = Quota.objects.get(level=level)
    assert quota.tenant_id == acme.pk and getattr(quota, f"{target}_id") == target_id
    scope_id = target_id if scope != "t" else acme.pk
    if redis is None:  # a tenant's own value overrides its plan's
        assert limits_in_redis(f"t:{scope_id}")["payload"] == "1000"
    else:
        assert limits_in_redis(f"{scope}:{scope_id}") == redis

    change = admin_client.get(f"/admin/tenants/quota/{quota.pk}/change/")
    form = change.context["adminform"].form
    assert "level" not in form.fields and target not in form.fields  # fixed once added
    assert ("max_instances" in form.fields) is (level == "tenant")  # deploy-time limits: plans and tenants only


@pytest.mark.parametrize("post, field, error", [
    ({"level": "key"}, "api_key", "Choose the api key this quota limits."),
    ({"level": "key", "api_key": "{key}", "tenant": "{acme}"}, "tenant", "Leave this empty for a quota of level key."),
    ({"level": "deployment", "deployment": "{deployment}", "max_instances": "2"}, "max_instances",
     "Deploy-time limits are set on plans and tenants only."),
    ({"level": "deployment", "deployment": "{deployment}", "allowed_hardware": ["cpu"]}, "allowed_hardware",
     "Deploy-time limits are set on plans and tenants only."),
    ({"level": "tenant", "tenant": "{globex}"}, "tenant", "This tenant has its own quota already: change that one."),
    ({"level": "key", "api_key": "{quoted_key}"}, "api_key", "Quota with this Api key already exists."),
    ({"level": "key", "api_key": "{key}", "rate_burst": "4"}, None, "rate_burst needs rate_per_second."),
    ({"level": "key", "api_key": "{key}", "max_concurrency": "0"}, None, "max_concurrency must be greater than zero"),
    ({"level": "key", "api_key": "{key}", "max_concurrency": "-2"}, "max_concurrency",
     "Ensure this value is greater than or equal to 0."),
])
def test_a_quota_the_admin_cannot_add_is_a_form_error(admin_client, acme, globex, targets, quotas, post, field, error):
    other_key, _ = api_key_create(tenant=acme, label="fresh", scopes=["infer"])
    ids = {"acme": acme.pk, "globex": globex.pk, "deployment": targets["deployment"].pk, "key": other_key.pk,
           "quoted_key": targets["key"].pk}
    data = {k: v.format(**ids) if isinstance(v, str) else v for k, v in post.items()}
    before = Quota.objects.count()
    response = admin_client.post("/admin/tenants/quota/add/", {**ENFORCEMENT, **data})
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert error in " ".join(form.errors.get(field or "__all__", [])), form.errors
    assert Quota.objects.count() == before


def test_a_quota_is_changed_and_deleted_through_the_services(admin_client, targets, quotas,
                                                             django_capture_on_commit_callbacks):
    quota, scope = quotas["key"], f"k:{targets['key'].pk}"
    url = f"/admin/tenants/quota/{quota.pk}/change/"
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(url, {**form_data(admin_client.get(url)), "max_concurrency": "4"})
    assert response.status_code == 302, errors_of(response)
    assert limits_in_redis(scope) == {"rate": "1.5", "conc": "4"}

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"/admin/tenants/quota/{quota.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Quota.objects.filter(pk=quota.pk).exists()
    assert limits_in_redis(scope) == {}

    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post("/admin/tenants/quota/", {"action": "delete_selected", "post": "yes",
                                                    "_selected_action": [quotas["deployment"].pk]})
    assert not Quota.objects.filter(pk=quotas["deployment"].pk).exists()
    assert limits_in_redis(f"d:{targets['deployment'].pk}") == {}


def test_a_plans_quota_changed_here_reaches_its_tenants(admin_client, acme, standard,  # noqa: F811
                                                       django_capture_on_commit_callbacks):
    url = f"/admin/tenants/quota/{Quota.objects.get(plan=standard).pk}/change/"
    page = admin_client.get(url)
    assert "max_instances" in page.context["adminform"].form.fields
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(url, {**form_data(page), "rate_per_second": "7", "rate_burst": ""})
    assert response.status_code == 302, errors_of(response)
    assert limits_in_redis(f"t:{acme.pk}")["rate"] == "7.0" and "burst" not in limits_in_redis(f"t:{acme.pk}")


def test_the_add_form_is_prefilled_from_the_tenants_link(admin_client, acme, standard):  # noqa: F811
    page = admin_client.get(f"/admin/tenants/quota/add/?level=tenant&tenant={acme.pk}")
    assert page.status_code == 200
    form = page.context["adminform"].form
    assert (form["level"].value(), str(form["tenant"].value())) == ("tenant", str(acme.pk))


def test_a_changed_quota_the_service_refuses_is_a_form_error(admin_client, quotas):
    url = f"/admin/tenants/quota/{quotas['key'].pk}/change/"
    response = admin_client.post(url, {**form_data(admin_client.get(url)), "rate_per_second": "", "rate_burst": "3"})
    assert response.status_code == 200
    assert errors_of(response) == "rate_burst needs rate_per_second."
    assert Quota.objects.get(pk=quotas["key"].pk).rate_per_second == 1.5


# ---- tenants ----------------------------------------------------------------------------------

def test_a_tenants_plan_is_changed_through_the_service_and_its_limits_shown(admin_client, acme, standard,  # noqa: F811
                                                                            django_capture_on_commit_callbacks):
    pro = plan_save(plan=Plan(name="Pro", slug="pro"), is_default=False, limits={"rate_per_second": 1000})
    url = f"/admin/tenants/tenant/{acme.pk}/change/"
    page = admin_client.get(url)
    summary = page.content.decode()
    assert "Plan in force: <strong>Standard</strong>" in summary
    assert "<tr><th>max_deployments</th><td>20</td><td>plan</td></tr>" in summary
    assert f'href="/admin/tenants/quota/add/?level=tenant&amp;tenant={acme.pk}"' in summary

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(url, {**form_data(page), "plan": pro.pk, "name": "Acme Inc"})
    assert response.status_code == 302, errors_of(response)
    tenant = Tenant.objects.get(pk=acme.pk)
    assert (tenant.plan, tenant.name) == (pro, "Acme Inc")
    assert limits_in_redis(f"t:{acme.pk}") == {"rate": "1000.0"}
    assert "Plan in force: <strong>Pro</strong>" in admin_client.get(url).content.decode()

    own = quota_set(level="tenant", target=acme, values={"max_concurrency": 3})
    summary = admin_client.get(url).content.decode()
    assert "<tr><th>max_concurrency</th><td>3</td><td>tenant</td></tr>" in summary
    assert f'<a href="/admin/tenants/quota/{own.pk}/change/">Change this tenant\'s own limits</a>' in summary


def test_a_tenant_added_here_has_its_limits_on_the_gateway(admin_client, standard,  # noqa: F811
                                                           django_capture_on_commit_callbacks):
    data = form_data(admin_client.get("/admin/tenants/tenant/add/"))
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post("/admin/tenants/tenant/add/", {**data, "name": "Initech", "slug": "initech"})
    assert response.status_code == 302, errors_of(response)
    initech = Tenant.objects.get(slug="initech")
    assert limits_in_redis(f"t:{initech.pk}")["rate"] == "200.0"
    assert "(default)" in admin_client.get("/admin/tenants/tenant/").content.decode()

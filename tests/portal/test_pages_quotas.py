"""The Quotas page (the plan, every limit and its source, this month's consumption, each
deployment's and key's own limits, edited by owners and admins, read by members) and the
deployment settings on the deploy form."""
import pytest
from django.utils import timezone

from gateway.contract.keys import use_counter_name
from tenants.directory import redis_client
from tenants.models import REQUEST_LIMITS, Quota
from tenants.quotas import quota_set
from tests.portal.test_pages import flashes, table_rows
from tests.tenants.test_api_quotas import standard  # noqa: F401
from workers.models import Deployment

pytestmark = pytest.mark.django_db


@pytest.fixture
def quota_objects(acme_objects, standard):  # noqa: F811
    """acme's objects, on the Standard plan, with some traffic counted this month."""
    month = f"{timezone.now():%Y%m}"
    counter = use_counter_name(f"t:{acme_objects['deployment'].tenant_id}", month)
    redis_client().hset(counter, mapping={"req": 80, "cus": 1_500_000})
    redis_client().hset(f"gw:use:d:{acme_objects['deployment'].pk}:{month}", mapping={"req": 30, "cus": 0})
    redis_client().hset(f"gw:use:k:{acme_objects['key'].pk}:{month}", mapping={"req": 50, "cus": 0})
    return acme_objects


def limits_post(prefix: str, **values) -> dict:
    data = {f"{prefix}-{field}": "" for field in REQUEST_LIMITS}
    data[f"{prefix}-monthly_requests_enforcement"] = data[f"{prefix}-monthly_compute_enforcement"] = "hard"
    data.update({f"{prefix}-{field}": value for field, value in values.items()})
    return data


@pytest.mark.parametrize("who", ["alice", "carol"])
def test_the_page_shows_the_plan_limits_their_sources_and_this_months_consumption(client, acme, alice, carol,
                                                                                  quota_objects, who):
    quota_set(level="tenant", target=acme, values={"monthly_requests": 100, "max_concurrency": 10})
    client.force_login({"alice": alice, "carol": carol}[who])
    response = client.get("/quotas/")
    assert response.status_code == 200
    page = response.content.decode()
    assert '<strong data-plan>Standard</strong>' in page
    assert 'href="/quotas/" class="active" aria-current="page"' in page

    requests = page.split('data-meter="requests"')[1].split("</div>\n  </div>")[0]
    assert "Requests this month" in requests and '<span class="tag source">tenant</span>' in requests
    assert '<span data-used>80</span>' in requests and '<span data-limit>100</span>' in requests
    assert '<progress max="100" value="80"' in requests
    assert 'meter meter-warn" data-meter="requests"' in page  # 80% of the budget: a warning
    compute = page.split('data-meter="compute"')[1].split("</div>\n  </div>")[0]
    assert "<span data-used>1.5</span>" in compute and "no limit" in compute
    deployments = page.split('data-meter="deployments"')[1].split("</div>\n  </div>")[0]
    assert "<span data-used>1</span>" in deployments and "<span data-limit>20</span>" in deployments
    assert '<span class="tag source">plan</span>' in deployments
    assert "<span data-limit>16,384</span>" in page.split('data-meter="memory"')[1]
    assert "<span data-limit>10</span>" in page.split('data-meter="in_flight"')[1]

    assert table_rows(page, "tenant-limits")[1:] == [
        ["Requests per second", "200", "plan"],
        ["Burst above that rate", "400", "plan"],
        ["Largest request body", "32 MiB", "plan"],
        ["Instances per deployment", "4", "plan"],
        ["Largest batch size", "256", "plan"],
        ["Hardware", "CPU, GPU", "plan"],
    ]
    [header, digits] = table_rows(page, "deployment-quotas")
    assert header == ["Deployment", "Requests this month", "Compute this month", "In flight", "Own limits"]
    assert digits[:4] == ["digits", "30", "0 s", "0"]
    assert digits[4].startswith("none: only the tenant's apply")
    [_, key] = table_rows(page, "key-quotas")
    assert key[0] == f"acme key ik_{quota_objects['key'].prefix}_…" and key[1] == "50"


def test_members_read_but_get_no_edit_forms_and_cannot_post(client, carol, quota_objects):
    client.force_login(carol)
    page = client.get("/quotas/").content.decode()
    assert "Edit limits" not in page and "data-limits-form" not in page
    assert "Your role is read-only" in page
    deployment = quota_objects["deployment"]
    response = client.post(f"/quotas/deployment-limits/{deployment.pk}/",
                           limits_post(f"d{deployment.pk}", max_concurrency="1"))
    assert response.status_code == 403
    assert not Quota.objects.filter(level="deployment").exists()


@pytest.mark.parametrize("kind", ["deployment", "key"])
def test_an_owner_edits_a_deployments_or_keys_limits_and_the_gateway_has_them(
        client, alice, quota_objects, kind, django_capture_on_commit_callbacks):
    target = quota_objects[kind]
    prefix, scope = (f"d{target.pk}", f"d:{target.pk}") if kind == "deployment" else (f"k{target.pk}", f"k:{target.pk}")
    url = f"/quotas/{kind}-limits/{target.pk}/"
    client.force_login(alice)
    page = client.get("/quotas/").content.decode()
    assert f'data-limits-form="{prefix}"' in page and f'action="{url}"' in page

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, limits_post(prefix, rate_per_second="10", rate_burst="20", monthly_requests="40",
                                                monthly_requests_enforcement="soft"), follow=True)
    assert response.redirect_chain[-1][0] == "/quotas/"
    name = "digits" if kind == "deployment" else "acme key"
    assert flashes(response) == [f"Saved the limits of {name}: the gateway applies them from the next request."]
    assert redis_client().hgetall(f"gw:lim:{scope}") == {"rate": "10.0", "burst": "20", "mreq": "40", "mreq_soft": "1"}
    row = table_rows(response.content.decode(), f"{kind}-quotas")[1]
    assert "10 requests/s (burst 20)" in row[4] and "40 requests/month (soft)" in row[4]
    assert row[1].startswith(("30 / 40", "50 / 40"))

    # The form shows what is set; emptying a field removes that limit.
    form = response.context["deployment_rows" if kind == "deployment" else "key_rows"][0]["form"]
    assert form.initial["rate_per_second"] == 10
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url, limits_post(prefix, rate_per_second="10"))
    assert redis_client().hgetall(f"gw:lim:{scope}") == {"rate": "10.0"}


@pytest.mark.parametrize("values, field, error", [
    ({"rate_per_second": "500"}, None, "rate_per_second can be at most 200, your tenant's limit; asked for 500."),
    ({"max_concurrency": "65"}, None, "max_concurrency can be at most 64, your tenant's limit; asked for 65."),
    ({"rate_burst": "5"}, None, "rate_burst needs rate_per_second."),
    ({"max_concurrency": "0"}, None, "max_concurrency must be greater than zero (leave it empty for no limit)."),
    ({"max_concurrency": "-1"}, "max_concurrency", "Ensure this value is greater than or equal to 0."),
    ({"rate_per_second": "fast"}, "rate_per_second", "Enter a number."),
    ({"monthly_requests_enforcement": "maybe"}, "monthly_requests_enforcement", "Select a valid choice."),
])
def test_bad_or_looser_limits_are_shown_inline_and_nothing_changes(client, alice, quota_objects, values, field,
                                                                   error):
    deployment = quota_objects["deployment"]
    client.force_login(alice)
    response = client.post(f"/quotas/deployment-limits/{deployment.pk}/", limits_post(f"d{deployment.pk}", **values))
    assert response.status_code == 400
    [row] = response.context["deployment_rows"]
    assert error in " ".join(row["form"].errors[field or "__all__"])
    page = response.content.decode().replace("&#x27;", "'")
    assert '<details class="limits-edit" open>' in page and error in page
    assert page.count('aria-current="page"') == 1 and 'href="/quotas/" class="active"' in page
    assert not Quota.objects.filter(level="deployment").exists()


@pytest.mark.parametrize("kind", ["deployment", "key"])
def test_another_tenant_gets_404_on_acmes_limits_and_never_sees_them(client, bob, quota_objects, kind):
    target = quota_objects[kind]
    client.force_login(bob)
    prefix = f"{kind[0]}{target.pk}"
    response = client.post(f"/quotas/{kind}-limits/{target.pk}/", limits_post(prefix, max_concurrency="1"))
    assert response.status_code == 404
    assert not Quota.objects.filter(level=kind).exists()
    page = client.get("/quotas/").content.decode()
    assert "acme key" not in page and f'data-scope="{prefix}"' not in page


@pytest.mark.parametrize("method, path", [("get", "/quotas/"), ("post", "/quotas/deployment-limits/1/"),
                                          ("post", "/quotas/key-limits/1/")])
def test_anonymous_users_are_sent_to_login(client, method, path):
    response = getattr(client, method)(path)
    assert response.status_code == 302 and response["Location"].startswith("/login/?next=")


def test_without_deployments_or_keys_the_page_says_so(client, alice, standard):  # noqa: F811
    client.force_login(alice)
    page = client.get("/quotas/").content.decode()
    assert "No active deployments." in page and "No active API keys." in page


# ---- deployment settings on the deploy form -------------------------------------------------------

def test_the_deploy_form_takes_instances_hardware_and_batch_size(client, alice, acme, quota_objects):
    client.force_login(alice)
    version = quota_objects["version"]
    response = client.post("/deployments/", {"model_version": version.pk, "name": "digits-gpu", "instances": "2",
                                             "hardware": "gpu", "max_batch_size": "8"}, follow=True)
    assert flashes(response)[0].startswith("Deploying digits-gpu.")
    deployment = Deployment.objects.for_tenant(acme).get(name="digits-gpu")
    assert (deployment.instances, deployment.hardware, deployment.max_batch_size) == (2, "gpu", 8)
    rows = table_rows(response.content.decode(), "deployments")
    [row] = [r for r in rows if r[0].startswith("digits-gpu")]
    assert row[0].endswith("2 × GPU · batches up to 8")

    # Without them (as the model page posts): one CPU instance, the model's batch size.
    client.post("/deployments/", {"model_version": version.pk, "name": "digits-plain"})
    plain = Deployment.objects.for_tenant(acme).get(name="digits-plain")
    assert (plain.instances, plain.hardware, plain.max_batch_size) == (1, "cpu", 64)


@pytest.mark.parametrize("limits, post, message", [
    ({"allowed_hardware": ["cpu"]}, {"hardware": "gpu"}, "Your plan does not include GPU deployments (allowed: cpu)."),
    ({}, {"instances": "5"}, "At most 4 instances per deployment; asked for 5."),
    ({"max_deployments": 1}, {}, "Your tenant may have at most 1 deployments; undeploy one or ask for a higher limit."),
    ({}, {"instances": "0"}, "Instances: Ensure this value is greater than or equal to 1."),
    ({}, {"hardware": "tpu"}, "Hardware: Select a valid choice. tpu is not one of the available choices."),
    ({}, {"max_batch_size": "-1"}, "Max batch size: Ensure this value is greater than or equal to 0."),
])
def test_a_deployment_the_form_or_the_plan_refuses_says_why(client, alice, acme, quota_objects, limits, post,
                                                            message):
    if limits:
        quota_set(level="tenant", target=acme, values=limits)
    client.force_login(alice)
    response = client.post("/deployments/", {"model_version": quota_objects["version"].pk, "name": "second", **post},
                           follow=True)
    assert flashes(response) == [message]
    assert not Deployment.objects.for_tenant(acme).filter(name="second").exists()


def test_hardware_outside_the_plan_is_offered_disabled(client, alice, acme, quota_objects):
    quota_set(level="tenant", target=acme, values={"allowed_hardware": ["cpu"], "max_instances": 3})
    client.force_login(alice)
    page = client.get("/deployments/").content.decode()
    assert '<option value="gpu" disabled>GPU (not in your plan)</option>' in page
    assert '<option value="cpu">CPU</option>' in page
    assert 'name="instances" id="deploy-instances" type="number" min="1" max="3"' in page

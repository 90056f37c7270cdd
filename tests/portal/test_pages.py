"""Portal pages as a signed-in user sees them, and tenancy and roles on every page and action."""
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from onnx import TensorProto, helper

from graph_editor.models import MLModel, ModelVersion
from tenants.models import ApiKey, Role
from tenants.services import api_key_authenticate, membership_add
from workers.models import Deployment, DeploymentState

PAGES = ["/", "/models/", "/deployments/", "/keys/", "/usage/", "/billing/"]


class _Rows(HTMLParser):
    """The visible text of each cell of one table, row by row."""

    def __init__(self, table_id: str):
        super().__init__()
        self.table_id, self.depth, self.rows, self.cell = table_id, 0, [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and (self.depth or attrs.get("id") == self.table_id
                               or self.table_id in (attrs.get("class") or "").split()):
            self.depth += 1
        elif self.depth and tag == "tr":
            self.rows.append([])
        elif self.depth and tag in ("td", "th"):
            self.cell = []
        elif self.cell is not None and tag in ("br", "div"):
            self.cell.append(" ")

    def handle_endtag(self, tag):
        if tag == "table" and self.depth:
            self.depth -= 1
        elif self.depth and tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(" ".join("".join(self.cell).split()))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def table_rows(page: str, table: str) -> list[list[str]]:
    parser = _Rows(table)
    parser.feed(page)
    return [row for row in parser.rows if row]


def flashes(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def checker_rejected_onnx() -> bytes:
    """Parses as ONNX, but a node reads a tensor nothing produces."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["missing"], ["Y"])], "broken",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 4])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


# --- Signing in ---------------------------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("method, path", [("get", p) for p in PAGES] + [
    ("get", "/models/1/"), ("post", "/models/"), ("post", "/deployments/"), ("post", "/keys/"),
    ("post", "/models/1/delete/"), ("post", "/deployments/1/undeploy/"), ("post", "/deployments/1/retry/"),
    ("post", "/keys/1/revoke/"), ("post", "/tenant/switch/"), ("post", "/billing/spend-limit/"),
    ("get", "/billing/invoices/1/"), ("get", "/billing/invoices/1/pdf/"),
])
def test_anonymous_users_are_sent_to_login(client, method, path):
    response = getattr(client, method)(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


@pytest.mark.django_db
def test_sign_in_lands_on_the_dashboard_and_sign_out_returns_to_login(client, alice):
    page = client.get("/login/").content.decode()
    assert "Sign in" in page and 'name="password"' in page
    bad = client.post("/login/", {"username": "alice", "password": "wrong"})
    assert "Your username and password didn't match." in bad.content.decode()
    response = client.post("/login/", {"username": "alice", "password": "alice-password-1"}, follow=True)
    assert response.redirect_chain[-1][0] == "/"
    assert "<h1>Acme Corp</h1>" in response.content.decode()
    out = client.post("/logout/", follow=True)
    assert out.redirect_chain[-1][0] == "/login/"
    assert client.get("/").status_code == 302


# --- What alice sees ----------------------------------------------------------------------------

@pytest.mark.django_db
def test_dashboard_counts_and_quick_start(client, alice, acme_objects, settings):
    settings.GATEWAY_URL = "https://gateway.example.test"
    client.force_login(alice)
    response = client.get("/")
    page = response.content.decode()
    assert response.context["gateway_url"] == "https://gateway.example.test"
    stat = {name: page.split(f'data-stat="{name}">')[1].split("<")[0] for name in ("models", "deployments", "keys",
                                                                                    "today")}
    assert stat == {"models": "1", "deployments": "1", "keys": "1", "today": "1"}
    assert "1 in total" in page
    assert "curl https://gateway.example.test/v2/models/digits/infer" in page
    assert 'InferenceServerClient("gateway.example.test", ssl=True)' in page
    assert '"digits", [x],' in page
    assert table_rows(page, "dashboard-deployments")[1] == ["digits", "digits v1", "Ready"]
    assert table_rows(page, "dashboard-calls")[1][1:] == ["digits", "200", "2.5 ms"]


@pytest.mark.django_db
def test_models_list_and_detail(client, alice, acme_objects):
    client.force_login(alice)
    rows = table_rows(client.get("/models/").content.decode(), "models")
    assert rows[1][:4] == ["digits", "v1", "X FP32", "label INT64 probabilities FP32"]
    page = client.get(f"/models/{acme_objects['model'].pk}/").content.decode()
    version = acme_objects["version"]
    versions = table_rows(page, "versions")
    assert versions[1][:5] == ["v1", f"{version.size_bytes / 1024:.1f} KB", version.sha256[:12], "17",
                               "now"]
    assert f'name="model_version" value="{version.pk}"' in page
    assert "Deploy" in versions[1][5]


@pytest.mark.django_db
def test_upload_through_the_form_shows_the_signature(client, alice, acme, digits_onnx):
    client.force_login(alice)
    response = client.post("/models/", {"name": "digits", "description": "8x8 digits",
                                        "file": SimpleUploadedFile("digits.onnx", digits_onnx)}, follow=True)
    page = response.content.decode()
    assert "Uploaded digits version 1." in flashes(response)[0]
    assert table_rows(page, "signature")[1:] == [
        ["input", "X", "FP32", "[N, 64]"],
        ["output", "label", "INT64", "[N]"],
        ["output", "probabilities", "FP32", "[N, 10]"],
    ]
    assert 'data-batch-dim>yes<' in page
    assert "8x8 digits" in page
    version = ModelVersion.objects.for_tenant(acme).get()
    assert version.created_by == alice
    assert f"by {alice.username}" in page


@pytest.mark.django_db
@pytest.mark.parametrize("name, payload, field, message", [
    ("junk", b"nonsense", "file", "The file is not a valid ONNX model"),
    ("broken", checker_rejected_onnx(), "file",
     "The ONNX checker rejected the model: Nodes in a graph must be topologically sorted"),
    ("Not A Name", None, "name", "Invalid model name"),
    ("empty", b"", "file", "The submitted file is empty."),
])
def test_bad_upload_shows_why_and_stores_nothing(client, alice, acme, digits_onnx, settings, name, payload, field,
                                                 message):
    client.force_login(alice)
    upload = SimpleUploadedFile("model.onnx", digits_onnx if payload is None else payload)
    response = client.post("/models/", {"name": name, "file": upload})
    assert response.status_code == 400
    page = response.content.decode()
    assert "The upload was not accepted." in page
    errors = page.split(f'data-field-error="{field}">')[1].split("</div>")[0]
    assert message in errors.replace("&#x27;", "'")
    assert not MLModel.objects.for_tenant(acme).exists()
    stored = [p for p in Path(settings.MODEL_STORAGE_DIR).rglob("*") if p.is_file()]
    assert stored == []


@pytest.mark.django_db
def test_deployments_page_shows_state_server_load_time_and_endpoint(client, alice, acme_objects, settings):
    settings.GATEWAY_URL = "http://gw.test:8080"
    deployment = acme_objects["deployment"]
    Deployment.unscoped.filter(pk=deployment.pk).update(load_seconds=1.234)
    client.force_login(alice)
    page = client.get("/deployments/").content.decode()
    row = table_rows(page, "deployments")[1]
    assert row[0].startswith("digits") and row[1] == "digits v1" and row[2] == "Ready"
    assert row[3].endswith("load 1.23 s")
    assert "POST http://gw.test:8080/v2/models/digits/infer" in row[0]
    assert f'<option value="{acme_objects["version"].pk}">digits v1</option>' in page


@pytest.mark.django_db
def test_a_failed_deployment_shows_its_reason_and_can_be_retried(client, alice, acme_objects,
                                                                 django_capture_on_commit_callbacks):
    deployment = acme_objects["deployment"]
    Deployment.unscoped.filter(pk=deployment.pk).update(state=DeploymentState.FAILED,
                                                        error="Triton could not load the model: out of memory")
    client.force_login(alice)
    page = client.get("/deployments/").content.decode()
    assert table_rows(page, "deployments")[1][2] == "Failed Triton could not load the model: out of memory"
    retry_form = page.split(f'action="/deployments/{deployment.pk}/retry/"')[1].split(">")[0]
    assert "hidden" not in retry_form
    response = client.post(f"/deployments/{deployment.pk}/retry/", follow=True)
    assert flashes(response) == ["Loading digits again."]
    assert Deployment.unscoped.get(pk=deployment.pk).state == DeploymentState.PENDING
    again = client.post(f"/deployments/{deployment.pk}/retry/", follow=True)
    assert flashes(again) == ["Only a failed deployment can be retried; this one is pending."]


@pytest.mark.django_db
def test_deploy_and_undeploy_from_the_pages(client, alice, acme, acme_objects, django_capture_on_commit_callbacks):
    client.force_login(alice)
    version = acme_objects["version"]
    response = client.post("/deployments/", {"model_version": version.pk, "name": "digits-2"}, follow=True)
    assert flashes(response)[0].startswith("Deploying digits-2.")
    deployment = Deployment.objects.for_tenant(acme).get(name="digits-2")
    assert deployment.state == DeploymentState.PENDING and deployment.created_by == alice
    assert "digits-2" in table_rows(response.content.decode(), "deployments")[1][0]

    # From the model page: the default name clashes, and the message comes back to that page.
    model_page = f"/models/{version.model_id}/"
    clash = client.post("/deployments/", {"model_version": version.pk, "name": "", "next": model_page}, follow=True)
    assert clash.redirect_chain[-1][0] == model_page
    assert flashes(clash) == ["A deployment named 'digits' already exists; undeploy it or choose another name."]
    bad_name = client.post("/deployments/", {"model_version": version.pk, "name": "No Spaces"}, follow=True)
    assert "Invalid deployment name" in flashes(bad_name)[0]
    assert client.post("/deployments/", {"model_version": "x"}, follow=True).redirect_chain[-1][0] == "/deployments/"

    response = client.post(f"/deployments/{deployment.pk}/undeploy/", follow=True)
    assert flashes(response) == ["Undeploying digits-2: calls to it now fail with 404."]
    assert Deployment.objects.for_tenant(acme).get(pk=deployment.pk).state == DeploymentState.UNLOADING


@pytest.mark.django_db
def test_next_never_leads_to_another_site(client, alice, acme_objects):
    client.force_login(alice)
    response = client.post("/deployments/", {"model_version": acme_objects["version"].pk,
                                              "next": "https://evil.example/phish"})
    assert response["Location"] == "/deployments/"


@pytest.mark.django_db
def test_delete_model_needs_its_deployments_gone(client, alice, acme, acme_objects):
    client.force_login(alice)
    model = acme_objects["model"]
    refused = client.post(f"/models/{model.pk}/delete/", follow=True)
    assert flashes(refused) == ["This model has active deployments; undeploy them first."]
    Deployment.unscoped.filter(pk=acme_objects["deployment"].pk).update(state=DeploymentState.UNDEPLOYED)
    Deployment.unscoped.filter(pk=acme_objects["deployment"].pk).delete()
    deleted = client.post(f"/models/{model.pk}/delete/", follow=True)
    assert flashes(deleted) == ["Deleted model digits and all its versions."]
    assert not MLModel.objects.for_tenant(acme).exists()


@pytest.mark.django_db
def test_key_list_and_the_secret_is_shown_once(client, alice, acme, acme_objects):
    client.force_login(alice)
    response = client.post("/keys/", {"label": "laptop", "scopes": ["infer", "manage"]}, follow=True)
    page = response.content.decode()
    api_key = ApiKey.objects.for_tenant(acme).get(label="laptop")
    assert "Copy it now: it will not be shown again." in page
    secret = page.split("data-secret>")[1].split("<")[0]
    assert api_key_authenticate(raw_key=secret) == api_key
    rows = table_rows(page, "keys")
    assert rows[1][:6] == ["laptop", f"ik_{api_key.prefix}_…", "infer manage", "now by alice", "never", "Active"]
    assert rows[2][0] == "acme key"
    again = client.get("/keys/").content.decode()
    assert secret not in again and "data-secret" not in again


@pytest.mark.django_db
@pytest.mark.parametrize("data, message", [
    ({"label": "", "scopes": ["infer"]}, "This field is required."),
    ({"label": "x"}, "This field is required."),
    ({"label": "x", "scopes": ["root"]}, "Select a valid choice."),
])
def test_bad_key_form_says_why_and_creates_nothing(client, alice, acme, data, message):
    client.force_login(alice)
    response = client.post("/keys/", data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not ApiKey.objects.for_tenant(acme).exists()


@pytest.mark.django_db
def test_revoke_a_key(client, alice, acme_objects):
    client.force_login(alice)
    key = acme_objects["key"]
    response = client.post(f"/keys/{key.pk}/revoke/", follow=True)
    assert flashes(response) == [f"Revoked acme key ({key.prefix}…): calls with it are refused from now on."]
    assert table_rows(response.content.decode(), "keys")[1][5] == "Revoked"


@pytest.mark.django_db
def test_usage_page_totals_breakdown_recent_and_chart(client, alice, acme_objects):
    client.force_login(alice)
    page = client.get("/usage/").content.decode()
    assert page.split("data-total-requests>")[1].split("<")[0] == "1"
    assert table_rows(page, "usage-by-deployment")[1] == ["digits", "1", "0", "2.5 ms"]
    recent = table_rows(page, "recent-requests")[1]
    assert recent[1:9] == ["digits", "infer", "200", "2.50 ms", "2.00 ms", "10 bytes", "20 bytes",
                           f"ik_{acme_objects['key'].prefix}_…"]
    assert '<div class="usage-chart" data-usage-chart data-source="/api/v1/usage/timeseries?minutes=60">' in page


@pytest.mark.django_db
@pytest.mark.parametrize("bundle, scripts", [
    ([], {"js": False, "css": False}),
    (["platform.js"], {"js": True, "css": False}),
    (["platform.js", "platform.css"], {"js": True, "css": True}),
])
def test_the_chart_bundle_is_included_only_when_built(client, alice, settings, tmp_path, bundle, scripts):
    for name in bundle:
        (tmp_path / name).write_text("/* built */")
    settings.STATICFILES_DIRS = [tmp_path]
    client.force_login(alice)
    page = client.get("/usage/").content.decode()
    assert ('src="/static/platform.js"' in page) is scripts["js"]
    assert ('href="/static/platform.css"' in page) is scripts["css"]
    assert ("The chart appears once the frontend bundle is built" in page) is not scripts["js"]


@pytest.mark.django_db
@pytest.mark.parametrize("path, empty", [
    ("/", "Nothing deployed yet"),
    ("/", "No calls yet"),
    ("/models/", "No models yet"),
    ("/deployments/", "No deployments"),
    ("/keys/", "No API keys yet"),
    ("/usage/", "No requests yet"),
])
def test_empty_pages_say_what_to_do_next(client, alice, path, empty):
    client.force_login(alice)
    assert empty in client.get(path).content.decode()


@pytest.mark.django_db
def test_a_user_without_a_tenant_is_told_so(client, globex):
    from tenants.services import user_create

    client.force_login(user_create(username="dave", password="dave-password-1"))
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 403
        assert "Your account is not a member of any tenant" in response.content.decode()


# --- Tenancy and roles --------------------------------------------------------------------------

ACME_OBJECT_REQUESTS = [
    ("get", "/models/{model}/", {}),
    ("post", "/models/{model}/delete/", {}),
    ("post", "/deployments/", {"model_version": "{version}"}),
    ("post", "/deployments/{deployment}/undeploy/", {}),
    ("post", "/deployments/{deployment}/retry/", {}),
    ("post", "/keys/{key}/revoke/", {}),
]


def _fill(template: str, objects: dict) -> str:
    return template.format(model=objects["model"].pk, version=objects["version"].pk,
                           deployment=objects["deployment"].pk, key=objects["key"].pk)


@pytest.mark.django_db
@pytest.mark.parametrize("method, path, data", ACME_OBJECT_REQUESTS)
def test_another_tenant_gets_404_on_every_object_page_and_action(client, bob, acme, acme_objects, method, path,
                                                                 data):
    client.force_login(bob)
    response = getattr(client, method)(_fill(path, acme_objects), {k: _fill(v, acme_objects) for k, v in data.items()})
    assert response.status_code == 404
    assert "It may have been deleted, or it belongs to another tenant." in response.content.decode()
    assert MLModel.objects.for_tenant(acme).count() == 1
    assert Deployment.objects.for_tenant(acme).get().state == DeploymentState.READY
    assert ApiKey.objects.for_tenant(acme).get().is_active


@pytest.mark.django_db
@pytest.mark.parametrize("path", PAGES)
def test_another_tenants_lists_show_nothing_of_acme(client, bob, acme_objects, path):
    client.force_login(bob)
    page = client.get(path).content.decode()
    assert "Acme Corp" not in page and "acme key" not in page and acme_objects["key"].prefix not in page
    assert "<code>digits</code>" not in page and ">digits<" not in page


WRITES = [
    ("/models/", {"name": "x"}),
    ("/deployments/", {"model_version": "{version}"}),
    ("/keys/", {"label": "x", "scopes": ["infer"]}),
    ("/models/{model}/delete/", {}),
    ("/deployments/{deployment}/undeploy/", {}),
    ("/deployments/{deployment}/retry/", {}),
    ("/keys/{key}/revoke/", {}),
    ("/billing/spend-limit/", {"amount": "5", "enforcement": "hard"}),
]


@pytest.mark.django_db
@pytest.mark.parametrize("path, data", WRITES)
def test_members_are_read_only(client, carol, acme, acme_objects, path, data):
    client.force_login(carol)
    data = {k: _fill(v, acme_objects) if isinstance(v, str) else v for k, v in data.items()}
    response = client.post(_fill(path, acme_objects), data)
    assert response.status_code == 403
    assert "Your role in this tenant is read-only" in response.content.decode()
    assert Deployment.objects.for_tenant(acme).count() == 1
    assert ApiKey.objects.for_tenant(acme).filter(revoked_at=None).count() == 1
    assert MLModel.objects.for_tenant(acme).count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("path", PAGES + ["/models/{model}/"])
def test_members_see_everything_but_no_write_controls(client, carol, acme_objects, path):
    client.force_login(carol)
    response = client.get(_fill(path, acme_objects))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Acme Corp" in page and "read-only" in page
    assert 'method="post" action="/logout/"' in page
    assert page.count('method="post"') == 1


@pytest.mark.django_db
def test_tenant_switcher_lists_only_own_tenants_and_switches(client, alice, acme, globex, acme_objects):
    client.force_login(alice)
    assert "Switch tenant" not in client.get("/").content.decode()
    assert client.post("/tenant/switch/", {"tenant": globex.pk}).status_code == 404
    assert client.post("/tenant/switch/", {"tenant": "x"}).status_code == 404
    membership_add(tenant=globex, user=alice, role=Role.MEMBER)
    page = client.get("/").content.decode()
    assert "Switch tenant" in page and f'<option value="{globex.pk}">Globex</option>' in page
    response = client.post("/tenant/switch/", {"tenant": globex.pk}, follow=True)
    page = response.content.decode()
    assert "<h1>Globex</h1>" in page and "read-only" in page
    assert client.get(f"/models/{acme_objects['model'].pk}/").status_code == 404
    assert client.post("/keys/", {"label": "x", "scopes": ["infer"]}).status_code == 403

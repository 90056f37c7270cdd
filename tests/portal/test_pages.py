"""Portal pages as a signed-in user sees them, and tenancy on every page."""
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from graph_editor.models import MLModel
from tenants.models import ApiKey
from workers.models import Deployment, DeploymentState

PAGES = ["/", "/models/", "/deployments/", "/keys/", "/usage/"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", PAGES)
def test_anonymous_users_are_sent_to_login(client, path):
    response = client.get(path)
    assert response.status_code == 302 and response["Location"].startswith("/login/")


@pytest.mark.django_db
def test_login_page_signs_in(client, alice):
    assert b"Sign in" in client.get("/login/").content
    response = client.post("/login/", {"username": "alice", "password": "alice-password-1"})
    assert response.status_code == 302
    assert b"Acme Corp" in client.get("/").content
    client.logout()
    bad = client.post("/login/", {"username": "alice", "password": "wrong"})
    assert b"didn&#x27;t match" in bad.content or b"didn't match" in bad.content


@pytest.mark.django_db
@pytest.mark.parametrize("path", PAGES)
def test_every_page_renders_for_the_owner(client, alice, acme_objects, path):
    client.force_login(alice)
    response = client.get(path)
    assert response.status_code == 200
    assert b"Acme Corp" in response.content


@pytest.mark.django_db
def test_upload_through_the_form_shows_the_signature(client, alice, digits_onnx):
    client.force_login(alice)
    response = client.post("/models/", {"name": "digits", "description": "8x8 digits",
                                        "file": SimpleUploadedFile("digits.onnx", digits_onnx)}, follow=True)
    page = response.content.decode()
    assert "Uploaded digits version 1." in page
    assert "<code>X</code></td><td>FP32</td><td><code>[N, 64]</code>" in page
    assert "<code>probabilities</code></td><td>FP32</td><td><code>[N, 10]</code>" in page
    assert "batch dimension: yes" in page


@pytest.mark.django_db
def test_bad_upload_shows_why_and_stores_nothing(client, alice, acme):
    client.force_login(alice)
    response = client.post("/models/", {"name": "junk", "file": SimpleUploadedFile("junk.onnx", b"nonsense")})
    assert response.status_code == 200
    assert "not a valid ONNX model" in response.content.decode()
    assert not MLModel.objects.for_tenant(acme).exists()


@pytest.mark.django_db
def test_key_secret_is_shown_once(client, alice, acme):
    client.force_login(alice)
    page = client.post("/keys/", {"label": "laptop", "scopes": ["infer"]}, follow=True).content.decode()
    api_key = ApiKey.objects.for_tenant(acme).get(label="laptop")
    assert "it will not be shown again" in page
    assert f"ik_{api_key.prefix}_" in page
    secret = page.split('data-secret>')[1].split("<")[0]
    assert len(secret) > 40
    assert secret not in client.get("/keys/").content.decode()


@pytest.mark.django_db
def test_deploy_and_undeploy_from_the_pages(client, alice, acme, acme_objects, django_capture_on_commit_callbacks):
    client.force_login(alice)
    response = client.post("/deployments/", {"model_version": acme_objects["version"].pk, "name": "digits-2"},
                           follow=True)
    assert "Deploying digits-2" in response.content.decode()
    deployment = Deployment.objects.for_tenant(acme).get(name="digits-2")
    clash = client.post("/deployments/", {"model_version": acme_objects["version"].pk, "name": "digits-2"},
                        follow=True)
    assert "already exists" in clash.content.decode()
    client.post(f"/deployments/{deployment.pk}/undeploy/")
    assert Deployment.objects.for_tenant(acme).get(pk=deployment.pk).state == DeploymentState.UNLOADING


@pytest.mark.django_db
@pytest.mark.parametrize("method, path", [
    ("get", "/models/{model}/"),
    ("post", "/models/{model}/delete/"),
    ("post", "/deployments/{deployment}/undeploy/"),
    ("post", "/keys/{key}/revoke/"),
])
def test_another_tenant_gets_404_on_every_object_page(client, bob, acme_objects, method, path):
    client.force_login(bob)
    url = path.format(model=acme_objects["model"].pk, deployment=acme_objects["deployment"].pk,
                      key=acme_objects["key"].pk)
    assert getattr(client, method)(url).status_code == 404


@pytest.mark.django_db
def test_another_tenant_cannot_deploy_my_version_or_see_my_objects(client, bob, acme_objects):
    client.force_login(bob)
    assert client.post("/deployments/", {"model_version": acme_objects["version"].pk}).status_code == 404
    for path in PAGES:
        page = client.get(path).content.decode()
        assert "acme key" not in page and "Acme Corp" not in page
    assert ">digits<" not in client.get("/models/").content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("path, data", [
    ("/models/", {"name": "x"}),
    ("/deployments/", {"model_version": 1}),
    ("/keys/", {"label": "x", "scopes": ["infer"]}),
    ("/models/{model}/delete/", {}),
    ("/keys/{key}/revoke/", {}),
])
def test_members_are_read_only(client, carol, acme_objects, path, data):
    client.force_login(carol)
    url = path.format(model=acme_objects["model"].pk, key=acme_objects["key"].pk)
    assert client.post(url, data).status_code == 403
    assert client.get("/models/").status_code == 200


@pytest.mark.django_db
def test_tenant_switcher_only_switches_to_own_tenants(client, alice, globex, acme):
    from tenants.services import membership_add

    client.force_login(alice)
    assert client.post("/tenant/switch/", {"tenant": globex.pk}).status_code == 404
    membership_add(tenant=globex, user=alice, role="member")
    client.post("/tenant/switch/", {"tenant": globex.pk})
    assert "Globex" in client.get("/").content.decode().split("<h1>")[1][:40]

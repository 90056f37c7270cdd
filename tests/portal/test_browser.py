"""A new user's first session, in real Chromium against the portal served over ASGI: sign in,
upload (a broken file, then the digits model), deploy and watch it become ready live, create
a key, call the model through the gateway, and find the call on the usage page."""
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton_http
from django.db import connection

from graph_editor.samples import digits_dataset
from tests.portal.browser import ARTIFACTS, chromium_page, screenshots_reset
from workers.models import Deployment, DeploymentState

pytestmark = [pytest.mark.integration, pytest.mark.browser]



@pytest.fixture(autouse=True)
def storage():
    """Models uploaded by a test here must be where the stack's processes read them (the
    test settings' own storage), not in the scratch directory other portal tests use."""


@pytest.fixture(scope="module")
def artifacts() -> Path:
    """This module's screenshots, replaced on each run (other browser tests keep theirs)."""
    return screenshots_reset("[0-9][0-9]-*.png")


@pytest.fixture
def browser_page(artifacts):
    with chromium_page(width=1360, height=900, timeout_ms=30_000, page_errors_fail=False) as page:
        yield page


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page, stack, username: str, password: str) -> None:
    page.goto(f"{stack.portal_url}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button:has-text('Sign in')")
    page.wait_for_selector("h2:has-text('Quick start')")


def test_first_session_from_upload_to_a_metered_call(stack, alice, digits_onnx, tmp_path, browser_page):
    page = browser_page
    model_file = tmp_path / "digits.onnx"
    model_file.write_bytes(digits_onnx)
    broken_file = tmp_path / "notes.onnx"
    broken_file.write_bytes(b"these are not model weights")
    pushed = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda frame: pushed.append(json.loads(frame))))

    # Sign in.
    page.goto(f"{stack.portal_url}/")
    page.wait_for_url("**/login/?next=/")
    shot(page, "01-login")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "alice-password-1")
    page.click("button:has-text('Sign in')")
    page.wait_for_selector("h2:has-text('Quick start')")
    assert page.inner_text("h1") == "Acme Corp"
    assert f"curl {stack.gateway_url}/v2/models/my-model/infer" in page.inner_text("#snippet-curl")
    shot(page, "02-dashboard")

    # A broken upload says why and keeps nothing.
    page.click("nav >> text=Models")
    assert "No models yet" in page.inner_text("main")
    page.fill("input[name=name]", "digits")
    page.set_input_files("input[name=file]", str(broken_file))
    page.click("#upload-form button[type=submit]")
    error = page.inner_text("[data-field-error=file]")
    assert error.startswith("The file is not a valid ONNX model")
    assert "No models yet" in page.inner_text("main")
    shot(page, "03-upload-rejected")

    # The real model: its signature is read from the file.
    page.fill("input[name=name]", "digits")
    page.fill("textarea[name=description]", "Handwritten digits, 8x8 pixels")
    page.set_input_files("input[name=file]", str(model_file))
    page.click("#upload-form button[type=submit]")
    page.wait_for_selector(".flash.success:has-text('Uploaded digits version 1.')")
    rows = [page.inner_text(f"table.signature tbody tr:nth-child({i})").split("\t") for i in (1, 2, 3)]
    assert [[cell.strip() for cell in row] for row in rows] == [
        ["input", "X", "FP32", "[N, 64]"], ["output", "label", "INT64", "[N]"],
        ["output", "probabilities", "FP32", "[N, 10]"]]
    shot(page, "04-model-signature")

    # Deploy, and watch the state turn ready on the deployments page without a reload.
    page.click("#versions button:has-text('Deploy')")
    page.wait_for_selector(".flash.success:has-text('Deploying digits.')")
    page.evaluate("window.notReloaded = true")
    row = "#deployments tr[data-deployment]"
    first_state = page.inner_text(f"{row} [data-state-label]")
    shot(page, "05-deployment-pending")
    page.wait_for_selector(f"{row} .badge.state-ready", timeout=90_000)
    assert page.evaluate("window.notReloaded") is True
    assert page.inner_text(f"{row} [data-server]") == stack.triton_name
    assert page.inner_text(f"{row} [data-load]").endswith(" s")
    assert page.inner_text(f"{row} [data-endpoint]") == f"POST {stack.gateway_url}/v2/models/digits/infer"
    assert page.inner_text("[data-live-label]") == "Live"
    if first_state != "Ready":
        assert any(event["name"] == "digits" and event["state"] == "ready" for event in pushed), pushed
    shot(page, "06-deployment-ready")

    # A key with the infer scope; its secret is on the page once.
    page.click("nav >> text=API keys")
    page.fill("input[name=label]", "laptop")
    assert page.is_checked("input[name=scopes][value=infer]")
    page.click("button:has-text('Create key')")
    secret = page.inner_text("[data-secret]").strip()
    assert secret.startswith("ik_")
    shot(page, "07-key-shown-once")

    # Call the deployment through the gateway, as a client would.
    client = triton_http.InferenceServerClient(url=stack.gateway_url.removeprefix("http://"))
    features = digits_dataset()[0][:1]
    infer_input = triton_http.InferInput("X", [1, 64], "FP32")
    infer_input.set_data_from_numpy(features)
    result = client.infer("digits", [infer_input], headers={"Authorization": f"Bearer {secret}"})
    assert result.as_numpy("label").reshape(-1)[0] == int(np.argmax(result.as_numpy("probabilities")[0]))

    page.reload()
    assert "data-secret" not in page.content()

    # The call is metered and listed on the usage page.
    page.click("nav >> text=Usage")
    deadline = time.monotonic() + 20
    while not page.query_selector("#recent-requests"):
        assert time.monotonic() < deadline, "the call never appeared on the usage page"
        time.sleep(0.5)
        page.reload()
    cells = [c.strip() for c in page.inner_text("#recent-requests tbody tr:first-child").split("\t")]
    assert cells[1:4] == ["digits", "infer", "200"]
    assert cells[8] == f"{secret[:secret.index('_', 3)]}_…"
    assert page.inner_text("[data-total-requests]").strip() == "1"
    page.wait_for_timeout(500)  # let the chart bundle draw, for the screenshot
    shot(page, "08-usage")


@pytest.fixture
def carol_admin_of_globex(carol, globex):
    """Set up before the browser starts: Playwright's event loop gives the test body another
    database connection, one that nothing would close."""
    from tenants.models import Role
    from tenants.services import membership_add

    membership_add(tenant=globex, user=carol, role=Role.ADMIN)
    return carol


def test_a_member_of_two_tenants_switches_and_reads_without_write_controls(stack, carol_admin_of_globex,
                                                                          acme_objects, browser_page):
    page = browser_page
    sign_in(page, stack, "carol", "carol-password-1")
    assert page.inner_text("h1") == "Acme Corp"
    assert "Member · read-only" in page.inner_text(".tenant-card")

    page.click("nav >> text=Deployments")
    assert page.inner_text("#deployments [data-state-label]") == "Ready"
    assert page.query_selector("button:has-text('Undeploy')") is None
    assert page.query_selector("#deploy-form") is None
    shot(page, "member-01-read-only-deployments")

    page.click("nav >> text=API keys")
    assert "Your role is read-only" in page.inner_text("main")
    shot(page, "member-02-read-only-keys")

    page.select_option("select[name=tenant]", label="Globex")
    page.wait_for_selector("h1:has-text('Globex')")
    assert "Admin" in page.inner_text(".tenant-card")
    assert page.query_selector("a.button:has-text('Upload a model')") is not None
    shot(page, "member-03-switched-tenant")


@pytest.fixture
def loading_deployment(acme_objects):
    deployment = acme_objects["deployment"]
    Deployment.unscoped.filter(pk=deployment.pk).update(state=DeploymentState.LOADING)
    return deployment


def test_without_a_websocket_the_page_polls_the_rest_api(stack, alice, loading_deployment, browser_page):
    page = browser_page
    # Every websocket the page opens is closed at once, as behind a proxy that refuses them.
    page.route_web_socket("**/ws/deployments/**", lambda socket: socket.close())
    sign_in(page, stack, "alice", "alice-password-1")
    page.click("nav >> text=Deployments")
    row = "#deployments tr[data-deployment]"
    assert page.inner_text(f"{row} [data-state-label]") == "Loading"
    page.wait_for_selector("[data-live-label]:has-text('Refreshing every 2 s')")

    Deployment.unscoped.filter(pk=loading_deployment.pk).update(state=DeploymentState.READY, load_seconds=1.5)
    page.wait_for_selector(f"{row} .badge.state-ready", timeout=10_000)
    assert page.inner_text(f"{row} [data-load]") == "1.50 s"
    shot(page, "polling-01-ready-without-websocket")
    # This test body's own database connection (Playwright's event loop gave it a fresh one).
    connection.close()


@pytest.fixture
def ready_deployment(stack, acme, digits_onnx):
    """A ready deployment of acme's and an inference key, made before the browser starts
    (the ORM is not used once Playwright's event loop runs in this thread)."""
    from graph_editor.services import model_version_upload
    from tenants.services import api_key_create
    from tests.workers.test_services import wait_for_state
    from workers.services import deployment_create

    version = model_version_upload(tenant=acme, model_name="digits", chunks=[digits_onnx])
    deployment = deployment_create(tenant=acme, model_version_id=version.pk)
    loaded = wait_for_state(deployment.pk, {DeploymentState.READY, DeploymentState.FAILED})
    assert loaded.state == "ready", loaded.error
    _, secret = api_key_create(tenant=acme, label="client", scopes=["infer"])
    return loaded, secret


def test_unload_now_then_a_call_wakes_the_deployment_live(stack, alice, ready_deployment, browser_page):
    """An owner scales a deployment to zero from the page; a client's call wakes it; the
    page follows both without a reload and counts the cold start."""
    deployment, secret = ready_deployment
    page = browser_page
    page.goto(f"{stack.portal_url}/login/?next=/deployments/")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "alice-password-1")
    page.click("button:has-text('Sign in')")
    row = f"#deployments tr[data-deployment='{deployment.pk}']"
    page.wait_for_selector(f"{row} .badge.state-ready")
    page.click(f"{row} button:has-text('Unload now')")
    page.wait_for_selector(".flash.success")
    page.evaluate("window.notReloaded = true")
    page.wait_for_selector(f"{row} .badge.state-cold", timeout=30_000)
    assert page.inner_text(f"{row} [data-state-label]") == "Scaled to zero"
    assert not page.is_visible(f"{row} button:has-text('Unload now')")
    shot(page, "10-scaled-to-zero")

    client = triton_http.InferenceServerClient(url=stack.gateway_url.removeprefix("http://"))
    infer_input = triton_http.InferInput("X", [1, 64], "FP32")
    infer_input.set_data_from_numpy(digits_dataset()[0][:1])
    result = client.infer("digits", [infer_input], headers={"Authorization": f"Bearer {secret}"})
    assert result.as_numpy("label").reshape(-1)[0] == int(np.argmax(result.as_numpy("probabilities")[0]))
    page.wait_for_selector(f"{row} .badge.state-ready", timeout=30_000)
    assert page.evaluate("window.notReloaded") is True
    # Once metered, the call is counted as the deployment's one cold start.
    deadline = time.monotonic() + 20
    while not page.inner_text(f"{row} [data-coldstarts]").startswith("1 of 1"):
        assert time.monotonic() < deadline, page.inner_text(f"{row} [data-coldstarts]")
        time.sleep(0.5)
        page.reload()
    shot(page, "11-woken-by-a-call")

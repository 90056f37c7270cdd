"""A new user's first session, in real Chromium: sign in, upload, deploy, create a key,
call the model through the gateway, and find the call on the usage page."""
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton_http

from graph_editor.samples import digits_dataset

pytestmark = [pytest.mark.integration, pytest.mark.browser]

# Playwright's sync API keeps an event loop in this thread; Django's ORM refuses to run
# next to one unless told that this test process is single-threaded on purpose.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"


@pytest.fixture
def browser_page():
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed: run `make test`, which installs it")
    from playwright.sync_api import sync_playwright

    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        page.set_default_timeout(30_000)
        yield page
        browser.close()


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_first_session_from_upload_to_a_metered_call(stack, alice, digits_onnx, tmp_path, browser_page):
    page = browser_page
    model_file = tmp_path / "digits.onnx"
    model_file.write_bytes(digits_onnx)

    page.goto(f"{stack.portal_url}/login/")
    shot(page, "01-login")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "alice-password-1")
    page.click("button[type=submit]")
    page.wait_for_selector("text=Quick start")
    shot(page, "02-dashboard")

    page.click("nav >> text=Models")
    page.fill("input[name=name]", "digits")
    page.fill("textarea[name=description]", "Handwritten digits")
    page.set_input_files("input[name=file]", str(model_file))
    page.click("form button[type=submit]:has-text('Upload')")
    page.wait_for_selector("text=Uploaded digits version 1.")
    signature = page.inner_text("table.signature")
    assert "X" in signature and "FP32" in signature and "[N, 64]" in signature
    assert "probabilities" in signature and "[N, 10]" in signature
    shot(page, "03-model-signature")

    page.click("button:has-text('Deploy')")
    page.wait_for_selector("text=Deploying digits")
    # The state turns ready on this page without a reload (pushed over the websocket).
    page.wait_for_selector("tr[data-deployment] .badge.state-ready", timeout=60_000)
    assert page.inner_text("tr[data-deployment] [data-server]") == stack.triton_name
    shot(page, "04-deployment-ready")

    page.click("nav >> text=API keys")
    page.fill("input[name=label]", "laptop")
    page.click("button:has-text('Create key')")
    secret = page.inner_text("[data-secret]").strip()
    assert secret.startswith("ik_")
    shot(page, "05-key-shown-once")

    client = triton_http.InferenceServerClient(url=stack.gateway_url.removeprefix("http://"))
    features = digits_dataset()[0][:1]
    infer_input = triton_http.InferInput("X", [1, 64], "FP32")
    infer_input.set_data_from_numpy(features)
    result = client.infer("digits", [infer_input], headers={"Authorization": f"Bearer {secret}"})
    assert result.as_numpy("label").reshape(-1)[0] == int(np.argmax(result.as_numpy("probabilities")[0]))

    page.click("nav >> text=Usage")
    deadline = time.monotonic() + 20
    while "digits" not in page.inner_text("main"):
        assert time.monotonic() < deadline, "the call never appeared on the usage page"
        time.sleep(0.5)
        page.reload()
    row = page.inner_text("#recent-requests tbody tr:first-child")
    assert "digits" in row and "200" in row and "infer" in row
    assert page.inner_text("[data-total-requests]").strip() == "1"
    shot(page, "06-usage")

"""The graph editor's deploy, live status and "Try it" panel in real Chromium, against the
portal served over ASGI on the real stack: an owner deploys the digits graph from the editor,
watches it turn ready, sends the default input through the gateway from the browser (CORS)
with an API key and sees the model's answer and each node's latency; a name already taken is
refused with the server's message. A member sees the status and can try it, but not deploy."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
from django.db import connection
from playwright.sync_api import expect

from tenants.services import api_key_create
from tests.portal.browser import ARTIFACTS, chromium_page, screenshots_reset
from tests.workers.test_graph_deployments import deploy_graph, digits_graph, fused_answers, texts

pytestmark = [pytest.mark.integration, pytest.mark.browser]

# What the panel generates for the graph's UINT8 [batch, 8, 8] input (lib/tryit.js sampleData).
DEFAULT_IMAGE = (np.arange(64) % 17).astype(np.uint8).reshape(1, 8, 8)
GRAPH_NODES = ("prep", "norm", "flat", "clf", "top", "names")


@pytest.fixture(autouse=True)
def storage():
    """Models uploaded here must be where the stack's processes read them (the test
    settings' own storage), not in the scratch directory other portal tests use."""


@pytest.fixture(scope="module")
def artifacts() -> Path:
    return screenshots_reset("graph-deploy-*.png")


@pytest.fixture
def browser_page(artifacts):
    with chromium_page(width=1600, height=1000, timeout_ms=30_000) as page:
        yield page


@pytest.fixture
def digits_graph_and_key(stack, acme, digits_onnx):
    """The digits graph saved as version 1, an inference key, and what the graph answers for
    the panel's default input; made before the browser starts."""
    version = digits_graph(acme, digits_onnx)
    _, secret = api_key_create(tenant=acme, label="try it", scopes=["infer"])
    return version, secret, fused_answers(acme, version, DEFAULT_IMAGE)


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"graph-deploy-{name}.png"))


def sign_in(page, stack, username: str, password: str) -> None:
    page.goto(f"{stack.portal_url}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button:has-text('Sign in')")
    page.wait_for_selector("nav")


def open_editor(page, stack, graph_id: int) -> None:
    page.goto(f"{stack.portal_url}/graphs/{graph_id}/")
    page.wait_for_selector('[data-editor-ready="true"]')
    page.wait_for_selector('[data-validation-status="valid"]')


def node_status(page, node_id: str):
    return page.locator(f'.gnode[data-node-id="{node_id}"] [data-node-status]')


def zoom_to(page, node_id: str, steps: int = 6) -> None:
    """Zoom the canvas in around a node (the whole graph fits only small), for the screenshots."""
    box = page.locator(f'.react-flow__node[data-id="{node_id}"]').bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for _ in range(steps):
        page.mouse.wheel(0, -120)
        page.wait_for_timeout(60)
    page.wait_for_timeout(300)


def try_it(page, secret: str, want: dict) -> None:
    """Send the default input with `secret`; the panel shows what the graph answers."""
    page.fill("[data-tryit-key]", secret)
    request = json.loads(page.input_value("[data-tryit-request]"))
    assert request["inputs"][0]["data"] == DEFAULT_IMAGE.ravel().tolist()
    assert request["inputs"][0]["shape"] == [1, 8, 8] and request["inputs"][0]["datatype"] == "UINT8"
    page.click("[data-action=try-send]")
    page.wait_for_selector("[data-tryit-result]")
    assert json.loads(page.inner_text("[data-output=name] [data-output-values]")) == texts(want["name"])
    score = json.loads(page.inner_text("[data-output=score] [data-output-values]"))
    np.testing.assert_allclose(score, want["score"].ravel(), rtol=1e-4)
    assert "BYTES [1, 1]" in page.inner_text("[data-output=name]")


def test_deploy_from_the_editor_then_try_it_shows_the_answer(stack, alice, digits_graph_and_key, browser_page):
    version, secret, want = digits_graph_and_key
    page = browser_page
    pushed = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda frame: pushed.append(json.loads(frame))))
    sign_in(page, stack, "alice", "alice-password-1")
    open_editor(page, stack, version.graph_id)
    expect(page.locator("[data-deployment-chip]")).to_have_count(0)
    expect(page.locator("[data-node-status]")).to_have_count(0)

    # Deploy version 1 under the graph's name, the platform choosing how it runs.
    page.click("[data-action=deploy]")
    dialog = page.locator("[role=dialog][aria-label='Deploy a version']")
    assert dialog.locator("input[name=name]").input_value() == "digits-graph"
    assert dialog.locator("select[name=version]").input_value() == "1"
    assert dialog.locator("input[name=executor][value=auto]").is_checked()
    shot(page, "01-dialog")
    dialog.locator("button[type=submit]").click()
    page.wait_for_selector("[data-notice=ok]:has-text('Deploying digits-graph (v1).')")
    page.wait_for_selector("[data-tryit]")

    # It turns ready without a reload, pushed over the websocket; every node it runs is loaded.
    page.wait_for_selector("[data-deployment-state=ready]", timeout=90_000)
    page.wait_for_selector("[data-live-mode=live]")
    assert any(event.get("name") == "digits-graph" for event in pushed), pushed
    for node_id in GRAPH_NODES:
        expect(node_status(page, node_id)).to_have_attribute("data-node-status", "loaded", timeout=15_000)
    expect(page.locator('.gnode[data-node-id="in"] [data-node-status]')).to_have_count(0)
    expect(page.locator("[data-deployment-chip=ready]")).to_contain_text("digits-graph")
    expect(page.locator("[data-unit]").first).to_have_attribute("data-unit-state", "loaded")
    zoom_to(page, "clf")
    shot(page, "02-ready")

    # Try it: the default input through the gateway, from this page, with the key.
    try_it(page, secret, want)
    rows = page.locator("[data-latency-unit]")
    assert rows.count() >= 1
    ran = [float(ms) for ms in rows.evaluate_all("rows => rows.map(r => r.querySelector('[data-latency-ms]')"
                                                  ".dataset.latencyMs).filter(Boolean)")]
    assert ran and all(ms > 0 for ms in ran), ran
    assert "From Triton's statistics" in page.inner_text("[data-tryit-result]")
    covered = " ".join(rows.all_inner_texts())
    assert all(node_id in covered for node_id in ("clf", "top")), covered
    # The call shows in the nodes' statistics; a fused unit's nodes say so.
    expect(page.locator('.gnode[data-node-id="clf"] [data-node-stats]')).to_contain_text("1 call")
    fused = page.locator(".gnode[data-fused-unit]")
    if fused.count():
        together = page.locator('.gnode[data-node-id="clf"] [data-fused]').get_attribute("data-fused")
        assert int(together) == fused.count() > 1
    expect(page.locator("[data-notice]")).to_have_count(0, timeout=6_000)
    shot(page, "03-try-it-answer")

    # A wrong key: the gateway's own message, readable across origins.
    page.fill("[data-tryit-key]", "ik_not_a_key")
    page.click("[data-action=try-send]")
    error = page.wait_for_selector("[data-tryit-error]")
    assert error.get_attribute("data-status") == "401" and "key" in error.inner_text().lower()

    # The name is taken now: the server's refusal shows in the dialog.
    page.click("[data-action=deploy]")
    dialog.locator("button[type=submit]").click()
    refusal = page.wait_for_selector("[data-deploy-error]")
    assert "A deployment named 'digits-graph' already exists" in refusal.inner_text()
    shot(page, "04-name-taken")
    page.keyboard.press("Escape")


@pytest.fixture
def deployed_graph(digits_graph_and_key, carol):
    version, secret, want = digits_graph_and_key
    deploy_graph(version.tenant, version)
    return version, secret, want


def test_a_member_sees_live_status_and_tries_it_but_cannot_deploy(stack, deployed_graph, browser_page):
    version, secret, want = deployed_graph
    page = browser_page
    sign_in(page, stack, "carol", "carol-password-1")
    open_editor(page, stack, version.graph_id)
    page.click("[data-deployment-chip=ready]")
    page.wait_for_selector("[data-tryit]")
    expect(page.locator("[data-action=deploy], [data-action=deploy-panel]")).to_have_count(0)
    for node_id in GRAPH_NODES:
        expect(node_status(page, node_id)).to_have_attribute("data-node-status", "loaded", timeout=15_000)

    try_it(page, secret, want)
    expect(page.locator("[data-latency-unit]").first).to_be_visible()
    zoom_to(page, "top")
    shot(page, "05-member-try-it")


def test_a_graph_deployed_as_an_ensemble_shows_each_unit_and_its_latency(stack, alice, digits_graph_and_key,
                                                                           browser_page):
    """Deployed from the dialog with the ensemble executor: the model node is a unit of its
    own, each group of ops one fused unit, and Try it gives each unit's time for the call."""
    version, secret, want = digits_graph_and_key
    page = browser_page
    sign_in(page, stack, "alice", "alice-password-1")
    open_editor(page, stack, version.graph_id)
    page.click("[data-action=deploy]")
    dialog = page.locator("[role=dialog][aria-label='Deploy a version']")
    dialog.locator("input[name=executor][value=ensemble]").check()
    dialog.locator("button[type=submit]").click()
    page.wait_for_selector("[data-deployment-state=ready]", timeout=90_000)
    for node_id in GRAPH_NODES:
        expect(node_status(page, node_id)).to_have_attribute("data-node-status", "loaded", timeout=15_000)
    # The classifier runs alone; the ops before it run as one model, and so do those after it.
    expect(page.locator('.gnode[data-node-id="clf"] [data-fused]')).to_have_count(0)
    expect(page.locator('.gnode[data-node-id="prep"] [data-fused]')).to_have_attribute("data-fused", "3")

    try_it(page, secret, want)
    rows = page.locator("[data-latency-unit]")
    expect(rows).to_have_count(4)  # prep+norm+flat, clf, top+names and the ensemble itself
    timed = rows.evaluate_all("rows => rows.map(r => r.querySelector('[data-latency-ms]')?.dataset.latencyMs)")
    assert all(ms is not None and float(ms) > 0 for ms in timed), timed
    zoom_to(page, "clf")
    shot(page, "06-ensemble-units")

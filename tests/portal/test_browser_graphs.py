"""The graph editor in real Chromium against the portal (served by the live server thread,
with the test database): build a graph from the palette by dragging and connecting, see an
invalid connection refused while dragging and a validator error on its node, undo and redo,
auto-layout, save a version, diff two versions; and a member's read-only editor."""
import json
import os
import shutil
from pathlib import Path

import pytest
from django.db import connection
from playwright.sync_api import expect

from graph_editor.models import Graph, GraphVersion
from tests.portal.browser import ARTIFACTS, chromium_page, screenshots_reset

pytestmark = pytest.mark.browser



@pytest.fixture(scope="module")
def artifacts() -> Path:
    """This module's screenshots, replaced on each run (other browser tests keep theirs)."""
    return screenshots_reset("graph-[0-9]*.png")


@pytest.fixture
def browser_page(artifacts):
    with chromium_page(width=1500, height=950, timeout_ms=20_000) as page:
        yield page


@pytest.fixture
def digits_version(acme, digits_onnx):
    from graph_editor.services import model_version_upload

    return model_version_upload(tenant=acme, model_name="digits", chunks=[digits_onnx])


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"graph-{name}.png"))


def sign_in(page, live_server, username: str, password: str) -> None:
    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button:has-text('Sign in')")
    page.wait_for_selector("nav")


def node(page, node_id: str):
    return page.locator(f'.react-flow__node[data-id="{node_id}"]')


def edges(page):
    return page.locator(".react-flow__edge")


def handle(page, node_id: str, port: str, side: str):
    return page.locator(f'.react-flow__handle.{side}[data-nodeid="{node_id}"][data-handleid="{port}"]')


def drag_connection(page, source, target, *, release: bool = True) -> None:
    """Drag from one handle to another with the mouse, as a user does."""
    start, end = source.bounding_box(), target.bounding_box()
    page.mouse.move(start["x"] + start["width"] / 2, start["y"] + start["height"] / 2)
    page.mouse.down()
    page.mouse.move(end["x"] + end["width"] / 2, end["y"] + end["height"] / 2, steps=12)
    if release:
        page.mouse.up()


def click_empty_canvas(page) -> None:
    """Clears the selection and takes focus out of the side panel's fields."""
    pane = page.locator(".react-flow__pane")
    pane.click(position={"x": pane.bounding_box()["width"] / 2, "y": 8})


def wait_valid(page) -> None:
    page.wait_for_selector('[data-validation-status="valid"]')


def node_x(page, node_id: str) -> float:
    return node(page, node_id).bounding_box()["x"]


def test_build_check_undo_layout_and_save_a_graph(live_server, acme, alice, digits_version, browser_page):
    page = browser_page
    sign_in(page, live_server, "alice", "alice-password-1")

    # Create the graph; the editor opens with a starter input and output.
    page.click("nav >> text=Graphs")
    assert "No graphs yet" in page.inner_text("main")
    page.fill("input[name=name]", "digits-pipeline")
    page.click("#graph-create-form button[type=submit]")
    page.wait_for_selector('[data-editor-ready="true"]')
    graph = Graph.objects.for_tenant(acme).get(name="digits-pipeline")
    assert page.url.endswith(f"/graphs/{graph.pk}/")
    assert node(page, "in").is_visible() and node(page, "out").is_visible()
    shot(page, "00-new-graph")

    # The input takes flattened 8x8 images, as the digits model does.
    node(page, "in").click()
    shape = page.locator("[data-tensor='0'] input").nth(1)
    shape.fill("-1, 64")
    shape.press("Enter")
    assert "FP32 [batch, 64]" in node(page, "in").inner_text()

    # Drag the model and an op from the palette onto the canvas.
    pane = page.locator(".react-flow__pane").bounding_box()
    page.fill(".gpalette-search", "digits")
    page.drag_and_drop('[data-palette-entry^="model:"]', ".react-flow__pane",
                       target_position={"x": pane["width"] * 0.3, "y": pane["height"] * 0.15})
    page.fill(".gpalette-search", "softmax")
    page.drag_and_drop('[data-palette-entry="op:softmax"]', ".react-flow__pane",
                       target_position={"x": pane["width"] * 0.3, "y": pane["height"] * 0.72})
    page.fill(".gpalette-search", "")
    assert node(page, "digits").is_visible() and node(page, "softmax").is_visible()
    shot(page, "01-dropped-from-palette")

    # Connect the input to the model, and the model's label to a new graph output.
    drag_connection(page, handle(page, "in", "input", "source"), handle(page, "digits", "X", "target"))
    drag_connection(page, handle(page, "digits", "label", "source"), handle(page, "out", "__new_output__", "target"))
    expect(handle(page, "out", "label", "target")).to_have_count(1)

    # An INT64 label cannot feed softmax, which takes floats: refused while dragging, with why.
    drag_connection(page, handle(page, "digits", "label", "source"), handle(page, "softmax", "x", "target"),
                    release=False)
    hint = page.wait_for_selector("[data-connection-refused]")
    assert "softmax.x takes FP16, FP32, FP64, not INT64" in hint.inner_text()
    shot(page, "02-invalid-connection-refused")
    page.mouse.up()
    expect(edges(page)).to_have_count(2)

    # The probabilities can, and the softmax output becomes a second graph output.
    drag_connection(page, handle(page, "digits", "probabilities", "source"), handle(page, "softmax", "x", "target"))
    drag_connection(page, handle(page, "softmax", "y", "source"), handle(page, "out", "__new_output__", "target"))
    expect(edges(page)).to_have_count(4)
    wait_valid(page)
    assert "FP32 [batch, 10]" in node(page, "softmax").inner_text()
    shot(page, "03-connected-and-valid")

    # Undo the last edge, then redo it.
    click_empty_canvas(page)
    page.keyboard.press("Control+z")
    expect(edges(page)).to_have_count(3)
    page.keyboard.press("Control+Shift+z")
    expect(edges(page)).to_have_count(4)

    # A validator error shows on the node it names: a 32-wide input does not fit the model.
    node(page, "in").click()
    shape = page.locator("[data-tensor='0'] input").nth(1)
    shape.fill("-1, 32")
    shape.press("Enter")
    page.wait_for_selector('[data-validation-status="invalid"]')
    page.wait_for_selector(".gnode.has-issues, .react-flow__edge.gedge-error")
    issues = " ".join(page.locator(".gnode.has-issues [data-node-issues]").all_inner_texts()
                      + page.locator(".react-flow__edge.gedge-error").all_text_contents())
    assert "32" in issues and "64" in issues, issues
    shot(page, "04-validator-error-on-node")

    # Saving it anyway is refused by the server, whose issues land on the canvas too.
    page.click("[data-action=save]")
    page.click("[role=dialog] button[type=submit]")
    page.wait_for_selector("[data-notice=error]:has-text('Not saved:')")
    assert "dim 1 does not fit" in page.inner_text("[data-problems]")
    assert not GraphVersion.objects.for_tenant(acme).exists()
    click_empty_canvas(page)
    page.keyboard.press("Control+z")
    wait_valid(page)
    expect(page.locator(".gnode.has-issues")).to_have_count(0)

    # Auto-layout puts the chain left to right.
    page.click("[data-action=layout]")
    page.wait_for_timeout(400)
    assert node_x(page, "in") < node_x(page, "digits") < node_x(page, "softmax") < node_x(page, "out")
    shot(page, "05-auto-layout")

    # The shortcuts overlay.
    page.keyboard.press("?")
    assert "Auto-layout, left to right" in page.inner_text("[data-shortcuts]")
    shot(page, "06-shortcuts-help")
    page.keyboard.press("Escape")

    # Save as version 1, with a message; the versions tab lists it.
    page.click("[data-action=save]")
    page.fill("textarea[name=message]", "digits with probabilities")
    page.click("[role=dialog] button[type=submit]")
    page.wait_for_selector("[data-notice=ok]:has-text('Saved version 1.')")
    version = GraphVersion.objects.for_tenant(acme).get(graph=graph)
    assert version.number == 1 and version.message == "digits with probabilities"
    assert [t["name"] for t in version.outputs] == ["label", "y"]
    assert {n["id"]: n["kind"] for n in version.spec["nodes"]} == {
        "in": "input", "out": "output", "digits": "model", "softmax": "op"}
    assert all("position" in n for n in version.spec["nodes"])
    page.click("[data-tab=versions]")
    assert "digits with probabilities" in page.inner_text("[data-versions]")
    expect(page.locator("[data-dirty]")).to_have_count(0)
    shot(page, "07-saved-version")

    # Copy and paste a node, delete nodes, then load version 1 back.
    node(page, "softmax").click()
    page.keyboard.press("Control+c")
    page.keyboard.press("Control+v")
    expect(node(page, "softmax-2")).to_be_visible()
    page.keyboard.press("Delete")
    expect(node(page, "softmax-2")).to_have_count(0)
    node(page, "digits").click()
    page.keyboard.press("Delete")
    expect(edges(page)).to_have_count(1)
    expect(page.locator("[data-dirty]")).to_have_count(1)
    page.click("[data-version='1'] button")
    expect(edges(page)).to_have_count(4)
    expect(page.locator("[data-dirty]")).to_have_count(0)

    # The spec as JSON, ready to download.
    page.click("[data-action=json]")
    exported = page.input_value("[aria-label='Spec JSON']")
    assert f'"model_version": {digits_version.pk}' in exported and '"from": "softmax.y"' in exported
    shot(page, "08-spec-json")
    page.keyboard.press("Escape")


def test_a_member_sees_the_editor_read_only(live_server, alice, carol, digits_version, browser_page):
    from graph_editor.services_graphs import graph_create

    graph = graph_create(tenant=digits_version.tenant, name="shared", actor=alice)
    spec = {"nodes": [
        {"id": "in", "kind": "input", "tensors": [{"name": "x", "datatype": "FP32", "shape": [-1, 64]}]},
        {"id": "clf", "kind": "model", "model_version": digits_version.pk},
        {"id": "out", "kind": "output"}],
        "edges": [{"from": "in.x", "to": "clf.X"}, {"from": "clf.label", "to": "out.label"}]}
    GraphVersion.unscoped.create(tenant=graph.tenant, graph=graph, number=1, spec=spec, message="by alice",
                                 author=alice)
    page = browser_page
    sign_in(page, live_server, "carol", "carol-password-1")
    page.goto(f"{live_server.url}/graphs/{graph.pk}/")
    page.wait_for_selector('[data-editor-ready="true"]')
    wait_valid(page)
    assert "Read-only" in page.inner_text("[data-read-only]")
    assert page.locator("[data-action=save], [data-action=undo], [data-action=layout]").count() == 0
    assert page.locator(".gpalette-entry:not([disabled])").count() == 0
    # Laid out on load (the spec has no positions), and nothing moves or connects.
    assert node_x(page, "in") < node_x(page, "clf") < node_x(page, "out")
    def offset():  # where clf is relative to in: a drag on the canvas pans both
        clf, start = node(page, "clf").bounding_box(), node(page, "in").bounding_box()
        return round(clf["x"] - start["x"]), round(clf["y"] - start["y"])

    shot(page, "member-read-only-editor")
    before = offset()
    box = node(page, "clf").bounding_box()
    page.mouse.move(box["x"] + 30, box["y"] + 12)
    page.mouse.down()
    page.mouse.move(box["x"] + 230, box["y"] + 212, steps=8)
    page.mouse.up()
    assert offset() == before
    drag_connection(page, handle(page, "clf", "probabilities", "source"), handle(page, "out", "label", "target"))
    expect(edges(page)).to_have_count(2)
    node(page, "clf").click()
    assert page.locator("[data-inspector-node=clf] select").is_disabled()


def save_version(page, message: str, number: int) -> None:
    page.click("[data-action=save]")
    page.fill("textarea[name=message]", message)
    page.click("[role=dialog] button[type=submit]")
    page.wait_for_selector(f"[data-notice=ok]:has-text('Saved version {number}.')")


def test_diff_two_saved_versions_then_go_back_to_editing(live_server, acme, alice, digits_version, browser_page):
    from graph_editor.services_graphs import graph_create

    graph = graph_create(tenant=acme, name="digits-versions", actor=alice)
    first = {"nodes": [
        {"id": "in", "kind": "input", "tensors": [{"name": "x", "datatype": "FP32", "shape": [-1, 64]}],
         "position": {"x": 0, "y": 60}},
        {"id": "scale", "kind": "op", "op": "scale", "params": {"scale": 0.0625, "shift": 0},
         "position": {"x": 280, "y": 60}},
        {"id": "digits", "kind": "model", "model_version": digits_version.pk, "position": {"x": 560, "y": 60}},
        {"id": "best", "kind": "op", "op": "argmax", "position": {"x": 880, "y": 300}},
        {"id": "out", "kind": "output", "position": {"x": 1180, "y": 60}}],
        "edges": [{"from": "in.x", "to": "scale.x"}, {"from": "scale.y", "to": "digits.X"},
                  {"from": "digits.label", "to": "out.label"}, {"from": "digits.probabilities", "to": "best.x"},
                  {"from": "best.y", "to": "out.best"}]}
    page = browser_page
    sign_in(page, live_server, "alice", "alice-password-1")
    page.goto(f"{live_server.url}/graphs/{graph.pk}/")
    page.wait_for_selector('[data-editor-ready="true"]')

    # Version 1, imported as JSON.
    page.click("[data-action=json]")
    page.fill("[aria-label='Spec JSON']", json.dumps(first))
    page.click("[role=dialog] button:has-text('Replace the canvas')")
    wait_valid(page)
    save_version(page, "scaled digits with argmax", 1)

    # Version 2: another scale, argmax gone, a softmax output instead.
    node(page, "scale").click()
    page.fill("[data-param=scale] input", "0.5")
    page.press("[data-param=scale] input", "Enter")
    node(page, "best").click()
    page.keyboard.press("Delete")
    pane = page.locator(".react-flow__pane").bounding_box()
    page.fill(".gpalette-search", "softmax")
    page.drag_and_drop('[data-palette-entry="op:softmax"]', ".react-flow__pane",
                       target_position={"x": pane["width"] * 0.62, "y": pane["height"] * 0.22})
    page.fill(".gpalette-search", "")
    drag_connection(page, handle(page, "digits", "probabilities", "source"), handle(page, "softmax", "x", "target"))
    drag_connection(page, handle(page, "softmax", "y", "source"), handle(page, "out", "__new_output__", "target"))
    expect(edges(page)).to_have_count(5)
    wait_valid(page)
    save_version(page, "softmax scores instead of argmax", 2)
    versions = {v.number: v.spec for v in GraphVersion.objects.for_tenant(acme).filter(graph=graph)}
    assert sorted(versions) == [1, 2]
    assert next(n for n in versions[2]["nodes"] if n["id"] == "scale")["params"]["scale"] == 0.5

    # Compare v1 with v2 (the default pair) on the canvas.
    click_empty_canvas(page)
    before = node(page, "in").bounding_box()
    page.click("[data-tab=versions]")
    page.wait_for_selector("[data-version='2']")
    assert page.input_value("[data-diff-pick=from]") == "1" and page.input_value("[data-diff-pick=to]") == "2"
    page.click("[data-action=diff]")
    banner = page.wait_for_selector("[data-diff-banner]")
    summary = "1 node added, 1 changed, 1 removed; 2 edges added, 2 removed"
    assert summary in banner.inner_text()
    assert summary in page.inner_text("[data-diff-panel] [data-diff-summary]")
    expect(page.locator('.gnode[data-node-id="softmax"][data-diff="added"]')).to_be_visible()
    expect(page.locator('.gnode[data-node-id="scale"][data-diff="changed"]')).to_be_visible()
    expect(page.locator('.gnode[data-node-id="best"][data-diff="removed"]')).to_be_visible()
    expect(page.locator('.gnode[data-diff="same"]')).to_have_count(3)
    assert "params.scale: 0.0625 → 0.5" in node(page, "scale").inner_text()
    assert "params.scale: 0.0625 → 0.5" in page.inner_text("[data-diff-node=scale]")
    expect(page.locator(".react-flow__edge.gdiff-edge-added")).to_have_count(2)
    expect(page.locator(".react-flow__edge.gdiff-edge-removed")).to_have_count(2)
    expect(page.locator("[data-action=undo], [data-action=save]")).to_have_count(0)
    page.wait_for_timeout(300)  # the fit-to-view animation
    shot(page, "09-version-diff")

    # Close the diff: the editor is as it was, viewport and undo history included.
    page.click("[data-action=close-diff]")
    expect(page.locator("[data-diff-banner]")).to_have_count(0)
    expect(page.locator(".gnode[data-diff]")).to_have_count(0)
    expect(node(page, "best")).to_have_count(0)
    expect(edges(page)).to_have_count(5)
    after = node(page, "in").bounding_box()
    assert (round(after["x"]), round(after["y"])) == (round(before["x"]), round(before["y"]))
    expect(page.locator("[data-dirty]")).to_have_count(0)
    click_empty_canvas(page)
    page.keyboard.press("Control+z")
    expect(edges(page)).to_have_count(4)
    expect(page.locator("[data-dirty]")).to_have_count(1)
    page.keyboard.press("Control+Shift+z")
    expect(edges(page)).to_have_count(5)
    wait_valid(page)

    # Escape closes a diff too; the shortcuts that edit do nothing while one is open.
    page.click("[data-action=diff]")
    page.wait_for_selector("[data-diff-banner]")
    page.keyboard.press("Control+z")
    page.keyboard.press("Escape")
    expect(page.locator("[data-diff-banner]")).to_have_count(0)
    expect(edges(page)).to_have_count(5)
    expect(page.locator("[data-dirty]")).to_have_count(0)

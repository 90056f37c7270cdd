"""A page on the portal's origin (the graph editor's "Try it" panel) calls the gateway from
the browser: its preflight is answered without a key, and an answer is readable by an
allowed origin only. The last test runs the stack's gateway, which allows the portal's
origin (PORTAL_URL) by default."""
import asyncio
import json

import pytest

from gateway import cors
from gateway.http_api import process
from tenants.services import api_key_create
from tests.gateway.test_gateway import call, digits_deployment, infer_body  # noqa: F401 (a fixture)

PORTAL = "http://portal.example:8000"
REQUEST_ID = b"test-request"


@pytest.fixture
def portal_allowed(monkeypatch):
    origins = cors.allowed_origins(PORTAL, None)
    monkeypatch.setattr(cors, "ANSWER", cors.answer_headers(origins))
    monkeypatch.setattr(cors, "PREFLIGHT", cors.preflight_headers(origins))


def answer(method: str, path: str, headers: dict, body: bytes = b""):
    pairs = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    return asyncio.run(process(method, path, pairs, body, REQUEST_ID))


@pytest.mark.parametrize(("configured", "portal_url", "origins"), [
    (None, "http://127.0.0.1:8000", {b"http://127.0.0.1:8000"}),
    (None, "http://127.0.0.1:8000/", {b"http://127.0.0.1:8000"}),
    ("https://a.example, https://b.example:8443", "http://127.0.0.1:8000", {b"https://a.example",
                                                                            b"https://b.example:8443"}),
    ("", "http://127.0.0.1:8000", set()),
    (None, None, set()),
])
def test_the_allowed_origins_are_the_setting_else_the_portals(configured, portal_url, origins):
    assert cors.allowed_origins(configured, portal_url) == origins


def test_a_preflight_from_an_allowed_origin_is_answered_without_a_key(portal_allowed):
    result = answer("OPTIONS", "/v2/models/digits/infer", {
        "Origin": PORTAL, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    headers = dict(result.headers)
    assert result.status == 204 and result.body == b"" and result.completion is None
    assert headers[b"access-control-allow-origin"] == PORTAL.encode()
    assert headers[b"access-control-allow-methods"] == b"POST, GET"
    assert {"authorization", "content-type"} <= set(headers[b"access-control-allow-headers"].decode().split(", "))
    assert int(headers[b"access-control-max-age"]) > 0
    assert headers[b"vary"] == b"Origin"


@pytest.mark.parametrize("origin", ["http://evil.example", f"{PORTAL}.evil.example", None])
def test_a_preflight_from_another_origin_is_refused(portal_allowed, origin):
    result = answer("OPTIONS", "/v2/models/digits/infer", {"Origin": origin} if origin else {})
    assert result.status == 403
    assert not any(name.startswith(b"access-control-") for name, _ in result.headers)
    assert "not allowed from this origin" in json.loads(result.body)["error"]


def test_a_preflight_with_cors_off_is_refused(monkeypatch):
    monkeypatch.setattr(cors, "ANSWER", {})
    monkeypatch.setattr(cors, "PREFLIGHT", {})
    assert answer("OPTIONS", "/v2/models/digits/infer", {"Origin": PORTAL}).status == 403


@pytest.mark.parametrize(("origin", "readable"), [(PORTAL, True), ("http://evil.example", False), (None, False)])
def test_an_answer_is_readable_by_an_allowed_origin_only(portal_allowed, origin, readable):
    # Refused before admission, so no Redis is needed: the page must still read why.
    result = answer("POST", "/v2/models/digits/infer", {"Origin": origin} if origin else {}, b"{}")
    headers = dict(result.headers)
    assert result.status == 401 and "Missing API key" in json.loads(result.body)["error"]
    assert headers.get(b"access-control-allow-origin") == (PORTAL.encode() if readable else None)
    assert (b"access-control-expose-headers" in headers) is readable


@pytest.mark.integration
def test_the_stack_gateway_lets_the_portals_pages_call_a_model(stack, acme, digits_deployment):  # noqa: F811
    _, key = api_key_create(tenant=acme, label="browser", scopes=["infer"])
    origin = stack.portal_url

    status, headers, body = call(stack, "/v2/models/digits/infer", method="OPTIONS", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert status == 204 and body == b"", body
    assert headers["Access-Control-Allow-Origin"] == origin
    assert "authorization" in headers["Access-Control-Allow-Headers"]
    status, headers, _ = call(stack, "/v2/models/digits/infer", method="OPTIONS",
                              headers={"Origin": "http://evil.example"})
    assert status == 403 and "Access-Control-Allow-Origin" not in headers

    status, headers, body = call(stack, "/v2/models/digits/infer", key=key, body=infer_body(2),
                                 headers={"Origin": origin, "Content-Type": "application/json"})
    assert status == 200, body
    assert headers["Access-Control-Allow-Origin"] == origin and headers["Vary"] == "Origin"
    assert [o["name"] for o in json.loads(body)["outputs"]] == ["label", "probabilities"]
    status, headers, _ = call(stack, "/v2/models/digits/infer", key=key, body=infer_body(1))
    assert status == 200 and "Access-Control-Allow-Origin" not in headers

"""The gateway as its users meet it: tritonclient and plain HTTP against a real stack."""
import json
import time
import urllib.error
import urllib.request

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from billing.models import UsageEvent
from gateway.directory import redis_client, route_entry_name
from graph_editor.samples import digits_dataset
from graph_editor.services import model_version_upload
from tenants.services import api_key_create, api_key_revoke
from tests.workers.test_services import wait_for_state
from workers.models import DeploymentState
from workers.services import deployment_create

pytestmark = pytest.mark.integration


def call(stack, path, *, key=None, body=None, method=None, headers=None):
    request = urllib.request.Request(stack.gateway_url + path, data=body, method=method or ("POST" if body else "GET"))
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def infer_body(rows: int = 1, name: str = "X") -> bytes:
    return json.dumps({"inputs": [{"name": name, "shape": [rows, 64], "datatype": "FP32",
                                   "data": digits_dataset()[0][:rows].ravel().tolist()}]}).encode()


def wait_usage(tenant, count: int, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = list(UsageEvent.objects.for_tenant(tenant).order_by("occurred_at"))
        if len(rows) >= count:
            return rows
        time.sleep(0.2)
    raise AssertionError(f"expected {count} usage events, have {len(rows)}")


@pytest.fixture
def digits_deployment(stack, acme, digits_onnx):
    version = model_version_upload(tenant=acme, model_name="digits", chunks=[digits_onnx])
    deployment = deployment_create(tenant=acme, model_version_id=version.pk)
    ready = wait_for_state(deployment.pk, {DeploymentState.READY, DeploymentState.FAILED})
    assert ready.state == DeploymentState.READY, ready.error
    return ready


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_through_the_gateway_matches_onnxruntime_and_is_metered(
        stack, acme, digits_deployment, digits_onnx, binary):
    api_key, raw = api_key_create(tenant=acme, label="client", scopes=["infer"])
    client = triton_http.InferenceServerClient(url=stack.gateway_url.removeprefix("http://"))
    auth = {"Authorization": f"Bearer {raw}"}
    features = digits_dataset()[0][:7]
    infer_input = triton_http.InferInput("X", list(features.shape), "FP32")
    infer_input.set_data_from_numpy(features, binary_data=binary)
    outputs = [triton_http.InferRequestedOutput(n, binary_data=binary) for n in ("label", "probabilities")]
    result = client.infer("digits", [infer_input], outputs=outputs, headers=auth)

    expected_label, expected_probabilities = ort.InferenceSession(digits_onnx).run(None, {"X": features})
    np.testing.assert_array_equal(result.as_numpy("label").reshape(-1), expected_label)
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected_probabilities, rtol=1e-5)
    assert result.get_response()["model_name"] == "digits"

    metadata = client.get_model_metadata("digits", headers=auth)
    assert metadata["name"] == "digits"
    assert metadata["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 64]}]
    assert client.is_model_ready("digits", headers=auth)

    events = wait_usage(acme, 3)
    infer_event = next(e for e in events if e.endpoint == "infer")
    assert (infer_event.status, infer_event.api_key_id, infer_event.deployment_id, infer_event.deployment_name) == (
        200, api_key.pk, digits_deployment.pk, "digits")
    assert infer_event.model_version_id == digits_deployment.model_version_id
    assert infer_event.bytes_in > 7 * 64 * 4 * (1 if binary else 0) and infer_event.bytes_out > 0
    assert infer_event.latency_ms >= infer_event.upstream_ms > 0
    assert sorted(e.endpoint for e in events) == ["infer", "metadata", "ready"]


def test_each_response_carries_a_request_id_that_metering_keeps(stack, acme, digits_deployment):
    _, raw = api_key_create(tenant=acme, label="curl", scopes=["infer"])
    status, headers, body = call(stack, "/v2/models/digits/infer", key=raw, body=infer_body(2))
    assert status == 200
    assert json.loads(body)["outputs"][0]["shape"] == [2, 1]
    request_id = headers["x-request-id"]
    [event] = wait_usage(acme, 1)
    assert str(event.request_id) == request_id


def test_bad_input_is_400_with_tritons_reason_and_metered(stack, acme, digits_deployment):
    _, raw = api_key_create(tenant=acme, label="curl", scopes=["infer"])
    status, _, body = call(stack, "/v2/models/digits/infer", key=raw, body=infer_body(1, name="nope"))
    assert status == 400
    error = json.loads(body)
    assert error["code"] == "invalid_input" and "nope" in error["error"]
    assert "t%d--" % acme.pk not in error["error"], "the namespaced Triton name must not leak"
    assert [e.status for e in wait_usage(acme, 1)] == [400]


@pytest.mark.parametrize(
    "body, headers, message",
    [
        (b"", {}, "empty"),
        (b"{}", {"Inference-Header-Content-Length": "abc"}, "not an integer"),
        (b"{}", {"Inference-Header-Content-Length": "99"}, "does not fit"),
        (b"{not json", {}, "not valid JSON"),
        (b"[1, 2]", {}, "'inputs' list"),
    ],
)
def test_malformed_bodies_are_400(stack, acme, digits_deployment, body, headers, message):
    _, raw = api_key_create(tenant=acme, label="curl", scopes=["infer"])
    status, _, payload = call(stack, "/v2/models/digits/infer", key=raw, body=body, method="POST", headers=headers)
    assert status == 400
    assert message in json.loads(payload)["error"]


def test_auth_failures(stack, acme, globex):
    _, infer_raw = api_key_create(tenant=acme, label="infer", scopes=["infer"])
    manage, manage_raw = api_key_create(tenant=acme, label="manage", scopes=["manage"])
    revoked, revoked_raw = api_key_create(tenant=acme, label="old", scopes=["infer"])
    api_key_revoke(tenant=acme, key_id=revoked.pk)
    path = "/v2/models/digits/infer"
    cases = [
        (None, 401, "Missing API key"),
        ("ik_nope_nope", 401, "Unknown API key"),
        (revoked_raw, 401, "revoked"),
        (manage_raw, 403, "'infer' scope"),
    ]
    for key, status, message in cases:
        got, _, body = call(stack, path, key=key, body=infer_body())
        assert (got, message in json.loads(body)["error"]) == (status, True), (key, body)
    status, _, _ = call(stack, path, body=infer_body(), headers={"Authorization": "Basic abc"})
    assert status == 401
    # Rejected before admission: nothing is metered.
    time.sleep(0.5)
    assert UsageEvent.objects.for_tenant(acme).count() == 0


def test_revocation_takes_effect_within_seconds(stack, acme, digits_deployment):
    api_key, raw = api_key_create(tenant=acme, label="soon-revoked", scopes=["infer"])
    assert call(stack, "/v2/models/digits/infer", key=raw, body=infer_body())[0] == 200
    api_key_revoke(tenant=acme, key_id=api_key.pk)
    deadline = time.monotonic() + 5
    while call(stack, "/v2/models/digits/infer", key=raw, body=infer_body())[0] != 401:
        assert time.monotonic() < deadline, "revoked key still accepted after 5 s"
        time.sleep(0.2)


def test_another_tenants_model_is_indistinguishable_from_a_missing_one(stack, acme, globex, digits_deployment):
    _, globex_raw = api_key_create(tenant=globex, label="g", scopes=["infer"])
    for path in ("/v2/models/digits/infer", "/v2/models/digits", "/v2/models/digits/ready", "/v2/models/missing"):
        status, _, body = call(stack, path, key=globex_raw, body=infer_body() if path.endswith("infer") else None)
        assert status == 404
        assert json.loads(body)["code"] == "not_found"


@pytest.mark.parametrize(
    "state, error, status, code, retry_after",
    [
        ("loading", "", 503, "not_ready", "2"),
        ("pending", "", 503, "not_ready", "2"),
        ("failed", "bad model", 503, "deployment_failed", None),
    ],
)
def test_deployments_not_ready_answer_503(stack, acme, state, error, status, code, retry_after):
    _, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    redis_client().hset(route_entry_name(acme.pk, "warming"), mapping={
        "deployment_id": 1, "model_version_id": 1, "triton_model": "x", "state": state,
        "http_url": "", "grpc_url": "", "error": error})
    got, headers, body = call(stack, "/v2/models/warming/infer", key=raw, body=infer_body())
    assert got == status
    assert json.loads(body)["code"] == code
    assert headers.get("retry-after") == retry_after
    if error:
        assert error in json.loads(body)["error"]


def test_unreachable_triton_is_502_fast(stack, acme):
    _, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    from tests.stack import free_port

    redis_client().hset(route_entry_name(acme.pk, "orphan"), mapping={
        "deployment_id": 1, "model_version_id": 1, "triton_model": "x", "state": "ready",
        "http_url": f"http://127.0.0.1:{free_port()}", "grpc_url": "", "error": ""})
    started = time.monotonic()
    status, _, body = call(stack, "/v2/models/orphan/infer", key=raw, body=infer_body())
    assert status == 502 and json.loads(body)["code"] == "upstream_error"
    assert time.monotonic() - started < 5


def test_health_endpoints_need_no_key(stack):
    assert call(stack, "/v2/health/live")[0] == 200
    assert call(stack, "/v2/health/ready")[0] == 200
    assert call(stack, "/nope")[0] == 404


def test_tritonclient_sees_gateway_errors_as_readable_exceptions(stack, acme):
    _, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    client = triton_http.InferenceServerClient(url=stack.gateway_url.removeprefix("http://"))
    with pytest.raises(InferenceServerException, match="No deployment named 'ghost'"):
        client.get_model_metadata("ghost", headers={"Authorization": f"Bearer {raw}"})

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
from gateway.contract.keys import route_entry_name
from gateway.contract.signature import signature_text
from graph_editor.samples import digits_dataset
from graph_editor.services import model_version_upload
from tenants.directory import redis_client
from tenants.services import api_key_create, api_key_revoke
from tests.stack import HOLD_TIMEOUT_S
from tests.workers.test_services import wait_for_state
from workers.models import DeploymentState
from workers.services import deployment_create, deployment_undeploy

pytestmark = pytest.mark.integration
DIGITS_SIGNATURE = signature_text(inputs=[{"name": "X", "datatype": "FP32", "shape": [-1, 64]}],
                                  outputs=[{"name": "label", "datatype": "INT64", "shape": [-1]},
                                           {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}],
                                  has_batch_dim=True, max_batch_size=64)


def call(stack, path, *, key=None, body=None, method=None, headers=None):
    request = urllib.request.Request(stack.gateway_url + path, data=body, method=method or ("POST" if body else "GET"))
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


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


@pytest.mark.parametrize(
    "input_name, values, message",
    [
        # Refused by the gateway before Triton sees them (gateway/signature.py).
        ("nope", 64, "Input 'nope' is not an input of this deployment; its inputs are: X (FP32 [-1, 64])"),
        ("X", 1, "Input 'X' has shape [1, 64], which holds 64 elements, but 1 are given."),
    ],
)
def test_bad_input_is_400_with_the_reason_and_metered(stack, acme, digits_deployment, input_name, values,
                                                           message):
    api_key, raw = api_key_create(tenant=acme, label="curl", scopes=["infer"])
    body = json.dumps({"inputs": [{"name": input_name, "shape": [1, 64], "datatype": "FP32",
                                   "data": [0.5] * values}]}).encode()
    status, _, payload = call(stack, "/v2/models/digits/infer", key=raw, body=body)
    assert status == 400
    error = json.loads(payload)
    assert error["code"] == "invalid_input" and message in error["error"], error
    assert f"t{acme.pk}--" not in error["error"], "the namespaced Triton name must not leak"
    [event] = wait_usage(acme, 1)
    assert (event.status, event.api_key_id, event.deployment_id, event.bytes_in, event.bytes_out) == (
        400, api_key.pk, digits_deployment.pk, len(body), len(payload))


@pytest.mark.parametrize(
    "body, headers, message",
    [
        (b"", {}, "empty"),
        (b"{}", {"Inference-Header-Content-Length": "abc"}, "not an integer"),
        (b"{}", {"Inference-Header-Content-Length": "99"}, "does not fit"),
        (b"{not json", {}, "not valid JSON"),
        (b"[1, 2]", {}, "must be a JSON object"),
    ],
)
def test_malformed_bodies_are_400(stack, acme, digits_deployment, body, headers, message):
    _, raw = api_key_create(tenant=acme, label="curl", scopes=["infer"])
    status, _, payload = call(stack, "/v2/models/digits/infer", key=raw, body=body, method="POST", headers=headers)
    assert status == 400
    assert message in json.loads(payload)["error"]
    [event] = wait_usage(acme, 1)
    assert (event.status, event.bytes_in) == (400, len(body))


def test_versions_in_the_path_reach_tritons_versions(stack, acme, digits_deployment):
    _, raw = api_key_create(tenant=acme, label="curl", scopes=["infer"])
    status, _, body = call(stack, "/v2/models/digits/versions/1", key=raw)
    assert (status, json.loads(body)["name"], json.loads(body)["versions"]) == (200, "digits", ["1"])
    assert call(stack, "/v2/models/digits/versions/1/ready", key=raw)[0] == 200
    status, _, body = call(stack, "/v2/models/digits/versions/1/infer", key=raw, body=infer_body())
    assert (status, json.loads(body)["model_name"], json.loads(body)["model_version"]) == (200, "digits", "1")
    status, _, body = call(stack, "/v2/models/digits/versions/7/infer", key=raw, body=infer_body())
    assert (status, json.loads(body)["error"]) == (404, "Deployment 'digits' has no version 7.")


def test_auth_failures_are_401_or_403_and_not_metered(stack, acme, globex):
    _, infer_raw = api_key_create(tenant=acme, label="infer", scopes=["infer"])
    manage, manage_raw = api_key_create(tenant=acme, label="manage", scopes=["manage"])
    revoked, revoked_raw = api_key_create(tenant=acme, label="old", scopes=["infer"])
    api_key_revoke(tenant=acme, key_id=revoked.pk)
    cases = [
        ({}, 401, "Missing API key"),
        ({"Authorization": "Basic abc"}, 401, "Malformed Authorization header"),
        ({"Authorization": "Bearer "}, 401, "Malformed Authorization header"),
        ({"Authorization": "Bearer ik_nope_nope"}, 401, "Unknown API key"),
        ({"Authorization": f"Bearer {revoked_raw}"}, 401, "revoked"),
        ({"Authorization": f"Bearer {manage_raw}"}, 403, "'infer' scope"),
    ]
    for path in ("/v2/models/digits/infer", "/v2/models/digits"):
        for headers, status, message in cases:
            got, response_headers, body = call(stack, path, headers=headers,
                                                body=infer_body() if path.endswith("infer") else None)
            assert (got, message in json.loads(body)["error"]) == (status, True), (headers, body)
            assert response_headers["Content-Type"] == "application/json" and response_headers["x-request-id"]
    # Rejected before admission: nothing is metered.
    time.sleep(0.5)
    assert UsageEvent.objects.for_tenant(acme).count() == 0


def test_revocation_takes_effect_within_seconds(stack, acme, digits_deployment):
    api_key, raw = api_key_create(tenant=acme, label="soon-revoked", scopes=["infer"])
    assert call(stack, "/v2/models/digits/infer", key=raw, body=infer_body())[0] == 200
    api_key_revoke(tenant=acme, key_id=api_key.pk)
    revoked_at = time.monotonic()
    while call(stack, "/v2/models/digits/infer", key=raw, body=infer_body())[0] != 401:
        assert time.monotonic() - revoked_at < 2.5, "revoked key still accepted after 2.5 s"
        time.sleep(0.1)


def test_another_tenants_model_is_indistinguishable_from_a_missing_one(stack, acme, globex, digits_deployment):
    _, globex_raw = api_key_create(tenant=globex, label="g", scopes=["infer"])
    answers = {}
    for name in ("digits", "missing"):
        for suffix in ("/infer", "", "/ready"):
            status, _, body = call(stack, f"/v2/models/{name}{suffix}", key=globex_raw,
                                   body=infer_body() if suffix == "/infer" else None)
            error = json.loads(body)
            answers.setdefault(suffix, set()).add((status, error["code"], error["error"].replace(name, "?")))
    assert all(answer == {(404, "not_found", "No deployment named '?' in your tenant.")}
               for answer in answers.values()), answers
    events = wait_usage(globex, 6)
    assert {(e.status, e.deployment_id) for e in events} == {(404, None)}
    assert UsageEvent.objects.for_tenant(acme).count() == 0


def write_route(tenant, name, **fields):
    """A directory entry as the control plane writes it, for states hard to reach on purpose."""
    entry = {"deployment_id": 1, "model_version_id": 1, "triton_model": f"t{tenant.pk}--{name}--d1",
             "state": "ready", "http_url": "", "grpc_url": "", "error": "", "sig": DIGITS_SIGNATURE}
    redis_client().hset(route_entry_name(tenant.pk, name), mapping={**entry, **fields})


@pytest.mark.parametrize(
    "state, error, code, retry_after, message",
    [
        ("loading", "", "cold_start_timeout", "2", f"is still loading after {HOLD_TIMEOUT_S} s"),
        ("pending", "", "cold_start_timeout", "2", f"is still loading after {HOLD_TIMEOUT_S} s"),
        ("failed", "bad model", "deployment_failed", None, "failed to load: bad model"),
    ],
)
def test_deployments_not_ready_answer_503_and_are_metered(stack, acme, state, error, code, retry_after, message):
    """A loading deployment holds the call (tests/workers/test_lifecycle.py); one that
    never becomes ready is answered 503 when the hold times out."""
    api_key, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    write_route(acme, "warming", state=state, error=error)
    started = time.monotonic()
    status, headers, body = call(stack, "/v2/models/warming/infer", key=raw, body=infer_body())
    held = time.monotonic() - started
    assert (status, json.loads(body)["code"], headers.get("Retry-After")) == (503, code, retry_after)
    assert (held >= HOLD_TIMEOUT_S) == (state != "failed")
    assert message in json.loads(body)["error"]
    [event] = wait_usage(acme, 1)
    assert (event.status, event.api_key_id, event.deployment_name, event.endpoint) == (503, api_key.pk, "warming",
                                                                                       "infer")


def test_a_deployment_with_no_server_is_503_loading(stack, acme, digits_onnx):
    """With every server disabled a new deployment waits, and callers are told to retry."""
    from workers.models import TritonServer

    TritonServer.objects.update(enabled=False)
    _, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    version = model_version_upload(tenant=acme, model_name="digits", chunks=[digits_onnx])
    deployment = deployment_create(tenant=acme, model_version_id=version.pk, name="waiting")
    try:
        deadline = time.monotonic() + 10
        while (answer := call(stack, "/v2/models/waiting/infer", key=raw, body=infer_body()))[0] == 404:
            assert time.monotonic() < deadline, "the deployment never reached the gateway's directory"
            time.sleep(0.2)
        status, headers, body = answer
        assert (status, json.loads(body)["code"], headers.get("Retry-After")) == (503, "cold_start_timeout", "2")
        assert "retry shortly" in json.loads(body)["error"]
    finally:
        deployment_undeploy(tenant=acme, deployment_id=deployment.pk)


def test_triton_unreachable_is_503_fast_and_metered(stack, acme):
    """A server that refuses connections (it died) is answered at once with 503 and
    Retry-After: the health check is replacing it."""
    from tests.stack import free_port

    _, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    write_route(acme, "orphan", http_url=f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    status, headers, body = call(stack, "/v2/models/orphan/infer", key=raw, body=infer_body())
    assert (status, json.loads(body)["code"], headers["Retry-After"]) == (503, "server_unavailable", "2")
    assert "not answering" in json.loads(body)["error"]
    assert time.monotonic() - started < 1
    [event] = wait_usage(acme, 1)
    assert (event.status, event.upstream_ms) == (503, None)


def test_a_route_to_a_model_triton_lacks_is_503_retry(stack, acme):
    """The directory says ready but the server does not hold the model (it restarted)."""
    _, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    write_route(acme, "stale", http_url=stack.triton_url)
    status, headers, body = call(stack, "/v2/models/stale/infer", key=raw, body=infer_body())
    assert (status, json.loads(body)["code"], headers.get("Retry-After")) == (503, "not_ready", "2")
    assert f"t{acme.pk}--" not in json.loads(body)["error"]


@pytest.mark.parametrize(
    "method, path, status",
    [
        ("GET", "/v2/health/live", 200),
        ("GET", "/v2/health/ready", 200),
        ("GET", "/v2", 200),
        ("GET", "/nope", 404),
        ("GET", "/v2/models/", 404),
        ("GET", "/v2/models/digits/explain", 404),
        ("GET", "/v2/models/digits/infer", 405),
        ("POST", "/v2/models/digits", 405),
    ],
)
def test_endpoints_without_a_key(stack, method, path, status):
    got, headers, body = call(stack, path, method=method, body=b"{}" if method == "POST" else None)
    assert got == status
    assert headers["x-request-id"]
    if status != 200:
        assert set(json.loads(body)) == {"error", "code"}


def test_tritonclient_sees_gateway_errors_as_readable_exceptions(stack, acme):
    _, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    client = triton_http.InferenceServerClient(url=stack.gateway_url.removeprefix("http://"))
    with pytest.raises(InferenceServerException, match="No deployment named 'ghost'"):
        client.get_model_metadata("ghost", headers={"Authorization": f"Bearer {raw}"})
    with pytest.raises(InferenceServerException, match="Unknown API key"):
        client.get_model_metadata("ghost", headers={"Authorization": "Bearer ik_nope"})

"""Requests that do not fit their deployment's signature are refused by the gateway on
the real stack: 400 (gRPC INVALID_ARGUMENT) naming the input, metered as refused, and
Triton never sees them: it stays up and counts no inference, failed or not."""
import json
import urllib.request

import grpc
import numpy as np
import pytest
import tritonclient.http as triton_http
from tritonclient.grpc import service_pb2

from tenants.services import api_key_create
from tests.gateway.test_gateway import call, digits_deployment, infer_body, wait_usage  # noqa: F401
from tests.gateway.test_grpc import (  # noqa: F401
    bearer,
    gateway_channel,
    gateway_stub,
    infer_request,
    rpc,
)

pytestmark = pytest.mark.integration
Code = grpc.StatusCode


def triton_counts(stack, deployment) -> tuple[int, int]:
    """Triton's own count of the model's successful and failed inferences."""
    with urllib.request.urlopen(f"{stack.triton_url}/v2/models/{deployment.triton_name}/stats", timeout=5) as resp:
        stats = json.load(resp)["model_stats"][0]["inference_stats"]
    return stats["success"]["count"], stats["fail"]["count"]


def triton_live(stack) -> bool:
    with urllib.request.urlopen(f"{stack.triton_url}/v2/health/live", timeout=5) as resp:
        return resp.status == 200


def binary(shape, size: int, data: bytes, **extra) -> tuple[bytes, dict]:
    header = json.dumps({"inputs": [{"name": "X", "shape": shape, "datatype": "FP32",
                                     "parameters": {"binary_data_size": size}}], **extra}).encode()
    return header + data, {"Inference-Header-Content-Length": str(len(header)),
                           "Content-Type": "application/octet-stream"}


ROW = np.zeros(64, dtype=np.float32).tobytes()
HTTP_CASES = [
    # The request that made Triton allocate 256 GB and abort, taking every model on it down.
    ("json huge batch", json.dumps({"inputs": [{"name": "X", "shape": [1000000000, 64], "datatype": "FP32",
                                                "data": [0] * 64}]}).encode(), {},
     "The batch size of input 'X' is 1000000000; this deployment takes 1 to 64"),
    ("json wrong dtype", json.dumps({"inputs": [{"name": "X", "shape": [1, 64], "datatype": "INT64",
                                                 "data": [0] * 64}]}).encode(), {},
     "Input 'X' is FP32; the request says 'INT64'."),
    ("json wrong rank", json.dumps({"inputs": [{"name": "X", "shape": [64], "datatype": "FP32",
                                                "data": [0] * 64}]}).encode(), {}, "has rank 1"),
    ("binary size lies", *binary([1000000000, 64], 256, ROW), "The batch size of input 'X' is 1000000000"),
    ("binary short data", *binary([4, 64], 1024, ROW), "The binary tensor data is 256 bytes"),
    ("shared memory", json.dumps({"inputs": [{"name": "X", "shape": [1, 64], "datatype": "FP32",
                                              "parameters": {"shared_memory_region": "r",
                                                             "shared_memory_byte_size": 256}}]}).encode(), {},
     "Triton shared memory is not available"),
    ("unknown output", json.dumps({"inputs": [{"name": "X", "shape": [1, 64], "datatype": "FP32", "data": [0] * 64}],
                                   "outputs": [{"name": "logits"}]}).encode(), {},
     "Output 'logits' is not an output of this deployment; its outputs are: label, probabilities."),
]


@pytest.mark.parametrize("case, body, headers, message", HTTP_CASES, ids=[c[0] for c in HTTP_CASES])
def test_http_requests_that_do_not_fit_are_400_before_triton(stack, acme, digits_deployment, case, body, headers,
                                                              message):
    api_key, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    before = triton_counts(stack, digits_deployment)
    status, response_headers, payload = call(stack, "/v2/models/digits/infer", key=raw, body=body, headers=headers)
    error = json.loads(payload)
    assert (status, error["code"]) == (400, "invalid_input"), error
    assert message in error["error"]
    [event] = wait_usage(acme, 1)
    assert (event.status, event.api_key_id, str(event.request_id)) == (400, api_key.pk,
                                                                      response_headers["x-request-id"])
    assert event.compute_ms == 0
    assert triton_live(stack) and triton_counts(stack, digits_deployment) == before
    # The deployment still answers.
    status, _, payload = call(stack, "/v2/models/digits/infer", key=raw, body=infer_body(2))
    assert status == 200 and json.loads(payload)["outputs"][0]["shape"] == [2, 1]


GRPC_CASES = [
    ("huge batch raw", infer_request(rows=1000000000, data=ROW), "The batch size of input 'X' is 1000000000"),
    ("raw too short", infer_request(rows=2, data=ROW), "raw contents of input 'X' are 256 bytes"),
    ("unknown input", infer_request(input_name="pixels"), "Input 'pixels' is not an input"),
]


@pytest.mark.parametrize("case, request_message, message", GRPC_CASES, ids=[c[0] for c in GRPC_CASES])
def test_grpc_requests_that_do_not_fit_are_invalid_argument_before_triton(stack, acme, digits_deployment,
                                                                          gateway_stub, case, request_message,
                                                                          message):
    _, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    before = triton_counts(stack, digits_deployment)
    answer = rpc(gateway_stub, "ModelInfer", request_message, bearer(raw))
    assert answer.code == Code.INVALID_ARGUMENT and message in answer.details, answer.details
    [event] = wait_usage(acme, 1)
    assert (event.status, event.protocol) == (400, "grpc")
    assert triton_live(stack) and triton_counts(stack, digits_deployment) == before
    answer = rpc(gateway_stub, "ModelInfer", infer_request(rows=3), bearer(raw))
    assert answer.code == Code.OK and list(answer.response.outputs[0].shape) == [3, 1]


def test_typed_grpc_contents_are_counted(stack, acme, digits_deployment, gateway_stub):
    _, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    request = service_pb2.ModelInferRequest(model_name="digits")
    request.inputs.add(name="X", datatype="FP32", shape=[1, 64]).contents.fp32_contents.extend([0.0] * 64)
    assert rpc(gateway_stub, "ModelInfer", request, bearer(raw)).code == Code.OK
    del request.inputs[0].contents.fp32_contents[-1]
    answer = rpc(gateway_stub, "ModelInfer", request, bearer(raw))
    assert answer.code == Code.INVALID_ARGUMENT and "but 63 are given" in answer.details


def test_a_refused_request_to_a_cold_deployment_does_not_wake_it_nor_delay_the_next_call(
        stack, acme, digits_deployment):
    """The refused caller took the wake marker; it gives it back, so the next valid call
    wakes the deployment at once rather than after the marker expires."""
    import time

    from tests.workers.test_services import wait_for_state
    from workers.models import DeploymentState
    from workers.services import deployment_scale_down_run

    _, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    deployment_scale_down_run(deployment_id=digits_deployment.pk, reason="test")
    assert wait_for_state(digits_deployment.pk, {DeploymentState.COLD}).state == DeploymentState.COLD
    status, _, _ = call(stack, "/v2/models/digits/infer", key=raw, body=HTTP_CASES[0][1])
    assert status == 400
    time.sleep(0.5)
    from workers.models import Deployment

    assert Deployment.unscoped.get(pk=digits_deployment.pk).state == DeploymentState.COLD
    started = time.monotonic()
    status, _, _ = call(stack, "/v2/models/digits/infer", key=raw, body=infer_body())
    assert status == 200 and time.monotonic() - started < 5


def test_tritonclient_requests_of_every_batch_size_still_pass(stack, acme, digits_deployment):
    _, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    client = triton_http.InferenceServerClient(url=stack.gateway_url.removeprefix("http://"))
    for rows, binary_data in ((1, True), (64, True), (5, False)):
        x = triton_http.InferInput("X", [rows, 64], "FP32")
        x.set_data_from_numpy(np.ones((rows, 64), dtype=np.float32), binary_data=binary_data)
        result = client.infer("digits", [x], headers={"Authorization": f"Bearer {raw}"})
        assert result.as_numpy("label").shape == (rows, 1)

"""The gateway's KServe v2 gRPC service as its users meet it: tritonclient.grpc and plain
gRPC stubs against a real stack, with the same keys, quotas and metering as HTTP."""
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton_grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from billing.models import UsageEvent
from graph_editor.samples import digits_dataset
from tenants.quotas import quota_set
from tenants.services import api_key_create, api_key_revoke
from tests.gateway.test_gateway import (  # noqa: F401
    call,
    digits_deployment,
    infer_body,
    wait_usage,
    write_route,
)
from tests.stack import HOLD_TIMEOUT_S, free_port

pytestmark = pytest.mark.integration
Code = grpc.StatusCode


@pytest.fixture
def gateway_channel(stack):
    with grpc.insecure_channel(f"127.0.0.1:{stack.gateway_grpc_port}") as channel:
        yield channel


@pytest.fixture
def gateway_stub(gateway_channel):
    return service_pb2_grpc.GRPCInferenceServiceStub(gateway_channel)


def bearer(raw: str) -> tuple:
    return (("authorization", f"Bearer {raw}"),)


def infer_request(name: str = "digits", rows: int = 1, input_name: str = "X", version: str = "",
                  data: bytes | None = None) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name=name, model_version=version)
    request.inputs.add(name=input_name, datatype="FP32", shape=[rows, 64])
    request.raw_input_contents.append(digits_dataset()[0][:rows].tobytes() if data is None else data)
    return request


def model_request(rpc: str, name: str, version: str = ""):
    if rpc == "ModelInfer":
        return infer_request(name, version=version)
    message = service_pb2.ModelMetadataRequest if rpc == "ModelMetadata" else service_pb2.ModelReadyRequest
    return message(name=name, version=version)


class Answer:
    """What a caller sees of one RPC: status, message, response and both kinds of metadata."""

    def __init__(self, code, details, response, initial, trailing):
        self.code, self.details, self.response = code, details, response
        self.initial, self.trailing = dict(initial or ()), dict(trailing or ())


def rpc(stub, method: str, request, metadata=(), timeout: float = 30) -> Answer:
    try:
        response, outcome = getattr(stub, method).with_call(request, metadata=metadata, timeout=timeout)
    except grpc.RpcError as exc:
        return Answer(exc.code(), exc.details(), None, exc.initial_metadata(), exc.trailing_metadata())
    return Answer(Code.OK, "", response, outcome.initial_metadata(), outcome.trailing_metadata())


MODEL_RPCS = ("ModelInfer", "ModelMetadata", "ModelReady")


def test_tritonclient_grpc_through_the_gateway_matches_onnxruntime_and_is_metered(
        stack, acme, digits_deployment, digits_onnx):
    api_key, raw = api_key_create(tenant=acme, label="client", scopes=["infer"])
    client = triton_grpc.InferenceServerClient(url=f"127.0.0.1:{stack.gateway_grpc_port}")
    auth = {"authorization": f"Bearer {raw}"}
    features = digits_dataset()[0][:7]
    infer_input = triton_grpc.InferInput("X", list(features.shape), "FP32")
    infer_input.set_data_from_numpy(features)
    outputs = [triton_grpc.InferRequestedOutput(n) for n in ("label", "probabilities")]
    result = client.infer("digits", [infer_input], outputs=outputs, headers=auth)

    expected_label, expected_probabilities = ort.InferenceSession(digits_onnx).run(None, {"X": features})
    np.testing.assert_array_equal(result.as_numpy("label").reshape(-1), expected_label)
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected_probabilities, rtol=1e-5)
    assert result.get_response().model_name == "digits"

    metadata = client.get_model_metadata("digits", headers=auth, as_json=True)
    assert metadata["name"] == "digits"
    assert metadata["inputs"] == [{"name": "X", "datatype": "FP32", "shape": ["-1", "64"]}]
    assert client.is_model_ready("digits", headers=auth)

    events = wait_usage(acme, 3)
    assert {e.protocol for e in events} == {"grpc"}
    assert sorted(e.endpoint for e in events) == ["infer", "metadata", "ready"]
    infer_event = next(e for e in events if e.endpoint == "infer")
    assert (infer_event.status, infer_event.api_key_id, infer_event.deployment_id, infer_event.deployment_name) == (
        200, api_key.pk, digits_deployment.pk, "digits")
    assert infer_event.model_version_id == digits_deployment.model_version_id
    assert infer_event.bytes_in > 7 * 64 * 4 and infer_event.bytes_out > 7 * 11 * 4
    assert infer_event.latency_ms >= infer_event.upstream_ms > 0 and infer_event.compute_ms > 0


def test_each_answer_carries_a_request_id_and_rate_fields_that_metering_keeps(stack, acme, digits_deployment,
                                                                              gateway_stub):
    api_key, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    quota_set(level="key", target=api_key, values={"rate_per_second": 10, "rate_burst": 5})
    request = infer_request(rows=2)
    answer = rpc(gateway_stub, "ModelInfer", request, bearer(raw))
    assert answer.code == Code.OK
    assert [list(o.shape) for o in answer.response.outputs] == [[2, 1], [2, 10]]
    assert answer.initial["x-ratelimit-limit-requests"] == "5"
    assert answer.initial["x-ratelimit-remaining-requests"] == "4"
    assert '"key"' in answer.initial["ratelimit-policy"]
    [event] = wait_usage(acme, 1)
    assert str(event.request_id) == answer.initial["x-request-id"]
    assert (event.bytes_in, event.bytes_out) == (request.ByteSize(), answer.response.ByteSize())


def test_the_x_api_key_metadata_is_accepted_too(stack, acme, digits_deployment, gateway_stub):
    _, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    answer = rpc(gateway_stub, "ModelMetadata", model_request("ModelMetadata", "digits"), (("x-api-key", raw),))
    assert (answer.code, answer.response.name) == (Code.OK, "digits")


@pytest.mark.parametrize("method", MODEL_RPCS)
def test_auth_failures_are_unauthenticated_or_permission_denied_and_not_metered(stack, acme, gateway_stub, method):
    _, manage_raw = api_key_create(tenant=acme, label="manage", scopes=["manage"])
    revoked, revoked_raw = api_key_create(tenant=acme, label="old", scopes=["infer"])
    api_key_revoke(tenant=acme, key_id=revoked.pk)
    cases = [
        ((), Code.UNAUTHENTICATED, "Missing API key: send the metadata 'authorization: Bearer <api key>'"),
        ((("authorization", "Basic abc"),), Code.UNAUTHENTICATED, "Malformed authorization metadata"),
        ((("authorization", "Bearer "),), Code.UNAUTHENTICATED, "Malformed authorization metadata"),
        (bearer("ik_nope_nope"), Code.UNAUTHENTICATED, "Unknown API key."),
        ((("x-api-key", "ik_nope_nope"),), Code.UNAUTHENTICATED, "Unknown API key."),
        (bearer(revoked_raw), Code.UNAUTHENTICATED, "This API key has been revoked."),
        (bearer(manage_raw), Code.PERMISSION_DENIED, "This API key lacks the 'infer' scope."),
    ]
    for metadata, code, message in cases:
        answer = rpc(gateway_stub, method, model_request(method, "digits"), metadata)
        assert (answer.code, message in answer.details) == (code, True), (metadata, answer.details)
        assert answer.initial["x-request-id"]
    # Refused before admission: nothing is metered.
    time.sleep(0.5)
    assert UsageEvent.objects.for_tenant(acme).count() == 0


def test_another_tenants_model_is_indistinguishable_from_a_missing_one(stack, acme, globex, digits_deployment,
                                                                       gateway_stub):
    _, globex_raw = api_key_create(tenant=globex, label="g", scopes=["infer"])
    answers = {}
    for name in ("digits", "missing"):
        for method in MODEL_RPCS:
            answer = rpc(gateway_stub, method, model_request(method, name), bearer(globex_raw))
            answers.setdefault(method, set()).add((answer.code, answer.details.replace(name, "?")))
    assert all(answer == {(Code.NOT_FOUND, "No deployment named '?' in your tenant.")}
               for answer in answers.values()), answers
    # The same words as over HTTP.
    status, _, body = call(stack, "/v2/models/missing", key=globex_raw)
    assert status == 404 and b"No deployment named 'missing' in your tenant." in body
    events = wait_usage(globex, 7)
    assert {(e.status, e.deployment_id) for e in events} == {(404, None)}
    assert {e.protocol for e in events} == {"grpc", "http"}
    assert UsageEvent.objects.for_tenant(acme).count() == 0


@pytest.mark.parametrize(
    "fault, message",
    [
        # Refused by the gateway before Triton sees them (gateway/signature.py).
        ({"input_name": "nope"}, "Input 'nope' is not an input of this deployment; its inputs are: X (FP32 [-1, 64])."),
        ({"data": b"\0" * 4}, "The raw contents of input 'X' are 4 bytes; its shape [1, 64] FP32 needs 256."),
    ],
)
def test_bad_input_is_invalid_argument_in_the_callers_names_and_metered(stack, acme, digits_deployment,
                                                                         gateway_stub, fault, message):
    api_key, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    answer = rpc(gateway_stub, "ModelInfer", infer_request(**fault), bearer(raw))
    assert answer.code == Code.INVALID_ARGUMENT and message in answer.details, answer.details
    assert f"t{acme.pk}--" not in answer.details, "the namespaced Triton name must not leak"
    [event] = wait_usage(acme, 1)
    assert (event.status, event.api_key_id, event.deployment_id, event.protocol, event.compute_ms) == (
        400, api_key.pk, digits_deployment.pk, "grpc", 0)


def test_a_message_that_is_not_protobuf_is_invalid_argument(stack, acme, gateway_channel, gateway_stub):
    _, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    model_infer = gateway_channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
    with pytest.raises(grpc.RpcError) as caught:
        # Field 1 says it holds 255 bytes; 6 follow.
        model_infer(b"\x0a\xff\x01digits", metadata=bearer(raw), timeout=10)
    assert caught.value.code() == Code.INVALID_ARGUMENT
    assert caught.value.details() == "The request is not a valid ModelInfer message: the message is truncated."
    answer = rpc(gateway_stub, "ModelInfer", infer_request(name=""), bearer(raw))
    assert (answer.code, answer.details) == (Code.INVALID_ARGUMENT, "The request names no model.")


def test_versions_reach_tritons_versions(stack, acme, digits_deployment, gateway_stub):
    _, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    answer = rpc(gateway_stub, "ModelInfer", infer_request(version="1"), bearer(raw))
    assert (answer.code, answer.response.model_name, answer.response.model_version) == (Code.OK, "digits", "1")
    answer = rpc(gateway_stub, "ModelMetadata", model_request("ModelMetadata", "digits", "1"), bearer(raw))
    assert (answer.code, list(answer.response.versions)) == (Code.OK, ["1"])
    for method in ("ModelInfer", "ModelMetadata"):
        answer = rpc(gateway_stub, method, model_request(method, "digits", "7"), bearer(raw))
        assert (answer.code, answer.details) == (Code.NOT_FOUND, "Deployment 'digits' has no version 7.")
    # As Triton answers it: a version that does not exist is not ready.
    answer = rpc(gateway_stub, "ModelReady", model_request("ModelReady", "digits", "7"), bearer(raw))
    assert (answer.code, answer.response.ready) == (Code.OK, False)


def test_a_rate_limit_is_resource_exhausted_with_retry_after(stack, acme, digits_deployment, gateway_stub):
    api_key, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    quota_set(level="key", target=api_key, values={"rate_per_second": 1, "rate_burst": 1})
    assert rpc(gateway_stub, "ModelInfer", infer_request(), bearer(raw)).code == Code.OK
    answer = rpc(gateway_stub, "ModelInfer", infer_request(), bearer(raw))
    assert answer.code == Code.RESOURCE_EXHAUSTED
    assert answer.details.startswith("Rate limit of the key exceeded; retry in ")
    assert answer.trailing["retry-after"] == "1"
    assert answer.trailing["x-ratelimit-remaining-requests"] == "0"
    assert answer.initial["x-request-id"]
    # Refused: only the first request is metered.
    [event] = wait_usage(acme, 1)
    assert event.status == 200


def test_a_spent_monthly_budget_is_resource_exhausted_not_to_retry(stack, acme, digits_deployment, gateway_stub):
    api_key, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    quota_set(level="key", target=api_key, values={"monthly_requests": 1})
    assert rpc(gateway_stub, "ModelInfer", infer_request(), bearer(raw)).code == Code.OK
    answer = rpc(gateway_stub, "ModelInfer", infer_request(), bearer(raw))
    assert (answer.code, answer.details) == (Code.RESOURCE_EXHAUSTED,
                                             "The key has used its 1 requests for this month.")
    assert answer.trailing["x-should-retry"] == "false" and "retry-after" not in answer.trailing
    # Budgets count inferences only: metadata is still answered.
    assert rpc(gateway_stub, "ModelMetadata", model_request("ModelMetadata", "digits"), bearer(raw)).code == Code.OK


def test_a_request_over_the_payload_limit_is_resource_exhausted(stack, acme, digits_deployment, gateway_stub):
    api_key, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    quota_set(level="key", target=api_key, values={"max_payload_bytes": 100})
    request = infer_request()
    answer = rpc(gateway_stub, "ModelInfer", request, bearer(raw))
    assert (answer.code, answer.details) == (
        Code.RESOURCE_EXHAUSTED, f"The request body ({request.ByteSize()} bytes) exceeds the key limit of 100 bytes.")
    assert rpc(gateway_stub, "ModelMetadata", model_request("ModelMetadata", "digits"), bearer(raw)).code == Code.OK


@pytest.mark.parametrize(
    "state, error, code, retry_after, message",
    [
        ("loading", "", Code.UNAVAILABLE, "2",
         f"Deployment 'warming' is still loading after {HOLD_TIMEOUT_S} s; retry shortly."),
        ("failed", "bad model", Code.FAILED_PRECONDITION, None, "Deployment 'warming' failed to load: bad model"),
    ],
)
def test_deployments_not_ready_are_refused_or_answer_not_ready_and_are_metered(
        stack, acme, gateway_stub, state, error, code, retry_after, message):
    api_key, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    write_route(acme, "warming", state=state, error=error, grpc_url=f"127.0.0.1:{stack.triton_grpc_port}")
    for method in ("ModelInfer", "ModelMetadata"):
        answer = rpc(gateway_stub, method, model_request(method, "warming"), bearer(raw))
        assert (answer.code, answer.details, answer.trailing.get("retry-after")) == (code, message, retry_after)
    # Readiness is a question: the answer is "no", as Triton's own.
    answer = rpc(gateway_stub, "ModelReady", model_request("ModelReady", "warming"), bearer(raw))
    assert (answer.code, answer.response.ready) == (Code.OK, False)
    events = wait_usage(acme, 3)
    assert {(e.status, e.api_key_id, e.deployment_name, e.protocol) for e in events} == {
        (503, api_key.pk, "warming", "grpc")}


def test_a_route_to_a_model_triton_lacks_is_unavailable_retry(stack, acme, gateway_stub):
    """The directory says ready but the server does not hold the model (it restarted)."""
    _, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    write_route(acme, "stale", grpc_url=f"127.0.0.1:{stack.triton_grpc_port}")
    answer = rpc(gateway_stub, "ModelInfer", infer_request("stale"), bearer(raw))
    assert (answer.code, answer.trailing.get("retry-after")) == (Code.UNAVAILABLE, "2")
    assert answer.details == "Deployment 'stale' is not loaded on its server yet; retry shortly."


def test_triton_unreachable_is_unavailable_fast_and_metered(stack, acme, gateway_stub, digits_deployment):
    """A server that refuses connections (it died) is answered at once with UNAVAILABLE and
    retry-after; beside a live replica it is skipped."""
    _, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    dead = f"127.0.0.1:{free_port()}"
    write_route(acme, "orphan", grpc_url=dead)
    started = time.monotonic()
    answer = rpc(gateway_stub, "ModelInfer", infer_request("orphan"), bearer(raw))
    assert (answer.code, answer.trailing.get("retry-after")) == (Code.UNAVAILABLE, "2")
    assert "is not answering" in answer.details
    assert time.monotonic() - started < 2
    [event] = wait_usage(acme, 1)
    assert (event.status, event.upstream_ms, event.protocol) == (503, None, "grpc")

    # Another dead one, first in the route: it is tried, refused, and the live one answers.
    live, dead = f"127.0.0.1:{stack.triton_grpc_port}", f"127.0.0.1:{free_port()}"
    write_route(acme, "digits", deployment_id=str(digits_deployment.pk), triton_model=digits_deployment.triton_name,
                grpc_url=f"{dead} {live}")
    for _ in range(4):
        assert rpc(gateway_stub, "ModelInfer", infer_request("digits"), bearer(raw)).code == Code.OK


@pytest.fixture
def silent_upstream():
    """A server that accepts connections and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted = []

    def accept():
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    listener.close()
    for connection in accepted:
        connection.close()


def test_a_caller_that_gives_up_is_metered_499_and_frees_its_slot(stack, acme, digits_deployment, gateway_stub,
                                                                   silent_upstream):
    api_key, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    quota_set(level="key", target=api_key, values={"max_concurrency": 1})
    write_route(acme, "silent", grpc_url=silent_upstream)
    answer = rpc(gateway_stub, "ModelInfer", infer_request("silent"), bearer(raw), timeout=0.5)
    assert answer.code == Code.DEADLINE_EXCEEDED
    # The request's concurrency lease was released at once, not when it expired.
    assert rpc(gateway_stub, "ModelInfer", infer_request(), bearer(raw)).code == Code.OK
    events = wait_usage(acme, 2)
    assert sorted((e.deployment_name, e.status) for e in events) == [("digits", 200), ("silent", 499)]


class StalledUpstream(grpc.GenericRpcHandler):
    """A gRPC server that takes every call and answers none until the test ends."""

    def __init__(self):
        self.calls = 0
        self.released = threading.Event()
        self.server = grpc.server(ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers((self,))
        self.address = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        self.server.start()

    def service(self, handler_call_details):
        return grpc.unary_unary_rpc_method_handler(self.stall)

    def stall(self, request, context):
        self.calls += 1
        self.released.wait(30)
        context.abort(Code.UNAVAILABLE, "released")


@pytest.fixture
def stalled_upstream():
    upstream = StalledUpstream()
    yield upstream
    upstream.released.set()
    upstream.server.stop(0)


def test_grpc_requests_in_flight_count_against_their_replica(stack, acme, digits_deployment, gateway_stub,
                                                              stalled_upstream):
    """Replicas are chosen by the fewest requests outstanding, gRPC ones included: with a
    request stuck on one replica, the next goes to the other."""
    _, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    live = f"127.0.0.1:{stack.triton_grpc_port}"
    write_route(acme, "digits", deployment_id=str(digits_deployment.pk), triton_model=digits_deployment.triton_name,
                grpc_url=f"{stalled_upstream.address} {live}")
    stuck = gateway_stub.ModelInfer.future(infer_request(), metadata=bearer(raw), timeout=30)
    deadline = time.monotonic() + 10
    while stalled_upstream.calls == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert stalled_upstream.calls == 1
    answer = rpc(gateway_stub, "ModelInfer", infer_request(), bearer(raw), timeout=5)
    assert (answer.code, answer.details) == (Code.OK, "")
    assert stalled_upstream.calls == 1 and not stuck.done()
    stuck.cancel()
    events = wait_usage(acme, 2)
    assert sorted(e.status for e in events) == [200, 499]


def test_server_endpoints_answer_without_a_key(stack, gateway_stub):
    client = triton_grpc.InferenceServerClient(url=f"127.0.0.1:{stack.gateway_grpc_port}")
    assert client.is_server_live() and client.is_server_ready()
    assert client.get_server_metadata(as_json=True)["name"] == "inference-platform-gateway"


@pytest.mark.parametrize(
    "method, request_, message",
    [
        ("ModelConfig", service_pb2.ModelConfigRequest(name="digits"), "ModelConfig is not served by this gateway"),
        ("RepositoryIndex", service_pb2.RepositoryIndexRequest(), "RepositoryIndex is not served by this gateway"),
    ],
)
def test_other_rpcs_are_unimplemented_with_the_reason(stack, gateway_stub, method, request_, message):
    answer = rpc(gateway_stub, method, request_)
    assert answer.code == Code.UNIMPLEMENTED and answer.details.startswith(message)
    assert "ModelInfer" in answer.details


def test_streaming_inference_is_unimplemented_with_the_reason(stack, acme):
    _, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    client = triton_grpc.InferenceServerClient(url=f"127.0.0.1:{stack.gateway_grpc_port}")
    errors = []
    client.start_stream(callback=lambda result, error: errors.append(error), headers={"authorization": f"Bearer {raw}"})
    deadline = time.monotonic() + 10
    while not errors and time.monotonic() < deadline:
        time.sleep(0.05)
    client.stop_stream()
    assert isinstance(errors[0], InferenceServerException)
    assert "ModelStreamInfer" in str(errors[0]) and "UNIMPLEMENTED" in errors[0].status()

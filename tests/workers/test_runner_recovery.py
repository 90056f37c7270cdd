"""A deployment whose runner process dies is restarted without anyone acting: Triton
keeps such a model "ready" but fails every request ("Stub process ... is not healthy");
the gateway answers 503 runner_restarting with Retry-After and has a worker reload it."""
import json
import os
import signal
import time

import pytest

from tenants.services import api_key_create
from tests.gateway.test_gateway import call, digits_deployment, infer_body  # noqa: F401

pytestmark = pytest.mark.integration


def runner_pids(triton_name: str) -> list[int]:
    """The Python-backend stub processes of a loaded model (their command line names its directory)."""
    needle = f"/{triton_name}/".encode()
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if needle in f.read():
                    pids.append(int(pid))
        except OSError:
            continue
    return pids


def test_a_killed_runner_is_reloaded_and_serves_again(stack, acme, digits_deployment):
    _, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    assert call(stack, "/v2/models/digits/infer", key=raw, body=infer_body())[0] == 200
    pids = runner_pids(digits_deployment.triton_name)
    assert pids, "the runner's stub process was not found"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)

    answers, deadline = [], time.monotonic() + 30
    while time.monotonic() < deadline:
        status, headers, body = call(stack, "/v2/models/digits/infer", key=raw, body=infer_body())
        answers.append((status, json.loads(body).get("code") if status != 200 else None, headers.get("Retry-After")))
        if status == 200:
            break
        time.sleep(0.2)
    assert answers[-1][0] == 200, answers
    # Triton does not restart the stub itself: the first call after the kill is refused.
    assert answers[0] == (503, "runner_restarting", "2")
    assert set(answers[:-1]) == {(503, "runner_restarting", "2")}, answers
    fresh = runner_pids(digits_deployment.triton_name)
    assert fresh and not set(fresh) & set(pids)


def test_a_killed_runner_is_reloaded_for_grpc_callers_too(stack, acme, digits_deployment):
    import grpc
    from tritonclient.grpc import service_pb2_grpc

    from tests.gateway.test_grpc import bearer, infer_request, rpc

    _, raw = api_key_create(tenant=acme, label="k", scopes=["infer"])
    with grpc.insecure_channel(f"127.0.0.1:{stack.gateway_grpc_port}") as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        assert rpc(stub, "ModelInfer", infer_request(), bearer(raw)).code == grpc.StatusCode.OK
        pids = runner_pids(digits_deployment.triton_name)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        answers, deadline = [], time.monotonic() + 30
        while time.monotonic() < deadline:
            answer = rpc(stub, "ModelInfer", infer_request(), bearer(raw))
            answers.append((answer.code, answer.details))
            if answer.code == grpc.StatusCode.OK:
                break
            time.sleep(0.2)
    assert answers[-1][0] == grpc.StatusCode.OK, answers
    assert answers[0][0] == grpc.StatusCode.UNAVAILABLE and "is being restarted" in answers[0][1], answers
    assert not set(runner_pids(digits_deployment.triton_name)) & set(pids)

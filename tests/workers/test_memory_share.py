"""Each deployment's memory share: a request that makes its model allocate beyond it fails
alone (the model's instance, the server and other tenants' deployments go on serving), a
model that attacks the runtime ends with a clear reason, and the rule that sets the share."""
import json
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton_http
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.utils import InferenceServerException

from graph_editor import samples
from graph_editor.models import ModelVersion
from graph_editor.services import model_version_upload
from tenants.models import QuotaLevel
from tenants.quotas import quota_set
from tenants.services import api_key_create
from tests.gateway.test_gateway import call, infer_body
from tests.workers.test_services import wait_for_state
from workers.models import (
    Deployment,
    DeploymentState,
    Replica,
    ReplicaState,
    TritonServer,
)
from workers.services import deployment_create
from workers.services.triton_config import deployment_config_pbtxt
from workers.triton import client as triton
from workers.triton.repository import config_pbtxt, entry_remove, entry_write

MB = 2**20


def deploy(tenant, onnx: bytes, name: str) -> Deployment:
    version = model_version_upload(tenant=tenant, model_name=name, chunks=[onnx])
    deployment = deployment_create(tenant=tenant, model_version_id=version.pk, name=name)
    return wait_for_state(deployment.pk, {DeploymentState.READY, DeploymentState.FAILED})


def share_written(stack, deployment: Deployment) -> int:
    """The share in the deployment's config.pbtxt, as Triton reads it."""
    text = (stack.triton_repository / deployment.triton_name / "config.pbtxt").read_text()
    return int(text_format.Parse(text, mc.ModelConfig()).parameters["memory_limit_mb"].string_value)


def stub_pids(triton_name: str) -> list[int]:
    """The Python-backend stub processes (one per instance) of a loaded model."""
    needle = f"/{triton_name}/1/model.py".encode()
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if needle in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:
            continue
    return sorted(pids)


def triton_live(stack) -> bool:
    with urllib.request.urlopen(f"{stack.triton_url}/v2/health/live", timeout=5) as resp:
        return resp.status == 200


def error_of(body: bytes) -> str:
    return json.loads(body)["error"]


@contextmanager
def neighbour_calling(stack, key: str):
    """Another tenant's digits deployment called through the gateway all along; yields the
    statuses it got."""
    statuses, stop = [], threading.Event()

    def calls():
        while not stop.is_set():
            statuses.append(call(stack, "/v2/models/digits/infer", key=key, body=infer_body(2))[0])
            stop.wait(0.05)

    caller = threading.Thread(target=calls)
    caller.start()
    try:
        yield statuses
    finally:
        stop.set()
        caller.join()


@pytest.fixture
def neighbour(stack, globex, digits_onnx) -> str:
    """globex's digits deployment, on the same Triton; returns globex's API key."""
    deployment = deploy(globex, digits_onnx, "digits")
    assert deployment.state == DeploymentState.READY, deployment.error
    return api_key_create(tenant=globex, label="client", scopes=["infer"])[1]


def hog_body(n: int) -> bytes:
    return json.dumps({"inputs": [{"name": "n", "shape": [1, 1], "datatype": "INT64", "data": [n]}]}).encode()


def x_body() -> bytes:
    return json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1.0] * 4}]}).encode()


@pytest.mark.integration
def test_a_request_beyond_the_share_fails_alone_and_the_next_one_is_answered(stack, acme, neighbour):
    hog = deploy(acme, samples.memory_hog_onnx(), "hog")
    assert hog.state == DeploymentState.READY, hog.error
    share = share_written(stack, hog)
    assert share < 4000  # n = 1e9 makes the model allocate 4 GB
    _, key = api_key_create(tenant=acme, label="client", scopes=["infer"])
    stubs = stub_pids(hog.triton_name)
    assert len(stubs) == 1

    with neighbour_calling(stack, neighbour) as statuses:
        started = time.monotonic()
        status, _, body = call(stack, "/v2/models/hog/infer", key=key, body=hog_body(10**9))
        refused_in = time.monotonic() - started
        assert status == 400, body
        assert json.loads(body)["code"] == "invalid_input"
        assert error_of(body).startswith(f"Out of memory: the request needs more than the deployment's memory "
                                         f"share of {share} MB per instance")
        assert refused_in < 5, f"refused after {refused_in:.1f} s"
        assert triton_live(stack)
        # The same instance (not a restarted one) answers the next request.
        assert stub_pids(hog.triton_name) == stubs
        status, _, body = call(stack, "/v2/models/hog/infer", key=key, body=hog_body(10))
        assert status == 200, body
        assert json.loads(body)["outputs"][0]["data"] == [10.0]
        time.sleep(0.3)
    assert statuses and set(statuses) == {200}, statuses
    assert Deployment.unscoped.get(pk=hog.pk).state == DeploymentState.READY


@pytest.mark.integration
@pytest.mark.parametrize("attack", ["expand_bomb_onnx", "constant_bomb_onnx"])
def test_a_model_that_attacks_the_runtime_ends_with_a_clear_reason(stack, acme, neighbour, attack):
    _, key = api_key_create(tenant=acme, label="client", scopes=["infer"])
    with neighbour_calling(stack, neighbour) as statuses:
        bomb = deploy(acme, getattr(samples, attack)(), "bomb")
        if bomb.state == DeploymentState.FAILED:
            # Met at load: the deployment fails, and says why.
            assert bomb.error.startswith("Triton could not load the model: ") and "memory" in bomb.error, bomb.error
            status, _, body = call(stack, "/v2/models/bomb/infer", key=key, body=x_body())
            assert status == 503 and "failed to load" in error_of(body), body
        else:
            # Met at the first inference: every request fails alone, with the reason.
            stubs = stub_pids(bomb.triton_name)
            share = share_written(stack, bomb)
            for _ in range(2):
                status, _, body = call(stack, "/v2/models/bomb/infer", key=key, body=x_body())
                assert status == 400, body
                assert error_of(body).startswith(f"Out of memory: the request needs more than the deployment's "
                                                 f"memory share of {share} MB per instance"), body
            assert stub_pids(bomb.triton_name) == stubs
            assert Deployment.unscoped.get(pk=bomb.pk).state == DeploymentState.READY
        assert triton_live(stack)
        time.sleep(0.3)
    assert statuses and set(statuses) == {200}, statuses


def fold_bomb_onnx() -> bytes:
    """Three constant Adds, each broadcasting to just under the 1 GiB onnxruntime folds at
    load, each reduced to a scalar added to the input x FP32 [-1, 4]: a 400 KB file whose
    constant folding took 13.7 s and 4.2 GB (peak RSS) in an uncapped process."""
    from onnx import helper, numpy_helper

    initializers, nodes = [], []
    for i in range(3):
        initializers += [numpy_helper.from_array(np.full((16383, 1), i, np.float32), f"a{i}"),
                         numpy_helper.from_array(np.ones((1, 16384), np.float32), f"b{i}")]
        nodes += [helper.make_node("Add", [f"a{i}", f"b{i}"], [f"big{i}"]),
                  helper.make_node("ReduceSum", [f"big{i}"], [f"s{i}"], keepdims=0)]
    nodes += [helper.make_node("Sum", ["s0", "s1", "s2"], ["s"]), helper.make_node("Add", ["x", "s"], ["y"])]
    return onnx_bytes(nodes, initializers, "x", "y")


def echo_onnx() -> bytes:
    """y = x for any [N, M] FP32 tensor: what a request sends, the model allocates again."""
    from onnx import helper

    return onnx_bytes([helper.make_node("Identity", ["x"], ["y"])], [], "x", "y", dims=["N", "M"])


def onnx_bytes(nodes, initializers, x: str, y: str, dims=("N", 4)) -> bytes:
    from onnx import TensorProto, helper

    graph = helper.make_graph(nodes, "test", [helper.make_tensor_value_info(x, TensorProto.FLOAT, list(dims))],
                              [helper.make_tensor_value_info(y, TensorProto.FLOAT, list(dims))],
                              initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.mark.integration
def test_constant_folding_at_load_stays_within_the_share(stack, acme, neighbour):
    with neighbour_calling(stack, neighbour) as statuses:
        started = time.monotonic()
        bomb = deploy(acme, fold_bomb_onnx(), "folds")
        assert bomb.state == DeploymentState.READY, bomb.error
        assert time.monotonic() - started < 10
        [stub] = stub_pids(bomb.triton_name)
        peak_mb = int(next(line for line in Path(f"/proc/{stub}/status").read_text().splitlines()
                           if line.startswith("VmHWM:")).split()[1]) // 1024
        assert peak_mb < 512, f"the load peaked at {peak_mb} MB"
        # onnxruntime skipped the folds it could not fit; a request computes them, one
        # Add (1 GB) at a time, within the share.
        _, key = api_key_create(tenant=acme, label="client", scopes=["infer"])
        status, _, body = call(stack, "/v2/models/folds/infer", key=key, body=x_body())
        assert status == 200, body
        assert json.loads(body)["outputs"][0]["shape"] == [1, 4]
        assert triton_live(stack)
    assert statuses and set(statuses) == {200}, statuses


@pytest.fixture
def loaded_by_hand(stack, tmp_path):
    """Loads an entry written here, with a share of our choosing, into the stack's Triton
    (what the platform does, minus its settings); unloads and removes it afterwards."""
    names = []

    def load(name: str, onnx: bytes, inputs: list[dict], outputs: list[dict], **config):
        name = f"{name}-{stack.triton_http_port}"
        names.append(name)
        onnx_path = tmp_path / f"{name}.onnx"
        onnx_path.write_bytes(onnx)
        entry_write(repository=stack.triton_repository, triton_name=name, onnx_path=onnx_path, native_onnx=False,
                    config=config_pbtxt(triton_name=name, inputs=inputs, outputs=outputs, has_batch_dim=True,
                                        native_onnx=False, gpu=False, **config))
        triton.model_load(stack.triton_url, name, timeout=60)
        return name

    yield load
    for name in names:
        triton.model_unload(stack.triton_url, name)
        entry_remove(repository=stack.triton_repository, triton_name=name)


ECHO_IN, ECHO_OUT = [{"name": "x", "datatype": "FP32", "shape": [-1, -1]}], [{"name": "y", "datatype": "FP32",
                                                                             "shape": [-1, -1]}]


def echo_input(rows: np.ndarray) -> triton_http.InferInput:
    tensor = triton_http.InferInput("x", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows, binary_data=True)
    return tensor


@pytest.mark.integration
def test_tensors_larger_than_the_share_fail_cleanly_and_a_batch_too_large_to_merge_runs_one_by_one(stack,
                                                                                                   loaded_by_hand):
    # A batcher that waits for four requests, and a 64 MB share.
    name = loaded_by_hand("echo", echo_onnx(), ECHO_IN, ECHO_OUT, queue_delay_us=2_000_000,
                          preferred_batch_sizes=[4], memory_limit_mb=64)
    client = triton_http.InferenceServerClient(url=stack.triton_url.removeprefix("http://"), concurrency=4,
                                               network_timeout=60)
    stubs = stub_pids(name)
    # 80 MB: more than the share, and more than the stub had mapped of Triton's shared memory.
    with pytest.raises(InferenceServerException) as refused:
        client.infer(name, [echo_input(np.ones((1, 20 * MB), np.float32))])
    assert refused.value.status() == "400"
    assert refused.value.message().startswith("Out of memory: the request needs more than the deployment's memory "
                                              "share of 64 MB per instance")

    # Four 20 MB requests, batched: merged they would take 80 MB, so they run one by one.
    rows = [np.full((1, 5 * MB), i, np.float32) for i in range(4)]
    pending = [client.async_infer(name, [echo_input(row)]) for row in rows]
    for row, request in zip(rows, pending, strict=True):
        np.testing.assert_array_equal(request.get_result().as_numpy("y"), row)
    [stats] = client.get_inference_statistics(name)["model_stats"]
    assert [b["compute_infer"]["count"] for b in stats["batch_stats"] if b["batch_size"] == 4] == [1]
    assert stub_pids(name) == stubs and triton_live(stack)


@pytest.mark.integration
def test_a_session_that_cannot_be_built_within_the_share_fails_the_load_with_the_reason(stack, loaded_by_hand,
                                                                                          digits_onnx):
    from tests.workers.test_services import DIGITS_INPUTS, DIGITS_OUTPUTS

    with pytest.raises(triton.TritonError) as refused:
        loaded_by_hand("digits-1mb", digits_onnx, DIGITS_INPUTS, DIGITS_OUTPUTS, memory_limit_mb=1)
    assert ("RuntimeError: Out of memory: building the model needs more than the deployment's memory share of "
            "1 MB per instance") in str(refused.value)
    assert triton_live(stack)


# ---- the rule -------------------------------------------------------------------------

def share_of(deployment: Deployment, server: TritonServer, instances: int = 1) -> str | None:
    config = text_format.Parse(deployment_config_pbtxt(deployment, server, instances), mc.ModelConfig())
    return config.parameters["memory_limit_mb"].string_value if "memory_limit_mb" in config.parameters else None


@pytest.fixture
def unit(db, acme, digits_onnx, settings):
    """An acme deployment (not loaded) of a model as large as a test says, and a server."""
    settings.DEPLOYMENT_MEMORY_SHARE_MB, settings.DEPLOYMENT_MEMORY_HEADROOM = 1024, 4
    version = model_version_upload(tenant=acme, model_name="digits", chunks=[digits_onnx])
    server = TritonServer.objects.create(name="unit", http_url="http://127.0.0.1:1", grpc_url="127.0.0.1:2",
                                         repository_path="/nonexistent", backends=["python"], memory_mb=8192)

    def make(size_mb: float, **server_fields):
        # As if a model this large had been uploaded (versions are immutable through save()).
        ModelVersion.unscoped.filter(pk=version.pk).update(size_bytes=int(size_mb * MB))
        TritonServer.objects.filter(pk=server.pk).update(**server_fields)
        server.refresh_from_db()
        deployment = Deployment.unscoped.create(tenant=acme, name="digits", model_version_id=version.pk)
        return deployment, server

    return make


@pytest.mark.parametrize("size_mb, server_fields, tenant_memory_mb, expected", [
    # Estimated per instance: twice the weights plus 64 MB of runtime, times the headroom of 4...
    (300, {}, None, "2656"),
    # ...never below the floor, so a small model gets 1024 MB...
    (0.01, {}, None, "1024"),
    # ...nor above the tenant's plan memory or the server's (the floor still holds).
    (300, {}, 2000, "2000"),
    (300, {"memory_mb": 1500}, None, "1500"),
    (300, {"memory_mb": 512}, None, "1024"),
])
def test_the_share_is_the_reservation_times_the_headroom_within_the_limits(unit, acme, size_mb, server_fields,
                                                                            tenant_memory_mb, expected):
    if tenant_memory_mb:
        quota_set(level=QuotaLevel.TENANT, target=acme, values={"max_model_memory_mb": tenant_memory_mb})
    deployment, server = unit(size_mb, **server_fields)
    # Per instance: each is its own process with its own cap.
    assert share_of(deployment, server) == share_of(deployment, server, instances=3) == expected


def test_a_measured_deployment_gets_its_share_from_what_one_instance_holds(unit):
    deployment, server = unit(300)
    Replica.objects.create(deployment=deployment, server=server, instances=2, memory_mb=700, state=ReplicaState.READY)
    Deployment.unscoped.filter(pk=deployment.pk).update(memory_mb=700)
    deployment.refresh_from_db()
    assert share_of(deployment, server) == "1400"  # 700 MB over 2 instances, times 4


def test_no_share_for_native_onnxruntime_or_when_turned_off(unit, settings):
    deployment, server = unit(300, backends=["python", "onnxruntime"])
    assert share_of(deployment, server) is None  # only the Python-backend runner enforces one
    TritonServer.objects.filter(pk=server.pk).update(backends=["python"])
    server.refresh_from_db()
    settings.DEPLOYMENT_MEMORY_SHARE_MB, settings.DEPLOYMENT_MEMORY_HEADROOM = 0, 0
    assert share_of(deployment, server) is None
    settings.DEPLOYMENT_MEMORY_SHARE_MB = 256
    assert share_of(deployment, server) == "256"

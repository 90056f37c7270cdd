"""The graph orchestrator (workers/triton/orchestrator_model.py) on a real Triton started
here: it runs a graph's steps, separate models on the same server, through BLS; a switch's
untaken branch is not called; a step's failure is that request's error, naming the step."""
import json
import os
import shutil
import signal
import subprocess
from functools import partial
from pathlib import Path

import numpy as np
import onnx
import pytest
import tritonclient.http as triton_http
from onnx import TensorProto, helper, numpy_helper
from tritonclient.utils import InferenceServerException

from bench.stack import free_port, wait_http
from workers.triton import client as triton
from workers.triton.local import (
    backend_dir_prepare,
    die_with_parent,
    pytriton_root,
    server_command,
    server_environment,
)
from workers.triton.repository import config_pbtxt, config_text, entry_write, model_config

ORCHESTRATOR_SOURCE = Path(__file__).resolve().parents[2] / "workers" / "triton" / "orchestrator_model.py"
ROW4 = [-1, 4]


def spec(name: str, datatype: str = "FP32", shape: list[int] = ROW4) -> dict:
    return {"name": name, "datatype": datatype, "shape": shape}


def onnx_model(inputs: list[dict], outputs: list[dict], nodes: list, initializers=()) -> bytes:
    elem = {"FP32": TensorProto.FLOAT, "INT64": TensorProto.INT64}
    graph = helper.make_graph(
        nodes, "step",
        [helper.make_tensor_value_info(s["name"], elem[s["datatype"]], [None, *s["shape"][1:]]) for s in inputs],
        [helper.make_tensor_value_info(s["name"], elem[s["datatype"]], [None, *s["shape"][1:]]) for s in outputs],
        initializer=[numpy_helper.from_array(np.asarray(v), n) for n, v in initializers])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


# The step models: name -> (inputs, outputs, nodes, initializers).
STEPS = {
    "double": ([spec("x")], [spec("y")], [helper.make_node("Mul", ["x", "two"], ["y"])], [("two", np.float32(2))]),
    # Rows whose sum is positive go to `hi`, the others to `lo`.
    "switch": ([spec("x")], [spec("hi"), spec("lo")], [
        helper.make_node("ReduceSum", ["x", "axis1"], ["sum"], keepdims=0),
        helper.make_node("Greater", ["sum", "zero"], ["cond"]),
        helper.make_node("Not", ["cond"], ["not_cond"]),
        helper.make_node("Compress", ["x", "cond"], ["hi"], axis=0),
        helper.make_node("Compress", ["x", "not_cond"], ["lo"], axis=0),
    ], [("axis1", np.array([1], np.int64)), ("zero", np.float32(0))]),
    "plus_one": ([spec("x")], [spec("y")], [helper.make_node("Add", ["x", "one"], ["y"])], [("one", np.float32(1))]),
    "negate": ([spec("x")], [spec("y")], [helper.make_node("Neg", ["x"], ["y"])], []),
    # Not batched in Triton's sense (its config has max_batch_size 0): Triton requires every
    # input of a batched request to have the first input's rows, and a merge's inputs differ.
    "merge": ([spec("a"), spec("b")], [spec("y")], [helper.make_node("Concat", ["a", "b"], ["y"], axis=0)], []),
    # Row i of a 10 x 4 table; an index past it fails in onnxruntime.
    "lookup": ([spec("i", "INT64", [-1, 1])], [spec("y")], [
        helper.make_node("Squeeze", ["i", "axis1"], ["idx"]),
        helper.make_node("Gather", ["table", "idx"], ["y"], axis=0),
    ], [("axis1", np.array([1], np.int64)), ("table", np.arange(40, dtype=np.float32).reshape(10, 4))]),
}


def step(model: str, node: str, inputs: dict, outputs: dict) -> dict:
    _, specs, _, _ = STEPS[model]
    by_name = {s["name"]: s for s in specs}
    return {"model": model, "nodes": [node], "inputs": inputs, "outputs": outputs,
            "output_specs": {ref: {"datatype": by_name[name]["datatype"], "shape": by_name[name]["shape"]}
                             for name, ref in outputs.items()}}


# double -> switch -> (plus_one | negate) -> merge, with the negate branch's output exposed too.
SWITCH_PLAN = {
    "batched": True,
    "inputs": ["x"],
    "outputs": [{"name": "y", "ref": "merge.y"}, {"name": "negated", "ref": "neg.y"}],
    "steps": [
        step("double", "double", {"x": "x"}, {"y": "double.y"}),
        step("switch", "switch", {"x": "double.y"}, {"hi": "switch.hi", "lo": "switch.lo"}),
        step("plus_one", "inc", {"x": "switch.hi"}, {"y": "inc.y"}),
        step("negate", "neg", {"x": "switch.lo"}, {"y": "neg.y"}),
        step("merge", "merge", {"a": "inc.y", "b": "neg.y"}, {"y": "merge.y"}),
    ],
}
SWITCH_IO = ([spec("x")], [spec("y"), spec("negated")])
LOOKUP_PLAN = {
    "batched": True, "inputs": ["i"], "outputs": [{"name": "y", "ref": "double.y"}],
    "steps": [step("lookup", "lookup", {"i": "i"}, {"y": "lookup.y"}),
              step("double", "double", {"x": "lookup.y"}, {"y": "double.y"})],
}
LOOKUP_IO = ([spec("i", "INT64", [-1, 1])], [spec("y")])


def switch_expected(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    doubled = x * 2
    hi = doubled.sum(axis=1) > 0
    return np.concatenate([doubled[hi] + 1, -doubled[~hi]]), -doubled[~hi]


class Server:
    """A Triton of the nvidia-pytriton wheel on free ports, in explicit model control, as
    `manage.py triton_serve` runs it (without the supervisor, which owns its signals)."""

    def __init__(self, workdir: Path):
        self.repository = workdir / "models"
        self.repository.mkdir(parents=True)
        self.log = workdir / "triton.log"
        self.http_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        command = server_command(repository=self.repository, backends=backend_dir_prepare(workdir / "backends"),
                                 bind="127.0.0.1", http_port=self.http_port, grpc_port=free_port(),
                                 metrics_port=free_port())
        with open(self.log, "wb") as log:
            # Its own process group, to stop it with its stubs; SIGKILL should this process die first.
            self.proc = subprocess.Popen(command, env=server_environment(), stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True, preexec_fn=partial(die_with_parent, os.getpid()))
        wait_http(f"{self.url}/v2/health/live", 60, self.proc, self.log)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def step_load(self, name: str, workdir: Path) -> None:
        inputs, outputs, nodes, initializers = STEPS[name]
        onnx_path = workdir / f"{name}.onnx"
        onnx_path.write_bytes(onnx_model(inputs, outputs, nodes, initializers))
        entry_write(repository=self.repository, triton_name=name, onnx_path=onnx_path, native_onnx=False,
                    config=config_pbtxt(triton_name=name, inputs=inputs, outputs=outputs,
                                        has_batch_dim=name != "merge",
                                        native_onnx=False, gpu=False))
        triton.model_load(self.url, name, timeout=60)

    def graph_load(self, name: str, plan: dict, inputs: list[dict], outputs: list[dict], **config) -> None:
        """The orchestrator's entry, as the graph compiler writes it: config, model.py, plan.json."""
        version = self.repository / name / "1"
        version.mkdir(parents=True, exist_ok=True)
        (self.repository / name / "config.pbtxt").write_text(config_text(model_config(
            triton_name=name, inputs=inputs, outputs=outputs, has_batch_dim=True, native_onnx=False, gpu=False,
            **config)))
        shutil.copyfile(ORCHESTRATOR_SOURCE, version / "model.py")
        (version / "plan.json").write_text(json.dumps(plan))
        triton.model_load(self.url, name, timeout=60)

    def successes(self, name: str) -> int:
        [stats] = triton.model_statistics(self.url, name)
        return stats["inference_stats"]["success"]["count"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One Triton for the module, with every step model and the two graphs loaded."""
    workdir = tmp_path_factory.mktemp("orchestrator")
    server = Server(workdir)
    try:
        for name in STEPS:
            server.step_load(name, workdir)
        # The batcher waits long enough for a burst of requests to reach one `execute`.
        server.graph_load("switch_graph", SWITCH_PLAN, *SWITCH_IO, queue_delay_us=20_000)
        server.graph_load("lookup_graph", LOOKUP_PLAN, *LOOKUP_IO, queue_delay_us=20_000)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def client(server):
    client = triton_http.InferenceServerClient(url=server.url.removeprefix("http://"), concurrency=16)
    yield client
    client.close()


def infer_input(name: str, array: np.ndarray) -> triton_http.InferInput:
    tensor = triton_http.InferInput(name, list(array.shape), "FP32" if array.dtype == np.float32 else "INT64")
    tensor.set_data_from_numpy(array, binary_data=True)
    return tensor


def infer(client, model: str, name: str, array: np.ndarray, outputs=("y",)) -> dict[str, np.ndarray]:
    result = client.infer(model, [infer_input(name, array)],
                          outputs=[triton_http.InferRequestedOutput(o) for o in outputs])
    return {o: result.as_numpy(o) for o in outputs}



@pytest.mark.integration
def test_the_graph_answers_what_its_steps_compute(client):
    x = np.array([[1, 2, 3, 4], [-1, -2, -3, -4], [0.5, -0.25, 0, 0], [-8, 1, 1, 1]], np.float32)
    answer = infer(client, "switch_graph", "x", x, outputs=("y", "negated"))
    expected, negated = switch_expected(x)
    np.testing.assert_array_equal(answer["y"], expected)
    np.testing.assert_array_equal(answer["negated"], negated)

    answer = infer(client, "lookup_graph", "i", np.array([[3], [0], [9]], np.int64))
    np.testing.assert_array_equal(answer["y"], np.arange(40, dtype=np.float32).reshape(10, 4)[[3, 0, 9]] * 2)


@pytest.mark.integration
@pytest.mark.parametrize("sign, called, skipped", [(1, "plus_one", "negate"), (-1, "negate", "plus_one")])
def test_a_branch_fed_no_rows_is_not_called_and_its_outputs_are_empty(server, client, sign, called, skipped):
    before = {name: server.successes(name) for name in STEPS}
    x = sign * np.arange(1, 13, dtype=np.float32).reshape(3, 4)
    answer = infer(client, "switch_graph", "x", x, outputs=("y", "negated"))

    expected, negated = switch_expected(x)
    np.testing.assert_array_equal(answer["y"], expected)
    assert answer["y"].shape == (3, 4)
    if skipped == "negate":
        assert answer["negated"].shape == (0, 4) and answer["negated"].dtype == np.float32
    else:
        np.testing.assert_array_equal(answer["negated"], negated)
    calls = {name: server.successes(name) - before[name] for name in STEPS}
    assert calls == {"double": 1, "switch": 1, called: 1, skipped: 0, "merge": 1, "lookup": 0}


@pytest.mark.integration
def test_a_failing_step_answers_its_request_with_an_error_naming_the_step(server, client):
    with pytest.raises(InferenceServerException) as failed:
        infer(client, "lookup_graph", "i", np.array([[1], [12]], np.int64))
    assert failed.value.message().startswith("step 'lookup' (model lookup) failed: ")
    assert "out of data bounds" in failed.value.message()
    assert triton.server_live(server.url)
    # The same graph answers the next request.
    np.testing.assert_array_equal(infer(client, "lookup_graph", "i", np.array([[2]], np.int64))["y"],
                                  [[16, 18, 20, 22]])


@pytest.mark.integration
def test_a_step_whose_model_is_not_loaded_fails_the_request_naming_the_step(server, client):
    plan = {**LOOKUP_PLAN, "steps": [step("lookup", "lookup", {"i": "i"}, {"y": "lookup.y"}),
                                     {**step("double", "scale", {"x": "lookup.y"}, {"y": "double.y"}),
                                      "model": "not-loaded"}]}
    server.graph_load("ghost_graph", plan, *LOOKUP_IO)
    with pytest.raises(InferenceServerException) as failed:
        infer(client, "ghost_graph", "i", np.array([[1]], np.int64))
    assert failed.value.message().startswith("step 'scale' (model not-loaded) failed: ")
    assert triton.server_live(server.url)


@pytest.mark.integration
@pytest.mark.parametrize("mangle, reason", [
    (lambda plan: plan["steps"].pop(1), "reads ['switch.hi'], which no graph input or earlier step provides"),
    (lambda plan: plan["outputs"].append({"name": "z", "ref": "merge.y"}),
     "has outputs ['negated', 'y', 'z'], its config ['negated', 'y']"),
    (lambda plan: plan["steps"][0]["output_specs"].clear(), "has no datatype and shape for output 'double.y'"),
])
def test_a_plan_that_cannot_run_fails_the_load_with_the_reason(server, mangle, reason):
    plan = json.loads(json.dumps(SWITCH_PLAN))
    mangle(plan)
    with pytest.raises(triton.TritonError) as refused:
        server.graph_load("bad_graph", plan, *SWITCH_IO)
    assert "The graph's plan" in str(refused.value) and reason in str(refused.value)
    assert triton.server_live(server.url)


@pytest.mark.integration
def test_concurrent_requests_are_each_answered_and_a_bad_one_fails_alone(server, client):
    before = {name: triton.model_statistics(server.url, name)[0] for name in ("switch_graph", "lookup_graph")}
    rng = np.random.default_rng(7)
    xs = [rng.normal(size=(int(rng.integers(1, 6)), 4)).astype(np.float32) for _ in range(24)]
    indices = [np.array([[i]], np.int64) for i in (0, 3, 5, 7, 10, 9, 2, 4, 6)]  # 10 is past the table
    # tritonclient's HTTP client is not thread-safe; its async_infer sends concurrently.
    looked = [client.async_infer("lookup_graph", [infer_input("i", i)]) for i in indices]
    switched = [client.async_infer("switch_graph", [infer_input("x", x)]) for x in xs]

    for i, pending in zip(indices, looked, strict=True):
        if i[0, 0] == 10:
            with pytest.raises(InferenceServerException, match="step 'lookup' \\(model lookup\\) failed: .*idx=10"):
                pending.get_result()
        else:
            np.testing.assert_array_equal(pending.get_result().as_numpy("y"),
                                          [(np.arange(4, dtype=np.float32) + 4 * i[0, 0]) * 2])
    for x, pending in zip(xs, switched, strict=True):
        result, (expected, negated) = pending.get_result(), switch_expected(x)
        np.testing.assert_array_equal(result.as_numpy("y"), expected)
        np.testing.assert_array_equal(result.as_numpy("negated"), negated)
    # The orchestrators took the requests in batches, not one by one.
    for name, sent in (("switch_graph", len(xs)), ("lookup_graph", len(indices))):
        [after] = triton.model_statistics(server.url, name)
        assert after["execution_count"] - before[name]["execution_count"] < sent, f"{name} ran one by one"


@pytest.mark.parametrize("datatype, shape, dtype, empty_shape", [
    ("FP32", [-1, 64], np.float32, (0, 64)),
    ("INT64", [-1, -1, 3], np.int64, (0, 0, 3)),
    ("BOOL", [-1], np.bool_, (0,)),
    ("FP16", [-1, 2], np.float16, (0, 2)),
    ("BYTES", [-1, 1], np.object_, (0, 1)),
])
def test_zero_row_outputs_take_the_planned_dtype_and_shape(monkeypatch, tmp_path, datatype, shape, dtype,
                                                           empty_shape):
    monkeypatch.syspath_prepend(str(pytriton_root() / "tritonserver" / "backends" / "python"))
    from workers.triton.orchestrator_model import plan_read

    plan = {"batched": True, "inputs": ["x"], "outputs": [{"name": "y", "ref": "s.y"}],
            "steps": [{"model": "m", "nodes": ["s"], "inputs": {"x": "x"}, "outputs": {"y": "s.y"},
                       "output_specs": {"s.y": {"datatype": datatype, "shape": shape}}}]}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    _, _, _, [only] = plan_read(str(tmp_path / "plan.json"))
    assert only.empty == {"s.y": (dtype, empty_shape)}
    assert np.empty(empty_shape, dtype).dtype == np.dtype(dtype)

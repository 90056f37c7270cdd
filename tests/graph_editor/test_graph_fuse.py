"""Fusing a graph into one ONNX model: the fused model passes the checker and answers what
its steps answer one by one in onnxruntime, on real digits images, for the three-node graph
and for both branches of the switch graph; a tenant model at another opset is upgraded; an
invalid graph and another tenant's model version are refused.

The latency of the fused model against the chain of step sessions is printed (run with -s)."""
import time

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from gateway.contract.errors import PlatformError
from graph_editor.graphs.fuse import graph_fuse, graph_steps
from graph_editor.samples import digits_dataset, digits_fallback_classifier_onnx
from graph_editor.services import model_version_upload

LABELS = [f"digit {d}" for d in range(10)]


def tensor(name, datatype, shape):
    return {"name": name, "datatype": datatype, "shape": shape}


def edges(*pairs):
    return [{"from": source, "to": target} for source, target in pairs]


def three_node_spec(classifier: int) -> dict:
    """in.image UINT8[batch, 8, 8] -> cast, scale, reshape [-1, 64] -> the digits classifier
    -> topk -> label lookup -> out (name, score)."""
    return {
        "nodes": [{"id": "in", "kind": "input", "tensors": [tensor("image", "UINT8", [-1, 8, 8])]},
                  {"id": "prep", "kind": "op", "op": "cast", "params": {"to": "FP32"}},
                  {"id": "norm", "kind": "op", "op": "scale", "params": {"scale": 1.0}},
                  {"id": "flat", "kind": "op", "op": "reshape", "params": {"shape": [-1, 64]}},
                  {"id": "clf", "kind": "model", "model_version": classifier},
                  {"id": "top", "kind": "op", "op": "topk", "params": {"k": 1}},
                  {"id": "names", "kind": "op", "op": "label_lookup", "params": {"labels": LABELS}},
                  {"id": "out", "kind": "output"}],
        "edges": edges(("in.image", "prep.x"), ("prep.y", "norm.x"), ("norm.y", "flat.x"), ("flat.y", "clf.X"),
                       ("clf.probabilities", "top.x"), ("top.indices", "names.x"), ("names.y", "out.name"),
                       ("top.values", "out.score")),
    }


def switch_spec(classifier: int, fallback: int, threshold: float) -> dict:
    """cast, flatten -> the digits classifier -> topk; when its top score is below threshold
    the fallback classifier answers the label instead; label lookup -> out (label, name, score)."""
    return {
        "nodes": [{"id": "in", "kind": "input", "tensors": [tensor("image", "UINT8", [-1, 8, 8])]},
                  {"id": "prep", "kind": "op", "op": "cast", "params": {"to": "FP32"}},
                  {"id": "flat", "kind": "op", "op": "flatten"},
                  {"id": "clf", "kind": "model", "model_version": classifier},
                  {"id": "top", "kind": "op", "op": "topk", "params": {"k": 1}},
                  {"id": "unsure", "kind": "switch", "params": {"op": "lt", "value": threshold, "reduce": "any"}},
                  {"id": "fb", "kind": "model", "model_version": fallback},
                  {"id": "pick", "kind": "op", "op": "merge"},
                  {"id": "names", "kind": "op", "op": "label_lookup", "params": {"labels": LABELS}},
                  {"id": "out", "kind": "output"}],
        "edges": edges(("in.image", "prep.x"), ("prep.y", "flat.x"), ("flat.y", "clf.X"),
                       ("clf.probabilities", "top.x"), ("flat.y", "unsure.x"), ("top.values", "unsure.when"),
                       ("unsure.then", "fb.X"), ("fb.label", "pick.then"), ("clf.label", "pick.else"),
                       ("pick.y", "names.x"), ("pick.y", "out.label"), ("names.y", "out.name"),
                       ("top.values", "out.score")),
    }


def images(batch: int) -> np.ndarray:
    features, _ = digits_dataset()
    return features[100:100 + batch].reshape(batch, 8, 8).astype(np.uint8)


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # the same for the fused model and every step: a fair comparison
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


class Chain:
    """The graph's steps run one by one, each its own onnxruntime session fed by the outputs
    of the steps before it: what the fused model must answer."""

    def __init__(self, tenant, spec):
        _, self.steps = graph_steps(tenant=tenant, spec=spec)
        self.sessions = [session(step.model) for step in self.steps]
        self.outputs = {e["to"].split(".", 1)[1]: e["from"] for e in spec["edges"] if e["to"].startswith("out.")}

    def run(self, image: np.ndarray) -> dict[str, np.ndarray]:
        values = {"in.image": image}
        for step, step_session in zip(self.steps, self.sessions, strict=True):
            feeds = {port: values[source] for port, source in step.feeds.items()}
            names = [o.name for o in step_session.get_outputs()]
            values.update((f"{step.node}.{name}", value) for name, value in
                          zip(names, step_session.run(None, feeds), strict=True))
        return {name: values[source] for name, source in self.outputs.items()}


def fused_run(fused_session: ort.InferenceSession, image: np.ndarray) -> dict[str, np.ndarray]:
    names = [o.name for o in fused_session.get_outputs()]
    return dict(zip(names, fused_session.run(None, {"image": image}), strict=True))


def assert_same(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for name, value in want.items():
        assert got[name].shape == value.shape, name
        if value.dtype == object:
            assert got[name].tolist() == value.tolist(), name
        else:
            np.testing.assert_array_equal(got[name], value, err_msg=name)


def median_ms(call, image, repeat=300) -> float:
    for _ in range(20):
        call(image)
    timings = []
    for _ in range(repeat):
        start = time.perf_counter()
        call(image)
        timings.append(time.perf_counter() - start)
    return float(np.median(timings)) * 1000


@pytest.fixture(autouse=True)
def storage(settings, tmp_path):
    settings.MODEL_STORAGE_DIR = tmp_path / "models"


# (graph, the spec for (classifier, fallback), whether the fallback answers)
GRAPHS = [
    ("three-node", lambda clf, fb: three_node_spec(clf), None),
    ("switch-to-the-fallback", lambda clf, fb: switch_spec(clf, fb, threshold=1.01), True),
    ("switch-kept", lambda clf, fb: switch_spec(clf, fb, threshold=0.0), False),
]


@pytest.mark.django_db
@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("graph, make_spec, falls_back", GRAPHS, ids=[g[0] for g in GRAPHS])
def test_the_fused_model_answers_what_its_steps_answer_one_by_one(acme, digits, fallback, graph, make_spec,
                                                                 falls_back, batch):
    spec = make_spec(digits.pk, fallback.pk)
    fused = graph_fuse(tenant=acme, spec=spec)
    onnx.checker.check_model(fused.model, full_check=True)
    chain = Chain(acme, spec)
    assert fused.steps == [step.node for step in chain.steps]
    assert fused.inputs == [tensor("image", "UINT8", [-1, 8, 8])]
    fused_session = session(fused.model)
    assert [(i.name, i.type) for i in fused_session.get_inputs()] == [("image", "tensor(uint8)")]
    assert [o.name for o in fused_session.get_outputs()] == [o["name"] for o in fused.outputs]

    image = images(batch)
    got, want = fused_run(fused_session, image), chain.run(image)
    assert_same(got, want)
    assert got["score"].shape == (batch, 1)
    if falls_back is not None:
        fallback_labels = session(onnx.load(str(fallback.absolute_path))).run(
            ["label"], {"X": image.reshape(batch, 64).astype(np.float32)})[0]
        main_labels = session(onnx.load(str(digits.absolute_path))).run(
            ["label"], {"X": image.reshape(batch, 64).astype(np.float32)})[0]
        np.testing.assert_array_equal(got["label"], fallback_labels if falls_back else main_labels)
        assert got["name"].tolist() == [LABELS[i] for i in got["label"]]

    fused_ms, chain_ms = median_ms(lambda x: fused_run(fused_session, x), image), median_ms(chain.run, image)
    print(f"\n[latency] {graph} batch {batch}: fused {fused_ms:.3f} ms, chain of {len(chain.steps)} step sessions "
          f"{chain_ms:.3f} ms ({chain_ms / fused_ms:.1f}x)")


@pytest.mark.django_db
@pytest.mark.parametrize("opset", [15, 19])
def test_a_model_at_another_opset_is_fused_at_the_higher_one(acme, digits_onnx, opset):
    """A tenant model below the op library's opset is upgraded; one above it has the ops upgraded."""
    model = onnx.load_from_string(digits_onnx)
    for entry in model.opset_import:
        if entry.domain == "":
            entry.version = opset  # LinearClassifier and Normalizer are ai.onnx.ml: no default-domain op changes
    model.ir_version = max(model.ir_version, onnx.helper.find_min_ir_version_for(list(model.opset_import)))
    version = model_version_upload(tenant=acme, model_name="digits-other-opset", chunks=[model.SerializeToString()])
    spec = three_node_spec(version.pk)
    fused = graph_fuse(tenant=acme, spec=spec)
    assert fused.opset == max(opset, 17)
    assert fused.upgraded == (["clf"] if opset < 17 else ["prep", "norm", "flat", "top", "names"])
    image = images(8)
    assert_same(fused_run(session(fused.model), image), Chain(acme, spec).run(image))


@pytest.mark.django_db
def test_another_tenants_model_version_is_refused(acme, globex, digits_onnx):
    theirs = model_version_upload(tenant=globex, model_name="digits", chunks=[digits_onnx])
    with pytest.raises(PlatformError) as refused:
        graph_fuse(tenant=acme, spec=three_node_spec(theirs.pk))
    assert refused.value.code == "invalid_graph"
    assert f"model version {theirs.pk} does not exist in this tenant" in refused.value.message
    assert graph_fuse(tenant=globex, spec=three_node_spec(theirs.pk)).steps


def test_an_invalid_graph_is_refused():
    spec = {"nodes": [{"id": "in", "kind": "input", "tensors": [tensor("x", "FP32", [-1, 4])]},
                      {"id": "sm", "kind": "op", "op": "softmax"}, {"id": "out", "kind": "output"}],
            "edges": edges(("sm.y", "out.probs"))}
    with pytest.raises(PlatformError) as refused:
        graph_fuse(tenant=None, spec=spec)
    assert refused.value.code == "invalid_graph"
    assert "sm.x is not connected" in refused.value.message


# Ops only (no database): a switch whose else branch is a tensor from before it, and an
# output that passes an input through.
DAMPED = {
    "nodes": [{"id": "in", "kind": "input", "tensors": [tensor("x", "FP32", [-1, 4])]},
              {"id": "sm", "kind": "op", "op": "softmax"},
              {"id": "top", "kind": "op", "op": "topk", "params": {"k": 1}},
              {"id": "sw", "kind": "switch", "params": {"op": "lt", "value": 0.9}},
              {"id": "damp", "kind": "op", "op": "scale", "params": {"scale": 0.5}},
              {"id": "pick", "kind": "op", "op": "merge"},
              {"id": "out", "kind": "output"}],
    "edges": edges(("in.x", "sm.x"), ("sm.y", "top.x"), ("sm.y", "sw.x"), ("top.values", "sw.when"),
                   ("sw.then", "damp.x"), ("damp.y", "pick.then"), ("sm.y", "pick.else"), ("pick.y", "out.probs"),
                   ("in.x", "out.raw")),
}


@pytest.mark.parametrize("rows, damped", [([[1, 0, 0, 0], [5, 0, 0, 0]], True), ([[9, 0, 0, 0], [9, 0, 0, 1]], False)])
def test_a_switch_over_a_default_answers_per_request(tmp_path, rows, damped):
    fused = graph_fuse(tenant=None, spec=DAMPED)
    x = np.array(rows, dtype=np.float32)
    softmax = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC  # where Identity goes
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    got = dict(zip(["probs", "raw"], ort.InferenceSession(fused.model.SerializeToString(), options,
                                                          providers=["CPUExecutionProvider"]).run(None, {"x": x}),
                   strict=True))
    np.testing.assert_allclose(got["probs"], softmax * 0.5 if damped else softmax, rtol=1e-6)
    np.testing.assert_array_equal(got["raw"], x)
    # The Identity nodes that wire the steps are gone once onnxruntime has loaded the model
    # (at its basic optimization level, the lowest on by default);
    # only the one passing an input through to an output is left.
    optimized = onnx.load(str(tmp_path / "optimized.onnx"))
    assert [n.op_type for n in optimized.graph.node].count("Identity") == 1


def test_an_output_named_as_an_input_is_refused():
    spec = {**DAMPED, "edges": [e for e in DAMPED["edges"] if e["to"] != "out.raw"] + edges(("sm.y", "out.x"))}
    with pytest.raises(PlatformError) as refused:
        graph_fuse(tenant=None, spec=spec)
    assert refused.value.code == "unfusable"
    assert "graph output 'x' has the name of a graph input" in refused.value.message

"""The built-in ops: each one's ONNX form passes the checker, runs in onnxruntime and answers
what numpy answers; ONNX shape inference agrees with the op's own; bad params and bad input
types are refused with a message naming the param or the port."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from graph_editor.graphs.ops import OPS, SWITCH, InvalidParams, OpError, get_op, op_catalogue
from graph_editor.graphs.types import KSERVE_TO_NUMPY, KSERVE_TO_ONNX, DimUnifier, TensorType, format_dims

rng = np.random.default_rng(7)


def T(datatype, *dims):
    return TensorType(datatype, dims)


def floats(*shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


IMAGE = rng.integers(0, 17, size=(2, 8, 8)).astype(np.uint8)
ROWS = floats(3, 5)
A, B = floats(3, 4), floats(3, 4)
COND = np.array([True, False, True])
SCORES = np.array([[0.95], [0.5]], dtype=np.float32)
SURE = np.array([[0.95], [0.99]], dtype=np.float32)
X23 = floats(2, 3)


def switched(x, when, passes):
    taken = passes(when).any()
    return {"then": x if taken else x[:0], "else": x[:0] if taken else x}


# (case id, op, params, input types, feeds, numpy's answer)
CASES = [
    ("cast-uint8-to-fp32", "cast", {"to": "FP32"}, {"x": T("UINT8", "batch", 8, 8)}, {"x": IMAGE},
     lambda f: {"y": f["x"].astype(np.float32)}),
    ("cast-int64-to-bytes", "cast", {"to": "BYTES"}, {"x": T("INT64", "batch")}, {"x": np.array([3, -1, 20])},
     lambda f: {"y": np.array(["3", "-1", "20"], dtype=object)}),
    ("scale", "scale", {"scale": 1 / 16, "shift": -0.5}, {"x": T("FP32", "batch", 8, 8)},
     {"x": IMAGE.astype(np.float32)}, lambda f: {"y": f["x"] / 16 - 0.5}),
    ("scale-fp64-default-shift", "scale", {"scale": 2}, {"x": T("FP64", "batch", 5)}, {"x": ROWS.astype(np.float64)},
     lambda f: {"y": f["x"] * 2}),
    ("normalize-scalars", "normalize", {"mean": 0.5, "std": 2}, {"x": T("FP32", "batch", 5)}, {"x": ROWS},
     lambda f: {"y": (f["x"] - 0.5) / 2}),
    ("normalize-per-channel", "normalize", {"mean": [0.1, 0.2, 0.3], "std": [1, 2, 4]},
     {"x": T("FP32", "batch", 3, 2, 2)}, {"x": floats(2, 3, 2, 2)},
     lambda f: {"y": (f["x"] - np.array([0.1, 0.2, 0.3])[:, None, None]) / np.array([1, 2, 4])[:, None, None]}),
    ("normalize-last-axis", "normalize", {"mean": [0, 1, 2, 3, 4], "std": 3, "axis": -1},
     {"x": T("FP32", "batch", 5)}, {"x": ROWS}, lambda f: {"y": (f["x"] - np.arange(5)) / 3}),
    ("reshape", "reshape", {"shape": [-1, 64]}, {"x": T("UINT8", "batch", 8, 8)}, {"x": IMAGE},
     lambda f: {"y": f["x"].reshape(-1, 64)}),
    ("reshape-keep-dim", "reshape", {"shape": [0, 4, 16]}, {"x": T("FP32", "batch", 8, 8)},
     {"x": IMAGE.astype(np.float32)}, lambda f: {"y": f["x"].reshape(-1, 4, 16)}),
    ("flatten", "flatten", {}, {"x": T("UINT8", "batch", 8, 8)}, {"x": IMAGE},
     lambda f: {"y": f["x"].reshape(2, 64)}),
    ("flatten-axis-2", "flatten", {"axis": 2}, {"x": T("UINT8", "batch", 8, 8)}, {"x": IMAGE},
     lambda f: {"y": f["x"].reshape(16, 8)}),
    ("concat-three", "concat", {"n": 3}, {"x0": T("FP32", "batch", 2), "x1": T("FP32", "batch", 3),
                                          "x2": T("FP32", "batch", 1)},
     {"x0": floats(4, 2), "x1": floats(4, 3), "x2": floats(4, 1)},
     lambda f: {"y": np.concatenate([f["x0"], f["x1"], f["x2"]], axis=-1)}),
    ("slice", "slice", {"starts": [1], "ends": [4], "axes": [1]}, {"x": T("FP32", "batch", 5)}, {"x": ROWS},
     lambda f: {"y": f["x"][:, 1:4]}),
    ("slice-reversed-to-the-end", "slice", {"starts": [-1], "ends": [-(2**40)], "axes": [-1], "steps": [-1]},
     {"x": T("FP32", "batch", 5)}, {"x": ROWS}, lambda f: {"y": f["x"][:, ::-1]}),
    ("softmax", "softmax", {}, {"x": T("FP32", "batch", 5)}, {"x": ROWS}, lambda f: {"y": softmax(f["x"])}),
    ("argmax", "argmax", {}, {"x": T("FP32", "batch", 5)}, {"x": ROWS}, lambda f: {"y": f["x"].argmax(-1)}),
    ("argmax-keepdims-uint8", "argmax", {"axis": 1, "keepdims": True}, {"x": T("UINT8", "batch", 8, 8)},
     {"x": IMAGE}, lambda f: {"y": f["x"].argmax(1)[:, None, :]}),
    ("topk", "topk", {"k": 3}, {"x": T("FP32", "batch", 5)}, {"x": ROWS},
     lambda f: {"values": -np.sort(-f["x"], -1)[:, :3], "indices": np.argsort(-f["x"], -1)[:, :3]}),
    ("topk-smallest", "topk", {"k": 2, "largest": False}, {"x": T("INT64", "batch", 5)},
     {"x": np.array([[5, 1, 4, 2, 3], [9, 8, 7, 6, 0]])},
     lambda f: {"values": np.sort(f["x"], -1)[:, :2], "indices": np.argsort(f["x"], -1)[:, :2]}),
    ("compare-lt", "compare", {"op": "lt", "value": 0.5}, {"x": T("FP32", "batch", 5)}, {"x": ROWS},
     lambda f: {"y": f["x"] < 0.5}),
    ("compare-ne-int64", "compare", {"op": "ne", "value": 3}, {"x": T("INT64", "batch")},
     {"x": np.array([1, 3, 5])}, lambda f: {"y": f["x"] != 3}),
    ("compare-gt-fraction-uint8", "compare", {"op": "gt", "value": 7.5}, {"x": T("UINT8", "batch", 8, 8)},
     {"x": IMAGE}, lambda f: {"y": f["x"] > 7.5}),
    ("compare-le-beyond-uint8", "compare", {"op": "le", "value": 300}, {"x": T("UINT8", "batch", 8, 8)},
     {"x": IMAGE}, lambda f: {"y": np.ones_like(f["x"], dtype=bool)}),
    ("where", "where", {}, {"cond": T("BOOL", "batch"), "a": T("FP32", "batch", 4), "b": T("FP32", "batch", 4)},
     {"cond": COND, "a": A, "b": B}, lambda f: {"y": np.where(f["cond"][:, None], f["a"], f["b"])}),
    ("where-column-cond", "where", {}, {"cond": T("BOOL", "batch", 1), "a": T("INT64", "batch"),
                                        "b": T("INT64", "batch")},
     {"cond": COND[:, None], "a": np.array([1, 2, 3]), "b": np.array([7, 8, 9])},
     lambda f: {"y": np.array([1, 8, 3])}),
    ("label-lookup", "label_lookup", {"labels": ["zero", "one", "two"], "default": "?"}, {"x": T("INT64", "batch")},
     {"x": np.array([0, 2, 7, -1])}, lambda f: {"y": np.array(["zero", "two", "?", "?"], dtype=object)}),
    ("merge-not-taken", "merge", {}, {"then": T("FP32", "batch", 3), "else": T("FP32", "batch", 3)},
     {"then": X23[:0], "else": X23}, lambda f: {"y": f["else"]}),
    ("merge-taken", "merge", {}, {"then": T("FP32", "batch", 3), "else": T("FP32", "batch", 3)},
     {"then": X23, "else": X23[:0]}, lambda f: {"y": f["then"]}),
    ("merge-taken-over-a-default", "merge", {}, {"then": T("INT64", "batch"), "else": T("INT64", "batch")},
     {"then": np.array([7, 8]), "else": np.array([1, 2])}, lambda f: {"y": f["then"]}),
    ("switch-taken", "switch", {"op": "lt", "value": 0.9}, {"x": T("FP32", "batch", 3), "when": T("FP32", "batch", 1)},
     {"x": X23, "when": SCORES}, lambda f: switched(f["x"], f["when"], lambda w: w < 0.9)),
    ("switch-not-taken", "switch", {"op": "lt", "value": 0.9}, {"x": T("FP32", "batch", 3),
                                                                "when": T("FP32", "batch", 1)},
     {"x": X23, "when": SURE}, lambda f: switched(f["x"], f["when"], lambda w: w < 0.9)),
    ("switch-all", "switch", {"op": "ge", "value": 0.9, "reduce": "all"},
     {"x": T("INT64", "batch"), "when": T("FP32", "batch", 1)}, {"x": np.array([4, 2]), "when": SCORES},
     lambda f: switched(f["x"], f["when"], lambda w: np.array((w >= 0.9).all()))),
]


def op_named(name):
    return SWITCH if name == "switch" else get_op(name)


@pytest.mark.parametrize("case, name, params, inputs, feeds, expected", CASES, ids=[c[0] for c in CASES])
def test_the_onnx_form_runs_and_answers_what_numpy_answers(case, name, params, inputs, feeds, expected):
    model = op_named(name).build(params, inputs)
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(inputs)
    answers = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds), strict=True))
    for port, want in expected(feeds).items():
        got = answers[port]
        assert got.shape == want.shape, port
        if got.dtype == object:
            assert got.tolist() == want.tolist()
        else:
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case, name, params, inputs, feeds, expected", CASES, ids=[c[0] for c in CASES])
def test_onnx_shape_inference_agrees_with_the_op(case, name, params, inputs, feeds, expected):
    op = op_named(name)
    ours = op.infer(params, inputs)
    model = op.build(params, inputs)
    for output in model.graph.output:
        output.type.tensor_type.ClearField("shape")
        output.type.tensor_type.elem_type = 0
    inferred = {o.name: o.type.tensor_type for o in onnx.shape_inference.infer_shapes(model, strict_mode=True)
                .graph.output}
    for port, tensor in ours.items():
        theirs = inferred[port]
        assert theirs.elem_type == KSERVE_TO_ONNX[tensor.datatype], port
        assert len(theirs.shape.dim) == tensor.rank, port
        for ours_dim, their_dim in zip(tensor.dims, theirs.shape.dim, strict=True):
            if their_dim.HasField("dim_value"):
                assert ours_dim in (their_dim.dim_value, None), (port, format_dims(tensor.dims))
            if isinstance(ours_dim, int):
                assert their_dim.dim_value == ours_dim, (port, format_dims(tensor.dims))


@pytest.mark.parametrize("case, name, params, inputs, feeds, expected", CASES, ids=[c[0] for c in CASES])
def test_symbolic_dims_stay_symbolic_in_the_built_model(case, name, params, inputs, feeds, expected):
    op = op_named(name)
    model = op.build(params, inputs)
    assert model.opset_import[0].version == 17 and model.ir_version == 8
    declared = {**inputs, **op.infer(params, inputs)}
    assert inputs[next(iter(inputs))].dims[0] == "batch"
    for value in list(model.graph.input) + list(model.graph.output):
        dims = [d.dim_param or d.dim_value or None for d in value.type.tensor_type.shape.dim]
        assert dims == list(declared[value.name].dims), value.name


# Each op with params and shapes that any datatype it accepts can take.
SAMPLES = {
    "cast": ({"to": "FP32"}, {"x": ("batch", 3)}), "scale": ({"scale": 2}, {"x": ("batch", 3)}),
    "normalize": ({"mean": [1, 2, 3], "std": 2}, {"x": ("batch", 3)}),
    "reshape": ({"shape": [-1, 3, 1]}, {"x": ("batch", 3)}), "flatten": ({}, {"x": ("batch", 3, 1)}),
    "concat": ({}, {"x0": ("batch", 3), "x1": ("batch", 3)}),
    "slice": ({"starts": [1], "ends": [3], "axes": [1]}, {"x": ("batch", 3)}),
    "softmax": ({}, {"x": ("batch", 3)}), "argmax": ({}, {"x": ("batch", 3)}), "topk": ({"k": 2}, {"x": ("batch", 3)}),
    "compare": ({"op": "ge", "value": 0.5}, {"x": ("batch", 3)}),
    "where": ({}, {"cond": ("batch",), "a": ("batch", 3), "b": ("batch", 3)}),
    "label_lookup": ({"labels": ["a", "b"]}, {"x": ("batch",)}),
    "merge": ({}, {"then": ("batch", 3), "else": ("batch", 3)}),
    "switch": ({"op": "lt", "value": 0.5}, {"x": ("batch", 3), "when": ("batch", 1)}),
}


def sample(datatype, dims):
    shape = [2 if d == "batch" else d for d in dims]
    if datatype == "BYTES":
        return np.full(shape, "1", dtype=object)
    return np.ones(shape, dtype=KSERVE_TO_NUMPY[datatype])


ACCEPTED = [(name, datatype) for name, op in [*OPS.items(), ("switch", SWITCH)]
            for datatype in op.catalogue_entry()["accepts"][op.inputs[0]]]


@pytest.mark.parametrize("name, datatype", ACCEPTED, ids=[f"{n}-{d}" for n, d in ACCEPTED])
def test_every_datatype_an_op_accepts_runs_in_onnxruntime(name, datatype):
    op = op_named(name)
    params, shapes = SAMPLES[name]
    accepts = op.catalogue_entry()["accepts"]
    types = {port: T(datatype if datatype in accepts[port] else accepts[port][0], *dims)
             for port, dims in shapes.items()}
    model = op.build(params, types)
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    answers = session.run(None, {port: sample(t.datatype, t.dims) for port, t in types.items()})
    inferred = op.infer(params, types)
    for port, answer in zip(op.outputs, answers, strict=True):
        assert answer.dtype == KSERVE_TO_NUMPY[inferred[port].datatype] or inferred[port].datatype == "BYTES"


@pytest.mark.parametrize("datatype", sorted(KSERVE_TO_ONNX))
def test_cast_reaches_every_datatype(datatype):
    model = get_op("cast").build({"to": datatype}, {"x": T("FP32", "batch", 2)})
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (answer,) = session.run(None, {"x": np.array([[1, 0], [2, 3]], dtype=np.float32)})
    assert answer.tolist() == np.array([[1, 0], [2, 3]], dtype=np.float32).astype(KSERVE_TO_NUMPY[datatype]).tolist() \
        or datatype == "BYTES"


def test_inference_keeps_symbols_and_computes_fixed_dims():
    image = T("UINT8", "batch", 8, 8)
    assert get_op("flatten").infer({}, {"x": image})["y"] == T("UINT8", "batch", 64)
    assert get_op("reshape").infer({"shape": [-1, 64]}, {"x": image})["y"] == T("UINT8", "batch", 64)
    assert get_op("reshape").infer({"shape": [2, -1]}, {"x": T("FP32", 4, 8)})["y"] == T("FP32", 2, 16)
    assert get_op("topk").infer({"k": 1}, {"x": T("FP32", "batch", 10)})["indices"] == T("INT64", "batch", 1)
    assert get_op("argmax").infer({}, {"x": T("FP32", "batch", 10)})["y"] == T("INT64", "batch")
    assert get_op("concat").infer({"axis": 0}, {"x0": T("FP32", 2, "n"), "x1": T("FP32", 3, 4)})["y"] == T("FP32", 5, 4)
    assert get_op("slice").infer({"starts": [0], "ends": [2**31 - 1], "axes": [0]}, {"x": image})["y"] == image


def test_ops_share_the_graphs_symbol_bindings():
    dims = DimUnifier()
    dims.unify("n", 4, where="in.x")
    with pytest.raises(OpError) as caught:
        get_op("concat").infer({}, {"x0": T("FP32", "n", 2), "x1": T("FP32", 5, 2)}, dims)
    assert caught.value.code == "shape_mismatch" and caught.value.port == "x1"
    assert "'n' is already 4 at in.x" in caught.value.message


@pytest.mark.parametrize("name, params, param, fragment", [
    ("cast", {}, "to", "param 'to' is required"),
    ("cast", {"to": "FP33"}, "to", "must be one of BOOL"),
    ("scale", {"scale": "2"}, "scale", "must be a number"),
    ("scale", {"factor": 2}, "factor", "unknown param 'factor' (known: scale, shift)"),
    ("normalize", {"std": [1, 0]}, "std", "must not be 0"),
    ("normalize", {"mean": [1, 2], "std": [1, 2, 3]}, "std", "give one per channel in both"),
    ("reshape", {"shape": [-1, -1]}, "shape", "-1 more than once"),
    ("reshape", {"shape": [2, -3]}, "shape", "below -1"),
    ("concat", {"n": 1}, "n", "at least 2"),
    ("slice", {"starts": [0, 1], "ends": [2]}, "ends", "has 1 values but 'starts' has 2"),
    ("slice", {"starts": [0], "ends": [2], "steps": [0]}, "steps", "must not hold 0"),
    ("topk", {"k": 0}, "k", "at least 1"),
    ("argmax", {"keepdims": 1}, "keepdims", "must be true or false"),
    ("compare", {"op": "<", "value": 1}, "op", "must be one of lt, le, gt, ge, eq, ne"),
    ("label_lookup", {"labels": []}, "labels", "at least one label"),
    ("switch", {"op": "lt"}, "value", "param 'value' is required"),
    ("switch", {"op": "lt", "value": 0.9, "reduce": "most"}, "reduce", "must be one of any, all"),
])
def test_bad_params_are_refused_naming_the_param(name, params, param, fragment):
    with pytest.raises(InvalidParams) as caught:
        op_named(name).check_params(params)
    assert any(p == param and fragment in message for p, message in caught.value.problems), caught.value.problems


@pytest.mark.parametrize("name, params, inputs, code, port, fragment", [
    ("scale", {}, {"x": T("UINT8", "batch", 8, 8)}, "dtype_mismatch", "x", "add a cast op"),
    ("softmax", {}, {"x": T("INT64", "batch", 3)}, "dtype_mismatch", "x", "takes FP16, FP32, FP64"),
    ("label_lookup", {"labels": ["a"]}, {"x": T("INT32", "batch")}, "dtype_mismatch", "x", "INT64"),
    ("reshape", {"shape": [0, -1, 60]}, {"x": T("FP32", "batch", 8, 8)}, "shape_mismatch", "x", "change 'shape'"),
    ("reshape", {"shape": [3, 5]}, {"x": T("FP32", 4, 4)}, "shape_mismatch", "x", "16 against 15"),
    ("flatten", {"axis": 4}, {"x": T("FP32", "batch", 8, 8)}, "invalid_params", "x", "use an axis from -4 to 3"),
    ("topk", {"k": 5}, {"x": T("FP32", "batch", 3)}, "invalid_params", "x", "lower 'k'"),
    ("normalize", {"mean": [1, 2, 3]}, {"x": T("FP32", "batch", 4)}, "shape_mismatch", "x", "one per channel"),
    ("concat", {}, {"x0": T("FP32", "batch", 2), "x1": T("INT64", "batch", 2)}, "dtype_mismatch", "x1", "cast"),
    ("concat", {}, {"x0": T("FP32", "batch", 2), "x1": T("FP32", "batch", 2, 1)}, "shape_mismatch", "x1", "rank"),
    ("where", {}, {"cond": T("BOOL", "batch", 2), "a": T("FP32", "batch", 2), "b": T("FP32", "batch", 2)},
     "shape_mismatch", "cond", "one BOOL per row"),
    ("where", {}, {"cond": T("FP32", "batch"), "a": T("FP32", "batch", 2), "b": T("FP32", "batch", 2)},
     "dtype_mismatch", "cond", "BOOL"),
    ("merge", {}, {"then": T("FP32", "batch", 10), "else": T("FP32", "batch", 3)}, "shape_mismatch", "else",
     "differ at dim 1"),
    ("slice", {"starts": [4], "ends": [2], "axes": [1]}, {"x": T("FP32", "batch", 5)}, "shape_mismatch", "x",
     "empty"),
    ("switch", {"op": "lt", "value": 1}, {"x": T("FP32", "batch"), "when": T("BYTES", "batch")},
     "dtype_mismatch", "when", "add a cast op"),
])
def test_bad_input_types_are_refused_naming_the_port(name, params, inputs, code, port, fragment):
    with pytest.raises(OpError) as caught:
        op_named(name).infer(params, inputs)
    assert (caught.value.code, caught.value.port) == (code, port)
    assert fragment in caught.value.message


def test_the_catalogue_lists_every_op_with_its_ports_and_param_schema():
    catalogue = {entry["op"]: entry for entry in op_catalogue()}
    assert set(catalogue) == set(OPS) | {"switch"}
    assert {"cast", "scale", "normalize", "reshape", "flatten", "concat", "slice", "softmax", "argmax", "topk",
            "compare", "where", "label_lookup", "merge"} <= set(OPS)
    assert catalogue["topk"]["outputs"] == ["values", "indices"]
    assert catalogue["where"]["inputs"] == ["cond", "a", "b"]
    assert catalogue["merge"]["inputs"] == ["then", "else"]
    assert catalogue["switch"]["kind"] == "switch" and catalogue["switch"]["outputs"] == ["then", "else"]
    assert catalogue["concat"]["variadic"] == {"prefix": "x", "count_param": "n"}
    assert catalogue["cast"]["params"]["to"]["choices"][-1] == "BYTES"
    for entry in catalogue.values():
        assert entry["doc"] and set(entry["accepts"]) == set(entry["inputs"])
        for param in entry["params"].values():
            assert {"type", "required", "default", "help"} <= set(param)


def test_datatype_tables_agree():
    for datatype, onnx_type in KSERVE_TO_ONNX.items():
        assert onnx.helper.tensor_dtype_to_np_dtype(onnx_type) == KSERVE_TO_NUMPY[datatype] or datatype == "BYTES"

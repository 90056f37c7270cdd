"""Small real models built from data that ships inside packages (nothing is downloaded).

Used by the demo seed and by the tests."""
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=1)
def digits_dataset() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    features, labels = load_digits(return_X_y=True)
    return features.astype(np.float32), labels


@lru_cache(maxsize=1)
def digits_classifier_onnx() -> bytes:
    """scikit-learn's 8x8 digits, a logistic regression, converted with skl2onnx.

    Input X: FP32 [-1, 64]; outputs label: INT64 [-1] and probabilities: FP32 [-1, 10]."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    features, labels = digits_dataset()
    classifier = LogisticRegression(max_iter=2000).fit(features, labels)
    onnx_model = to_onnx(classifier, features[:1], options={id(classifier): {"zipmap": False}}, target_opset=17)
    return onnx_model.SerializeToString()


@lru_cache(maxsize=1)
def digits_fallback_classifier_onnx() -> bytes:
    """A second opinion on the same digits: a small random forest, converted with skl2onnx.

    The same signature as digits_classifier_onnx: input X FP32 [-1, 64]; outputs label
    INT64 [-1] and probabilities FP32 [-1, 10]."""
    from skl2onnx import to_onnx
    from sklearn.ensemble import RandomForestClassifier

    features, labels = digits_dataset()
    classifier = RandomForestClassifier(n_estimators=20, max_depth=8, random_state=0).fit(features, labels)
    onnx_model = to_onnx(classifier, features[:1], options={id(classifier): {"zipmap": False}}, target_opset=17)
    return onnx_model.SerializeToString()


# Models that parse and pass the ONNX checker but attack the runtime. Tests and the
# isolation benchmark use them to show that a tenant's model hurts only its own requests.

def _model(nodes, inputs, outputs, initializers=()) -> bytes:
    from onnx import checker, helper

    graph = helper.make_graph(nodes, "attack", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="platform-samples")
    model.ir_version = 8
    checker.check_model(model)
    return model.SerializeToString()


@lru_cache(maxsize=1)
def memory_hog_onnx() -> bytes:
    """Allocates what the request asks for: input n INT64 [-1, 1] (a row per item),
    output total FP32 [-1, 1], the sum of a ConstantOfShape tensor of max(n) ones, per item.
    A request with n = 1e9 makes the runtime allocate 4 GB for a 4-byte answer."""
    from onnx import TensorProto, helper

    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    nodes = [
        helper.make_node("Shape", ["n"], ["n_shape"]),
        helper.make_node("ReduceMax", ["n"], ["count"], keepdims=1),
        helper.make_node("Reshape", ["count", "flat_shape"], ["count_1d"]),
        helper.make_node("ConstantOfShape", ["count_1d"], ["ones"], value=one),
        helper.make_node("ReduceSum", ["ones"], ["sum"], keepdims=1),
        helper.make_node("Gather", ["n_shape", "zero"], ["batch"], axis=0),
        helper.make_node("Concat", ["batch", "one_i"], ["out_shape"], axis=0),
        helper.make_node("Expand", ["sum", "out_shape"], ["total"]),
    ]
    initializers = [
        helper.make_tensor("flat_shape", TensorProto.INT64, [1], [1]),
        helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
        helper.make_tensor("one_i", TensorProto.INT64, [1], [1]),
    ]
    return _model(nodes, [helper.make_tensor_value_info("n", TensorProto.INT64, ["N", 1])],
                  [helper.make_tensor_value_info("total", TensorProto.FLOAT, ["N", 1])], initializers)


@lru_cache(maxsize=1)
def expand_bomb_onnx() -> bytes:
    """A constant Expand to [2^20, 2^20] (4 TiB of FP32) added to the input: the runtime
    meets it at load (constant folding) or at the first inference. Input x FP32 [-1, 4],
    output y FP32 [-1, 4]."""
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Expand", ["seed", "huge"], ["big"]),
        helper.make_node("ReduceSum", ["big"], ["s"], keepdims=0),
        helper.make_node("Add", ["x", "s"], ["y"]),
    ]
    initializers = [
        helper.make_tensor("seed", TensorProto.FLOAT, [1], [1.0]),
        helper.make_tensor("huge", TensorProto.INT64, [2], [1 << 20, 1 << 20]),
    ]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], initializers)


@lru_cache(maxsize=1)
def constant_bomb_onnx() -> bytes:
    """ConstantOfShape to [2^40] (4 TiB) with a constant shape: input x FP32 [-1, 4],
    output y FP32 [-1, 4] = x + the sum of it."""
    from onnx import TensorProto, helper

    zero = helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0])
    nodes = [
        helper.make_node("ConstantOfShape", ["huge"], ["big"], value=zero),
        helper.make_node("ReduceSum", ["big"], ["s"], keepdims=0),
        helper.make_node("Add", ["x", "s"], ["y"]),
    ]
    initializers = [helper.make_tensor("huge", TensorProto.INT64, [1], [1 << 40])]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], initializers)


DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def digits_pipeline_spec(*, classifier: int, fallback: int, threshold: float = 0.9) -> dict:
    """The demo graph: 8x8 UINT8 digit images, cast and flattened, into the digits
    classifier; its top-1 score decides: below `threshold` the fallback classifier answers
    instead. Out come the label, its name and the top score. `classifier` and `fallback`
    are model version ids."""
    def node(node_id: str, x: int, y: int, **fields) -> dict:
        return {"id": node_id, "position": {"x": x, "y": y}, **fields}

    def edge(source: str, target: str) -> dict:
        return {"from": source, "to": target}

    return {
        "nodes": [
            node("in", 0, 120, kind="input",
                 tensors=[{"name": "image", "datatype": "UINT8", "shape": [-1, 8, 8]}]),
            node("prep", 220, 120, kind="op", op="cast", params={"to": "FP32"}),
            node("flat", 440, 120, kind="op", op="flatten"),
            node("clf", 660, 40, kind="model", model_version=classifier),
            node("top", 880, 40, kind="op", op="topk", params={"k": 1}),
            node("unsure", 1100, 200, kind="switch", params={"op": "lt", "value": threshold, "reduce": "any"}),
            node("fallback", 1320, 200, kind="model", model_version=fallback),
            node("pick", 1540, 120, kind="op", op="merge"),
            node("names", 1760, 120, kind="op", op="label_lookup", params={"labels": DIGIT_NAMES}),
            node("out", 1980, 120, kind="output"),
        ],
        "edges": [
            edge("in.image", "prep.x"), edge("prep.y", "flat.x"), edge("flat.y", "clf.X"),
            edge("clf.probabilities", "top.x"), edge("flat.y", "unsure.x"), edge("top.values", "unsure.when"),
            edge("unsure.then", "fallback.X"), edge("fallback.label", "pick.then"), edge("clf.label", "pick.else"),
            edge("pick.y", "names.x"), edge("pick.y", "out.label"), edge("names.y", "out.name"),
            edge("top.values", "out.score"),
        ],
    }

"""Ops that turn scores into answers: softmax, argmax, topk, label_lookup."""
from onnx import helper

from graph_editor.graphs.ops.base import AXIS_HELP, ML_OPSET, OPSET, Op, OpError, Param, normalize_axis, require_rank
from graph_editor.graphs.types import FLOATS, format_dims, numpy_constant

# The datatypes onnxruntime's CPU kernels take for ArgMax and TopK.
ARGMAX_TYPES = ("UINT8", "INT8", "INT32", "INT64") + FLOATS
TOPK_TYPES = ("UINT8", "INT8", "INT16", "INT32", "INT64") + FLOATS
MAX_LABELS = 65536


class Softmax(Op):
    name = "softmax"
    doc = "y = exp(x) / sum(exp(x)) along `axis`: scores to probabilities."
    params = {"axis": Param("integer", "the axis that sums to 1; " + AXIS_HELP, default=-1)}
    accepts = {"x": FLOATS}

    def shape(self, params, inputs, dims):
        x = inputs["x"]
        require_rank(x, "x", 1, "for a softmax")
        normalize_axis(params["axis"], x.rank)
        return {"y": x}

    def nodes(self, params, inputs):
        return [helper.make_node("Softmax", ["x"], ["y"], axis=params["axis"])], []


class ArgMax(Op):
    name = "argmax"
    doc = "y = the index (INT64) of the largest element along `axis`, the first one on ties."
    params = {
        "axis": Param("integer", "the axis searched; " + AXIS_HELP, default=-1),
        "keepdims": Param("boolean", "keep the searched axis as a dim of 1", default=False),
    }
    accepts = {"x": ARGMAX_TYPES}

    def shape(self, params, inputs, dims):
        x = inputs["x"]
        require_rank(x, "x", 1, "to search an axis")
        axis = normalize_axis(params["axis"], x.rank)
        out = list(x.dims)
        if params["keepdims"]:
            out[axis] = 1
        else:
            del out[axis]
        return {"y": x.with_datatype("INT64").with_dims(out)}

    def nodes(self, params, inputs):
        return [helper.make_node("ArgMax", ["x"], ["y"], axis=params["axis"], keepdims=int(params["keepdims"]),
                                 select_last_index=0)], []


class TopK(Op):
    name = "topk"
    doc = "values, indices = the k largest (or smallest) elements along `axis`, sorted, and their INT64 indices."
    outputs = ("values", "indices")
    params = {
        "k": Param("integer", "how many elements to keep", default=1, min=1),
        "axis": Param("integer", "the axis searched; " + AXIS_HELP, default=-1),
        "largest": Param("boolean", "the largest (true) or the smallest (false)", default=True),
    }
    accepts = {"x": TOPK_TYPES}

    def shape(self, params, inputs, dims):
        x = inputs["x"]
        require_rank(x, "x", 1, "to search an axis")
        axis = normalize_axis(params["axis"], x.rank)
        if isinstance(x.dims[axis], int) and x.dims[axis] < params["k"]:
            raise OpError(f"param 'k' is {params['k']} but 'x' {format_dims(x.dims)} has only {x.dims[axis]} "
                          f"elements along axis {axis}: lower 'k'", code="invalid_params", port="x")
        out = list(x.dims)
        out[axis] = params["k"]
        return {"values": x.with_dims(out), "indices": x.with_datatype("INT64").with_dims(out)}

    def nodes(self, params, inputs):
        return ([helper.make_node("TopK", ["x", "k"], ["values", "indices"], axis=params["axis"],
                                  largest=int(params["largest"]), sorted=1)],
                [numpy_constant("k", [params["k"]], "INT64")])


class LabelLookup(Op):
    """ai.onnx.ml's LabelEncoder rather than Gather on a constant BYTES tensor: an index
    outside the list answers `default` instead of failing the whole request (Gather raises
    on it, and reads a negative one from the end), and it maps element by element, so the
    shape passes through for ONNX shape inference as well."""

    name = "label_lookup"
    doc = "y = labels[x] (BYTES) for INT64 class indices x; an index outside the list gives `default`."
    params = {
        "labels": Param("string[]", "the label of each class index, from 0", required=True),
        "default": Param("string", "the answer for an index outside the list", default=""),
    }
    accepts = {"x": ("INT64",)}

    def check(self, params):
        if not params["labels"]:
            return [("labels", "param 'labels' must list at least one label")]
        if len(params["labels"]) > MAX_LABELS:
            return [("labels", f"param 'labels' has {len(params['labels'])} labels; at most {MAX_LABELS}")]
        return []

    def shape(self, params, inputs, dims):
        return {"y": inputs["x"].with_datatype("BYTES")}

    def nodes(self, params, inputs):
        labels = params["labels"]
        return [helper.make_node("LabelEncoder", ["x"], ["y"], domain="ai.onnx.ml",
                                 keys_int64s=list(range(len(labels))), values_strings=labels,
                                 default_string=params["default"])], []

    def opset_imports(self):
        return [helper.make_opsetid("", OPSET), helper.make_opsetid("ai.onnx.ml", ML_OPSET)]


OPS = [Softmax(), ArgMax(), TopK(), LabelLookup()]

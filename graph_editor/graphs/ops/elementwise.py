"""Ops that work element by element: cast, scale, normalize, compare."""
import numpy as np
from onnx import helper

from graph_editor.graphs.ops.base import AXIS_HELP, Op, OpError, Param, datatype_param, normalize_axis, require_rank
from graph_editor.graphs.types import (
    FLOATS,
    KSERVE_TO_NUMPY,
    KSERVE_TO_ONNX,
    NUMERIC,
    DimConflict,
    format_dims,
    numpy_constant,
)

COMPARISONS = ("lt", "le", "gt", "ge", "eq", "ne")
_ONNX_COMPARISON = {"lt": "Less", "le": "LessOrEqual", "gt": "Greater", "ge": "GreaterOrEqual", "eq": "Equal",
                    "ne": "Equal"}


class Cast(Op):
    name = "cast"
    doc = "y = x converted to another datatype (numbers to BYTES give their text)."
    params = {"to": datatype_param("the datatype of y", required=True)}

    def shape(self, params, inputs, dims):
        return {"y": inputs["x"].with_datatype(params["to"])}

    def nodes(self, params, inputs):
        return [helper.make_node("Cast", ["x"], ["y"], to=KSERVE_TO_ONNX[params["to"]])], []


class Scale(Op):
    name = "scale"
    doc = "y = x * scale + shift, for floating-point x (cast integers first)."
    params = {
        "scale": Param("number", "the factor each element is multiplied by", default=1.0),
        "shift": Param("number", "what is added after scaling", default=0.0),
    }
    accepts = {"x": FLOATS}

    def shape(self, params, inputs, dims):
        return {"y": inputs["x"]}

    def nodes(self, params, inputs):
        datatype = inputs["x"].datatype
        return ([helper.make_node("Mul", ["x", "scale"], ["scaled"]),
                 helper.make_node("Add", ["scaled", "shift"], ["y"])],
                [numpy_constant("scale", params["scale"], datatype),
                 numpy_constant("shift", params["shift"], datatype)])


class Normalize(Op):
    name = "normalize"
    doc = ("y = (x - mean) / std, for floating-point x; mean and std are numbers, or lists with one value "
           "per channel along `axis`.")
    params = {
        "mean": Param("number|number[]", "subtracted first: one number, or one per channel", default=0.0),
        "std": Param("number|number[]", "divided by next (never 0): one number, or one per channel", default=1.0),
        "axis": Param("integer", "the channel axis of per-channel lists; " + AXIS_HELP, default=1),
    }
    accepts = {"x": FLOATS}

    def check(self, params):
        problems = []
        std = params["std"] if isinstance(params["std"], list) else [params["std"]]
        if any(s == 0 for s in std):
            problems.append(("std", "param 'std' must not be 0: x would be divided by zero"))
        lists = [name for name in ("mean", "std") if isinstance(params[name], list)]
        if len(lists) == 2 and len(params["mean"]) != len(params["std"]):
            problems.append(("std", f"params 'mean' and 'std' have {len(params['mean'])} and {len(params['std'])} "
                                    "values: give one per channel in both"))
        return problems

    @staticmethod
    def channels(params) -> int | None:
        lengths = [len(params[name]) for name in ("mean", "std") if isinstance(params[name], list)]
        return lengths[0] if lengths else None

    def shape(self, params, inputs, dims):
        x = inputs["x"]
        channels = self.channels(params)
        if channels is None:
            return {"y": x}
        require_rank(x, "x", 1, "for per-channel mean and std")
        axis = normalize_axis(params["axis"], x.rank)
        try:
            dim = dims.unify(x.dims[axis], channels, where="x")
        except DimConflict:
            raise OpError(f"'x' {format_dims(x.dims)} has {x.dims[axis]} at axis {axis} but mean/std have "
                          f"{channels} values: give one per channel or change 'axis'", code="shape_mismatch",
                          port="x") from None
        out = list(x.dims)
        out[axis] = dim
        return {"y": x.with_dims(out)}

    def nodes(self, params, inputs):
        x = inputs["x"]
        channels = self.channels(params)
        if channels is None:
            shape = []
        else:
            axis = normalize_axis(params["axis"], x.rank)
            shape = [channels] + [1] * (x.rank - 1 - axis)

        def constant(name):
            values = np.asarray(params[name], dtype=np.float64)
            if shape and values.ndim == 0:
                values = np.full(channels, values)
            return numpy_constant(name, values.reshape(shape), x.datatype)

        return ([helper.make_node("Sub", ["x", "mean"], ["centred"]),
                 helper.make_node("Div", ["centred", "std"], ["y"])],
                [constant("mean"), constant("std")])


def _holds(datatype: str, value) -> bool:
    """Whether an integer datatype holds value exactly."""
    limits = np.iinfo(KSERVE_TO_NUMPY[datatype])
    return float(value).is_integer() and limits.min <= value <= limits.max


def comparison_nodes(op: str, value, *, x: str, datatype: str, out: str, prefix: str) -> tuple[list, list]:
    """Nodes computing `out = x <op> value` (BOOL). Integers meet a value they cannot hold
    exactly (0.5, 300 for UINT8) as FP64, so the answer is the one arithmetic gives."""
    nodes = []
    if datatype not in FLOATS and not _holds(datatype, value):
        nodes.append(helper.make_node("Cast", [x], [f"{prefix}x64"], to=KSERVE_TO_ONNX["FP64"]))
        x, datatype = f"{prefix}x64", "FP64"
    threshold = numpy_constant(f"{prefix}value", value, datatype)
    compared = f"{prefix}equal" if op == "ne" else out
    nodes.append(helper.make_node(_ONNX_COMPARISON[op], [x, threshold.name], [compared]))
    if op == "ne":
        nodes.append(helper.make_node("Not", [compared], [out]))
    return nodes, [threshold]


class Compare(Op):
    name = "compare"
    doc = "y = x <op> value, element by element (BOOL): a threshold."
    params = {
        "op": Param("string", "the comparison: lt <, le <=, gt >, ge >=, eq ==, ne !=", required=True,
                    choices=COMPARISONS),
        "value": Param("number", "what each element is compared with", required=True),
    }
    accepts = {"x": NUMERIC}

    def shape(self, params, inputs, dims):
        return {"y": inputs["x"].with_datatype("BOOL")}

    def nodes(self, params, inputs):
        return comparison_nodes(params["op"], params["value"], x="x", datatype=inputs["x"].datatype, out="y",
                                prefix="")


OPS = [Cast(), Scale(), Normalize(), Compare()]

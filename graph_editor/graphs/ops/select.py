"""Choosing between tensors: where (per row), and the switch and its merge (per request).

In their ONNX forms a switch passes all of x's rows to the branch it picks and none (a
tensor of 0 rows) to the other, and merge answers `then` when it has rows, `else`
otherwise. An executor that runs only the picked branch joins them itself."""
import numpy as np
from onnx import helper

from graph_editor.graphs.ops.base import Op, OpError, Param, merge_dims, require_rank
from graph_editor.graphs.ops.elementwise import COMPARISONS, comparison_nodes
from graph_editor.graphs.types import FLOATS, KSERVE_TO_ONNX, NUMERIC, DimConflict, format_dims, numpy_constant

# The datatypes onnxruntime's CPU kernel takes for Where.
WHERE_TYPES = ("UINT8", "UINT32", "INT8", "INT32", "INT64") + FLOATS + ("BYTES",)


class Where(Op):
    name = "where"
    doc = ("y = a where cond else b, row by row: cond holds one BOOL per row ([batch] or [batch, 1]); a and b "
           "share a type.")
    inputs = ("cond", "a", "b")
    accepts = {"cond": ("BOOL",), "a": WHERE_TYPES, "b": WHERE_TYPES}

    def shape(self, params, inputs, dims):
        cond = inputs["cond"]
        merged = merge_dims(dims, {"a": inputs["a"], "b": inputs["b"]}, what="where")
        require_rank(inputs["a"], "a", 1, "to have rows")
        if cond.rank < 1 or any(d != 1 for d in cond.dims[1:]):
            raise OpError(f"'cond' has shape {format_dims(cond.dims)}: where takes one BOOL per row, [batch] or "
                          "[batch, 1]; reshape it", code="shape_mismatch", port="cond")
        try:
            merged[0] = dims.unify(merged[0], cond.dims[0], where="cond")
        except DimConflict as exc:
            raise OpError(f"'cond' {format_dims(cond.dims)} and 'a' {format_dims(inputs['a'].dims)} have different "
                          f"rows ({exc}): give one condition per row", code="shape_mismatch", port="cond") from None
        return {"y": inputs["a"].with_dims(merged)}

    def nodes(self, params, inputs):
        rows = [-1] + [1] * (inputs["a"].rank - 1)
        return ([helper.make_node("Reshape", ["cond", "rows"], ["per_row"]),
                 helper.make_node("Where", ["per_row", "a", "b"], ["y"])],
                [numpy_constant("rows", rows, "INT64")])


class Merge(Op):
    name = "merge"
    doc = ("y = `then` when the switch took its then branch, `else` otherwise: `then` comes from a switch's then "
           "branch, `else` from its else branch or from before the switch (the answer kept when the branch does "
           "not run). Both give one type.")
    inputs = ("then", "else")

    def shape(self, params, inputs, dims):
        merged = merge_dims(dims, {"then": inputs["then"], "else": inputs["else"]}, what="merge")
        require_rank(inputs["then"], "then", 1, "to have rows")
        return {"y": inputs["then"].with_dims(merged)}

    def nodes(self, params, inputs):
        # y = then's rows, then else's rows past as many: all of else when the branch did not run
        # (then has none), none of it when it did.
        return ([helper.make_node("Shape", ["then"], ["then_rows_1"], start=0, end=1),
                 helper.make_node("Shape", ["else"], ["else_rows_1"], start=0, end=1),
                 helper.make_node("Reshape", ["then_rows_1", "scalar"], ["then_rows"]),
                 helper.make_node("Reshape", ["else_rows_1", "scalar"], ["else_rows"]),
                 helper.make_node("Range", ["then_rows", "else_rows", "one"], ["kept_rows"]),
                 helper.make_node("Gather", ["else", "kept_rows"], ["kept"], axis=0),
                 helper.make_node("Concat", ["then", "kept"], ["y"], axis=0)],
                [numpy_constant("scalar", np.zeros(0), "INT64"), numpy_constant("one", 1, "INT64")])


class Switch(Op):
    """Not an op node but a node kind of its own ("kind": "switch"); it types and builds as one."""

    name = "switch"
    kind = "switch"
    doc = ("Sends x to `then` when `when <op> value` holds (for any or all of when's elements), to `else` "
           "otherwise: one branch runs per request. Join the branches with a merge op.")
    inputs = ("x", "when")
    outputs = ("then", "else")
    params = {
        "op": Param("string", "the comparison: lt <, le <=, gt >, ge >=, eq ==, ne !=", required=True,
                    choices=COMPARISONS),
        "value": Param("number", "what when's elements are compared with", required=True),
        "reduce": Param("string", "take `then` when any element of when passes, or only when all do",
                        default="any", choices=("any", "all")),
    }
    accepts = {"when": NUMERIC}

    def shape(self, params, inputs, dims):
        require_rank(inputs["x"], "x", 1, "to have rows")
        return {"then": inputs["x"], "else": inputs["x"]}

    def nodes(self, params, inputs):
        compare, constants = comparison_nodes(params["op"], params["value"], x="when",
                                              datatype=inputs["when"].datatype, out="passes", prefix="when_")
        reduce = "ReduceMax" if params["reduce"] == "any" else "ReduceMin"
        # Rows are picked with Gather over a Range, not a Slice with computed ends: ONNX shape
        # inference then keeps every dim but the rows.
        nodes = compare + [
            helper.make_node("Cast", ["passes"], ["passes_int"], to=KSERVE_TO_ONNX["INT64"]),
            helper.make_node(reduce, ["passes_int"], ["taken"], keepdims=0),
            helper.make_node("Shape", ["x"], ["rows_1"], start=0, end=1),
            helper.make_node("Reshape", ["rows_1", "scalar"], ["rows"]),
            helper.make_node("Mul", ["rows", "taken"], ["cut"]),
            helper.make_node("Range", ["zero", "cut", "one"], ["then_rows"]),
            helper.make_node("Range", ["cut", "rows", "one"], ["else_rows"]),
            helper.make_node("Gather", ["x", "then_rows"], ["then"], axis=0),
            helper.make_node("Gather", ["x", "else_rows"], ["else"], axis=0),
        ]
        constants += [numpy_constant("scalar", np.zeros(0), "INT64"), numpy_constant("zero", 0, "INT64"),
                      numpy_constant("one", 1, "INT64")]
        return nodes, constants


OPS = [Where(), Merge()]
SWITCH = Switch()

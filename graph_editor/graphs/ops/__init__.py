"""The built-in op library, and the palette the editor shows.

The edge rule, which the editor applies while a connection is dragged and the validator
applies to every edge: a tensor fits a port when the datatypes are equal, the ranks are
equal, fixed dims are equal, and symbolic dims unify (a name is one size in the whole
graph; a fixed dim meeting a symbolic one binds it, an unknown dim fits any). An op's
input port also takes only the datatypes listed under `accepts`."""
from graph_editor.graphs.ops.base import IR_VERSION, OPSET, InvalidParams, Op, OpError, Param
from graph_editor.graphs.ops.elementwise import OPS as ELEMENTWISE
from graph_editor.graphs.ops.scores import OPS as SCORES
from graph_editor.graphs.ops.select import OPS as SELECT
from graph_editor.graphs.ops.select import SWITCH
from graph_editor.graphs.ops.shape import OPS as SHAPE

OPS: dict[str, Op] = {op.name: op for op in ELEMENTWISE + SHAPE + SCORES + SELECT}


def get_op(name) -> Op | None:
    return OPS.get(name) if isinstance(name, str) else None


def op_catalogue() -> list[dict]:
    """Per op: {op, kind, doc, inputs, outputs, params: {name: {type, required, default, help,
    choices?, min?}}, accepts: {input port: [datatypes]}}; concat adds `variadic` (its
    inputs are x0 .. x{n-1}). The last entry is the switch node kind ("kind": "switch"),
    whose params and ports read the same way."""
    return [op.catalogue_entry() for op in OPS.values()] + [SWITCH.catalogue_entry()]


__all__ = ["IR_VERSION", "OPS", "OPSET", "SWITCH", "InvalidParams", "Op", "OpError", "Param", "get_op",
           "op_catalogue"]

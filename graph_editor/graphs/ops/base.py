"""What every built-in op declares: its ports, its params and their checks, its type
inference and its ONNX form.

An op's ONNX form is a small ModelProto whose graph inputs and outputs are named by its
ports, at one fixed opset (OPSET below), with the batch dim left symbolic, so the
compiler can run it as a model of its own or fuse it with its neighbours."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import onnx
from onnx import helper

from graph_editor.graphs.types import DATATYPES, DimUnifier, TensorType, format_dims

# The opset of the platform's sample models and of skl2onnx's exports: onnx.version_converter
# upgrades op models to a newer tenant model's opset before fusing; going down is not reliable.
OPSET = 17
ML_OPSET = 3  # ai.onnx.ml, released with opset 17
IR_VERSION = 8
PRODUCER = "graph_editor.graphs"


class OpError(ValueError):
    """An op cannot take the tensors it is given (dtype_mismatch, shape_mismatch) or its params
    do not fit them (invalid_params). `port` is the op's port at fault, when there is one."""

    def __init__(self, message: str, *, code: str, port: str | None = None):
        super().__init__(message)
        self.message, self.code, self.port = message, code, port


class InvalidParams(ValueError):
    """Every problem with an op's params, as (param name or None, message)."""

    def __init__(self, problems: list[tuple[str | None, str]]):
        super().__init__("; ".join(message for _, message in problems))
        self.problems = problems


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_CHECKS = {
    "number": (_is_number, "a number"),
    "integer": (_is_integer, "an integer"),
    "boolean": (lambda v: isinstance(v, bool), "true or false"),
    "string": (lambda v: isinstance(v, str), "a string"),
    "integer[]": (lambda v: isinstance(v, list) and all(_is_integer(i) for i in v), "a list of integers"),
    "number[]": (lambda v: isinstance(v, list) and all(_is_number(i) for i in v), "a list of numbers"),
    "string[]": (lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v), "a list of strings"),
    "number|number[]": (lambda v: _is_number(v) or (isinstance(v, list) and bool(v) and all(_is_number(i) for i in v)),
                        "a number or a non-empty list of numbers"),
}


@dataclass(frozen=True)
class Param:
    type: str  # one of _CHECKS
    help: str
    required: bool = False
    default: Any = None
    choices: tuple | None = None
    min: int | float | None = None

    def problem(self, value) -> str | None:
        """Why value does not fit, or None."""
        check, expected = _CHECKS[self.type]
        if not check(value):
            return f"must be {expected}, got {value!r}"
        if self.choices is not None and value not in self.choices:
            return f"must be one of {', '.join(map(str, self.choices))}, got {value!r}"
        if self.min is not None and value < self.min:
            return f"must be at least {self.min}, got {value!r}"
        return None

    def schema(self) -> dict:
        entry = {"type": self.type, "required": self.required, "default": self.default, "help": self.help}
        if self.choices is not None:
            entry["choices"] = list(self.choices)
        if self.min is not None:
            entry["min"] = self.min
        return entry


def datatype_param(help: str, **kwargs) -> Param:
    return Param("string", help, choices=DATATYPES, **kwargs)


class Op:
    """A built-in op. Subclasses set the class attributes and write `shape` (inference on
    checked params and the input types) and `nodes` (the ONNX nodes and initializers)."""

    name: ClassVar[str]
    doc: ClassVar[str]
    inputs: ClassVar[tuple[str, ...]] = ("x",)
    outputs: ClassVar[tuple[str, ...]] = ("y",)
    params: ClassVar[dict[str, Param]] = {}
    # The datatypes each input port takes: those onnxruntime's CPU kernels run for the op.
    accepts: ClassVar[dict[str, tuple[str, ...]]] = {}
    kind: ClassVar[str] = "op"

    def input_ports(self, params: dict) -> tuple[str, ...]:
        return self.inputs

    def check_params(self, params) -> dict:
        """The params with defaults filled in; raise InvalidParams naming every bad one."""
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise InvalidParams([(None, f"params must be an object, got {type(params).__name__}")])
        problems = []
        for name in params:
            if name not in self.params:
                known = ", ".join(self.params) or "none"
                problems.append((name, f"unknown param '{name}' (known: {known})"))
        checked = {}
        for name, param in self.params.items():
            if name not in params or params[name] is None:
                if param.required:
                    problems.append((name, f"param '{name}' is required: {param.help}"))
                checked[name] = param.default
                continue
            problem = param.problem(params[name])
            if problem:
                problems.append((name, f"param '{name}' {problem}"))
            checked[name] = params[name]
        if not problems:
            problems = self.check(checked)
        if problems:
            raise InvalidParams(problems)
        return checked

    def check(self, params: dict) -> list[tuple[str, str]]:
        """Checks between params, once each has the right type."""
        return []

    def infer(self, params, inputs: dict[str, TensorType], dims: DimUnifier | None = None) -> dict[str, TensorType]:
        """The output types for these input types; raise OpError saying what to change."""
        params = self.check_params(params)
        for port in self.input_ports(params):
            accepted = self.accepts.get(port, DATATYPES)
            tensor = inputs[port]
            if tensor.datatype not in accepted:
                raise OpError(f"{self.name} takes {', '.join(accepted)} on '{port}', not {tensor.datatype}; "
                              f"add a cast op before it", code="dtype_mismatch", port=port)
        return self.shape(params, inputs, dims if dims is not None else DimUnifier())

    def shape(self, params: dict, inputs: dict[str, TensorType], dims: DimUnifier) -> dict[str, TensorType]:
        raise NotImplementedError

    def nodes(self, params: dict, inputs: dict[str, TensorType]) -> tuple[list, list]:
        raise NotImplementedError

    def opset_imports(self) -> list:
        return [helper.make_opsetid("", OPSET)]

    def build(self, params, inputs: dict[str, TensorType]) -> onnx.ModelProto:
        """The op as an ONNX model: graph inputs and outputs named by its ports."""
        params = self.check_params(params)
        outputs = self.infer(params, inputs)
        nodes, initializers = self.nodes(params, inputs)
        graph = helper.make_graph(
            nodes, f"{self.name}_op",
            [inputs[p].value_info(p) for p in self.input_ports(params)],
            [outputs[p].value_info(p) for p in self.outputs],
            initializer=initializers,
        )
        model = helper.make_model(graph, opset_imports=self.opset_imports(), producer_name=PRODUCER)
        model.ir_version = IR_VERSION
        return model

    def catalogue_entry(self) -> dict:
        return {
            "op": self.name, "kind": self.kind, "doc": self.doc,
            "inputs": list(self.inputs), "outputs": list(self.outputs),
            "params": {name: param.schema() for name, param in self.params.items()},
            "accepts": {port: list(self.accepts.get(port, DATATYPES)) for port in self.inputs},
        }


# Helpers the ops share.

AXIS_HELP = "the axis, counted from 0; negative counts from the last"


def normalize_axis(axis: int, rank: int, *, param: str = "axis", port: str = "x", allow_end: bool = False) -> int:
    """axis in [0, rank) (or [0, rank] with allow_end); raise OpError naming the param."""
    top = rank + 1 if allow_end else rank
    if not -top <= axis < top:
        raise OpError(f"param '{param}' is {axis} but '{port}' has rank {rank}: use an axis from {-top} to "
                      f"{top - 1}", code="invalid_params", port=port)
    return axis + top if axis < 0 else axis


def require_rank(tensor: TensorType, port: str, at_least: int, why: str) -> None:
    if tensor.rank < at_least:
        raise OpError(f"'{port}' has shape {format_dims(tensor.dims)}; it needs rank {at_least} or more {why}",
                      code="shape_mismatch", port=port)


def merge_dims(dims: DimUnifier, tensors: dict[str, TensorType], *, skip_axis: int | None = None,
               what: str = "") -> list:
    """The dims shared by tensors of one rank, unified axis by axis (skip_axis aside)."""
    ports = list(tensors)
    first = tensors[ports[0]]
    merged = list(first.dims)
    for port in ports[1:]:
        tensor = tensors[port]
        if tensor.datatype != first.datatype:
            raise OpError(f"'{port}' is {tensor.datatype} but '{ports[0]}' is {first.datatype}: {what} needs one "
                          "datatype; add a cast op", code="dtype_mismatch", port=port)
        if tensor.rank != first.rank:
            raise OpError(f"'{port}' has shape {format_dims(tensor.dims)} but '{ports[0]}' has "
                          f"{format_dims(first.dims)}: {what} needs one rank", code="shape_mismatch", port=port)
        for axis, dim in enumerate(tensor.dims):
            if axis == skip_axis:
                continue
            try:
                merged[axis] = dims.unify(merged[axis], dim, where=port)
            except ValueError as exc:
                raise OpError(f"'{port}' {format_dims(tensor.dims)} and '{ports[0]}' {format_dims(first.dims)} "
                              f"differ at dim {axis} ({exc}): {what} needs them equal", code="shape_mismatch",
                              port=port) from None
    return merged

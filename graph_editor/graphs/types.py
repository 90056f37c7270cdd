"""Tensor types on a graph's ports: a KServe datatype and dims, each dim fixed (a positive
int), symbolic (a str: "batch", a named dim such as "n", or a free dim of a graph input
such as "in.image[1]") or unknown (None).

An edge is valid when the datatypes are equal, the ranks are equal, fixed dims are equal
and symbolic dims unify: a name has one binding per graph, so "batch" met by 4 on one
edge and by 5 on another is a mismatch."""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from onnx import helper, numpy_helper

from graph_editor.onnx_inspect import ONNX_TO_KSERVE

Dim = int | str | None

DATATYPES = ("BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
             "FP16", "FP32", "FP64", "BYTES")
FLOATS = ("FP16", "FP32", "FP64")
INTEGERS = ("UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64")
NUMERIC = INTEGERS + FLOATS

KSERVE_TO_ONNX = {kserve: onnx_type for onnx_type, kserve in ONNX_TO_KSERVE.items()}
KSERVE_TO_NUMPY = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype(np.uint8), "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32), "UINT64": np.dtype(np.uint64), "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16), "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16), "FP32": np.dtype(np.float32), "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(np.object_),
}
NUMPY_TO_KSERVE = {dtype: kserve for kserve, dtype in KSERVE_TO_NUMPY.items()}

BATCH = "batch"
# Named dims in a spec; generated ones ("in.image[1]") hold characters a spec's names cannot.
SYMBOL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def format_dim(dim: Dim) -> str:
    return "?" if dim is None else str(dim)


def format_dims(dims) -> str:
    """A shape as messages show it: "[batch, 8, 8]", "?" for an unknown dim."""
    return "[" + ", ".join(format_dim(d) for d in dims) + "]"


@dataclass(frozen=True)
class TensorType:
    datatype: str
    dims: tuple[Dim, ...]

    def __post_init__(self):
        object.__setattr__(self, "dims", tuple(self.dims))

    @property
    def rank(self) -> int:
        return len(self.dims)

    def __str__(self) -> str:
        return f"{self.datatype}{format_dims(self.dims)}"

    def with_dims(self, dims) -> TensorType:
        return TensorType(self.datatype, tuple(dims))

    def with_datatype(self, datatype: str) -> TensorType:
        return TensorType(datatype, self.dims)

    def port_shape(self) -> list:
        """The shape as GraphCheck.ports carries it: symbolic dims by name, unknown as -1."""
        return [-1 if d is None else d for d in self.dims]

    def kserve_shape(self) -> list[int]:
        """The shape as a KServe client declares it: every dim not fixed is -1."""
        return [d if isinstance(d, int) else -1 for d in self.dims]

    def value_info(self, name: str):
        """An ONNX ValueInfoProto; symbolic dims stay symbolic (dim_param)."""
        return helper.make_tensor_value_info(name, KSERVE_TO_ONNX[self.datatype], list(self.dims))

    @classmethod
    def from_signature(cls, tensor: dict, *, batch: bool) -> TensorType:
        """A model version's tensor ({name, datatype, shape} with -1 for dynamic dims): with
        a batch dim its first -1 is the graph's batch; every other -1 is unknown."""
        dims = [None if d == -1 else d for d in tensor["shape"]]
        if batch and dims and dims[0] is None:
            dims[0] = BATCH
        return cls(tensor["datatype"], tuple(dims))


def product(dims) -> Dim:
    """The size of dims taken as one: fixed when all are, the symbol when it is the only
    factor left (times 1), otherwise unknown."""
    fixed, symbols = 1, []
    for dim in dims:
        if isinstance(dim, int):
            fixed *= dim
        elif dim is None:
            return None
        else:
            symbols.append(dim)
    if not symbols:
        return fixed
    return symbols[0] if len(symbols) == 1 and fixed == 1 else None


class DimConflict(ValueError):
    """Two dims that cannot be the same: the message says which and why."""


class DimUnifier:
    """Bindings of symbolic dims for one graph: a union-find over names, each class bound
    to at most one fixed value, with where that value came from for messages."""

    def __init__(self, scope: str = ""):
        self._parent: dict[str, str] = {}
        self._value: dict[str, tuple[int, str]] = {}
        # Prefixed to where a binding came from: an op names its ports, the validator its node.
        self.scope = scope

    def copy(self, scope: str = "") -> DimUnifier:
        clone = DimUnifier(scope)
        clone._parent = dict(self._parent)
        clone._value = dict(self._value)
        return clone

    def adopt(self, other: DimUnifier) -> None:
        self._parent, self._value = other._parent, other._value

    def _root(self, name: str) -> str:
        while self._parent.get(name, name) != name:
            name = self._parent[name]
        return name

    def resolve(self, dim: Dim) -> Dim:
        """A dim as far as the bindings know it: its fixed value, or its class's name."""
        if not isinstance(dim, str):
            return dim
        root = self._root(dim)
        return self._value[root][0] if root in self._value else root

    def resolve_type(self, tensor: TensorType) -> TensorType:
        return tensor.with_dims(self.resolve(d) for d in tensor.dims)

    def bindings(self, tensors) -> list[str]:
        """How the symbolic dims of tensors were bound to sizes, for messages: "'n' is 3 (at ab.x1)"."""
        notes = []
        for dim in dict.fromkeys(d for t in tensors for d in t.dims if isinstance(d, str)):
            bound = self._value.get(self._root(dim))
            if bound is not None:
                notes.append(f"'{dim}' is {bound[0]}" + (f" (at {bound[1]})" if bound[1] else ""))
        return notes

    def unify(self, a: Dim, b: Dim, *, where: str = "") -> Dim:
        """Make a and b the same dim and return it; raise DimConflict when they cannot be."""
        if a is None or b is None:
            return self.resolve(b if a is None else a)
        if isinstance(a, int) and isinstance(b, int):
            if a != b:
                raise DimConflict(f"{a} is not {b}")
            return a
        if isinstance(a, int):
            a, b = b, a
        root = self._root(a)
        if isinstance(b, int):
            bound = self._value.get(root)
            if bound is not None and bound[0] != b:
                origin = f" at {bound[1]}" if bound[1] else ""
                raise DimConflict(f"'{a}' is already {bound[0]}{origin}, not {b}")
            self._value[root] = (b, f"{self.scope}.{where}" if self.scope and where else where)
            return b
        other = self._root(b)
        if other == root:
            return self.resolve(root)
        bound, other_bound = self._value.get(root), self._value.get(other)
        if bound and other_bound and bound[0] != other_bound[0]:
            raise DimConflict(f"'{a}' is {bound[0]} (at {bound[1]}) but '{b}' is {other_bound[0]} "
                              f"(at {other_bound[1]})")
        # Named dims outlive generated ones as a class's name: messages read "n", not "in.x[1]".
        keep, drop = (other, root) if _generated(root) and not _generated(other) else (root, other)
        self._parent[drop] = keep
        if drop in self._value:
            self._value[keep] = self._value.pop(drop)
        return self.resolve(keep)


def _generated(name: str) -> bool:
    return not SYMBOL_NAME.fullmatch(name)


def unify_types(given: TensorType, expected: TensorType, dims: DimUnifier, *,
                where: str = "") -> tuple[str, str, str] | None:
    """Check a tensor against the type a port expects; on success the bindings are kept.
    Returns None, or (code, what differs, reason): dtype_mismatch and "datatype", or
    shape_mismatch and "rank" or "dim"."""
    if given.datatype != expected.datatype:
        return "dtype_mismatch", "datatype", f"the datatype is {given.datatype}, expected {expected.datatype}"
    if given.rank != expected.rank:
        return "shape_mismatch", "rank", (f"the shape {format_dims(given.dims)} has rank {given.rank}, expected "
                                          f"rank {expected.rank} {format_dims(expected.dims)}")
    trial = dims.copy()
    for axis, (a, b) in enumerate(zip(given.dims, expected.dims, strict=True)):
        try:
            trial.unify(a, b, where=where)
        except DimConflict as exc:
            return "shape_mismatch", "dim", (f"dim {axis} does not fit: {exc} (shape {format_dims(given.dims)}, "
                                             f"expected {format_dims(expected.dims)})")
    dims.adopt(trial)
    return None


def numpy_constant(name: str, value, datatype: str):
    """An ONNX initializer holding value as datatype."""
    return numpy_helper.from_array(np.asarray(value, dtype=KSERVE_TO_NUMPY[datatype]), name)


"""Ops that move elements without changing them: reshape, flatten, concat, slice."""
from collections import Counter

from onnx import helper

from graph_editor.graphs.ops.base import AXIS_HELP, Op, OpError, Param, merge_dims, normalize_axis, require_rank
from graph_editor.graphs.types import format_dims, numpy_constant, product

INT64_MAX = 2**63 - 1
MAX_CONCAT_INPUTS = 32


def _factors(dims) -> tuple[int, Counter] | None:
    """dims as (product of the fixed ones, count of each symbol); None when one is unknown."""
    fixed, symbols = 1, Counter()
    for dim in dims:
        if dim is None:
            return None
        if isinstance(dim, int):
            fixed *= dim
        else:
            symbols[dim] += 1
    return fixed, symbols


class Reshape(Op):
    name = "reshape"
    doc = ("y = x with a new shape of as many elements: -1 once for the dim computed from the others, "
           "0 to keep x's dim at that position.")
    params = {"shape": Param("integer[]", "the new shape, e.g. [-1, 64] (-1: computed, 0: as in x)", required=True)}

    def check(self, params):
        shape = params["shape"]
        if not shape:
            return [("shape", "param 'shape' must list at least one dim")]
        if any(d < -1 for d in shape):
            return [("shape", f"param 'shape' {shape} has a dim below -1: use positive sizes, -1 or 0")]
        if shape.count(-1) > 1:
            return [("shape", f"param 'shape' {shape} has -1 more than once: only one dim can be computed")]
        return []

    def shape(self, params, inputs, dims):
        x = inputs["x"]
        target = list(params["shape"])
        for axis, size in enumerate(target):
            if size == 0:
                if axis >= x.rank:
                    raise OpError(f"param 'shape' keeps dim {axis} (0) but 'x' {format_dims(x.dims)} has rank "
                                  f"{x.rank}", code="invalid_params", port="x")
                target[axis] = x.dims[axis]
        have = _factors(x.dims)
        known = _factors(d for d in target if d != -1)
        if have is None or known is None:
            return {"y": x.with_dims(None if d == -1 else d for d in target)}
        (have_fixed, have_symbols), (known_fixed, known_symbols) = have, known
        left = have_symbols - known_symbols
        comparable = not (known_symbols - have_symbols)
        mismatch = OpError(f"'x' {format_dims(x.dims)} cannot take param 'shape' {params['shape']}: the number of "
                           f"elements differs ({have_fixed} against {known_fixed}, symbolic dims aside); change "
                           "'shape'", code="shape_mismatch", port="x")
        if -1 not in target:
            if comparable and not left and have_fixed != known_fixed:
                raise mismatch
            return {"y": x.with_dims(target)}
        computed = None
        if comparable and have_fixed % known_fixed == 0:
            quotient = have_fixed // known_fixed
            rest = list(left.elements())
            computed = quotient if not rest else (rest[0] if len(rest) == 1 and quotient == 1 else None)
        elif comparable and not left:
            raise mismatch
        return {"y": x.with_dims(computed if d == -1 else d for d in target)}

    def nodes(self, params, inputs):
        return ([helper.make_node("Reshape", ["x", "shape"], ["y"])],
                [numpy_constant("shape", params["shape"], "INT64")])


class Flatten(Op):
    name = "flatten"
    doc = "y = x as two dims: the product of the dims before `axis`, and of the rest ([batch, 8, 8] -> [batch, 64])."
    params = {"axis": Param("integer", "the first dim of the second group; " + AXIS_HELP, default=1)}

    def shape(self, params, inputs, dims):
        x = inputs["x"]
        axis = normalize_axis(params["axis"], x.rank, allow_end=True)
        return {"y": x.with_dims([product(x.dims[:axis]), product(x.dims[axis:])])}

    def nodes(self, params, inputs):
        return [helper.make_node("Flatten", ["x"], ["y"], axis=params["axis"])], []


class Concat(Op):
    name = "concat"
    doc = "y = x0, x1, ... joined along `axis`; they share a datatype and every other dim."
    inputs = ("x0", "x1")
    params = {
        "n": Param("integer", "how many inputs, named x0, x1, ...", default=2, min=2),
        "axis": Param("integer", "the axis to join along; " + AXIS_HELP, default=-1),
    }

    def check(self, params):
        if params["n"] > MAX_CONCAT_INPUTS:
            return [("n", f"param 'n' is {params['n']}; at most {MAX_CONCAT_INPUTS} inputs can be joined")]
        return []

    def input_ports(self, params):
        count = params.get("n") if isinstance(params, dict) else None
        if not isinstance(count, int) or isinstance(count, bool) or not 2 <= count <= MAX_CONCAT_INPUTS:
            count = 2
        return tuple(f"x{i}" for i in range(count))

    def shape(self, params, inputs, dims):
        tensors = {port: inputs[port] for port in self.input_ports(params)}
        first = tensors["x0"]
        require_rank(first, "x0", 1, "to be joined")
        axis = normalize_axis(params["axis"], first.rank, port="x0")
        merged = merge_dims(dims, tensors, skip_axis=axis, what="concat")
        sizes = [t.dims[axis] for t in tensors.values()]
        merged[axis] = sum(sizes) if all(isinstance(s, int) for s in sizes) else None
        return {"y": first.with_dims(merged)}

    def nodes(self, params, inputs):
        return [helper.make_node("Concat", list(self.input_ports(params)), ["y"], axis=params["axis"])], []

    def catalogue_entry(self):
        entry = super().catalogue_entry()
        entry["variadic"] = {"prefix": "x", "count_param": "n"}
        return entry


def _clip(values: list[int]) -> list[int]:
    """Indices as INT64 holds them: past either end is the same as at it."""
    return [max(-INT64_MAX, min(INT64_MAX, v)) for v in values]


class Slice(Op):
    name = "slice"
    doc = ("y = x[starts:ends:steps] along `axes`, as Python slices (negative indices count from the end, "
           "ends past the dim stop at it).")
    params = {
        "starts": Param("integer[]", "the first index on each axis", required=True),
        "ends": Param("integer[]", "one past the last index on each axis (a large number: to the end)",
                      required=True),
        "axes": Param("integer[]", "the axes sliced (default: the first len(starts) axes); " + AXIS_HELP),
        "steps": Param("integer[]", "the step on each axis (default 1; negative walks backwards)"),
    }

    def check(self, params):
        count = len(params["starts"])
        if not count:
            return [("starts", "param 'starts' must list at least one index")]
        problems = [(name, f"param '{name}' has {len(params[name])} values but 'starts' has {count}: give one per "
                           "axis") for name in ("ends", "axes", "steps") if params[name] is not None
                    and len(params[name]) != count]
        if params["steps"] and 0 in params["steps"]:
            problems.append(("steps", "param 'steps' must not hold 0"))
        return problems

    def _axes(self, params, x) -> list[int]:
        axes = params["axes"] if params["axes"] is not None else list(range(len(params["starts"])))
        normalized = [normalize_axis(a, x.rank, param="axes") for a in axes]
        if len(set(normalized)) != len(normalized):
            raise OpError(f"param 'axes' {axes} names an axis twice", code="invalid_params", port="x")
        return normalized

    def shape(self, params, inputs, dims):
        x = inputs["x"]
        out = list(x.dims)
        steps = params["steps"] or [1] * len(params["starts"])
        for axis, start, end, step in zip(self._axes(params, x), params["starts"], params["ends"], steps, strict=True):
            dim = x.dims[axis]
            if isinstance(dim, int):
                size = len(range(*slice(start, end, step).indices(dim)))
                if size == 0:
                    raise OpError(f"the slice {start}:{end}:{step} of axis {axis} of 'x' {format_dims(x.dims)} is "
                                  "empty: change 'starts' or 'ends'", code="shape_mismatch", port="x")
                out[axis] = size
            else:
                whole = step == 1 and start == 0 and end >= 2**31 - 1
                out[axis] = dim if whole else None
        return {"y": x.with_dims(out)}

    def nodes(self, params, inputs):
        axes = self._axes(params, inputs["x"])
        steps = params["steps"] or [1] * len(axes)
        return ([helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["y"])],
                [numpy_constant("starts", _clip(params["starts"]), "INT64"),
                 numpy_constant("ends", _clip(params["ends"]), "INT64"),
                 numpy_constant("axes", axes, "INT64"), numpy_constant("steps", _clip(steps), "INT64")])


OPS = [Reshape(), Flatten(), Concat(), Slice()]

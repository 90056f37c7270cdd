"""Triton Python-backend orchestrator: serves a tenant's graph by running its steps, each a
Triton model loaded on the same server, through BLS (a Python model calling others).

Graph deployments copy this file as `<model>/1/model.py` next to `plan.json`, which the
graph compiler writes:
    {"batched": true, "inputs": ["image"],
     "outputs": [{"name": "label", "ref": "lookup.labels"}],
     "steps": [{"model": "t1--seg-3fa2c1", "nodes": ["prep"], "inputs": {"x": "image"},
                "outputs": {"y": "prep.y"},
                "output_specs": {"prep.y": {"datatype": "FP32", "shape": [-1, 64]}},
                "column_inputs": []}, ...]}
Steps are in run order. `column_inputs` names the inputs of one value per row that a
batched step takes as [rows, 1] (Triton needs a dim per row); such a step answers them as
[rows, 1] too, and `output_specs` gives the rank they are kept at here. Each request has its
own environment: the graph inputs by name, then each step output under its ref ("prep.y");
a step reads its inputs from it by ref, and the response holds the graph outputs, read
from it by ref.

Why a zero-row step is not called. An ensemble has no conditionals, so a graph with a
switch is served by this model: the switch sends all rows of a request to one branch and
zero rows to the other, and a merge concatenates the branches. In a batched plan a step
whose inputs all have zero rows gets empty outputs of its planned dtypes and shapes (batch
dimension 0, other variable dimensions 0) without a call: the untaken branch costs no BLS
round trip (each copies tensors through shared memory and wakes the step's stub) and no
onnxruntime run, and no step model is asked to handle an empty batch. All, not any: the
merge has one empty input (the untaken branch's) and must still run.

Errors. A step that fails answers its request with an error that names the step's nodes
and keeps Triton's code (a step's 400 stays a 400); the other requests of the batch go on.
A plan that cannot run (unreadable, a ref nothing provides, graph inputs or outputs other
than the config's) fails `initialize` with the reason.

The requests of one `execute` run side by side (`async_exec`, awaited together): with one
request after another, each step a blocking `exec()`, 32 clients got 161 req/s from the
demo graph where an ensemble served 1,293."""
import asyncio
import json
import os
from dataclasses import dataclass

import numpy as np
import triton_python_backend_utils as pb_utils

NUMPY_DTYPES = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64, "BYTES": np.object_,
}


@dataclass(frozen=True)
class Step:
    model: str
    label: str  # the step's nodes, as error messages name them
    inputs: dict[str, str]  # step input name -> ref
    outputs: dict[str, str]  # step output name -> ref
    empty: dict[str, tuple[type, tuple[int, ...]]]  # ref -> dtype and shape of its zero-row output
    ranks: dict[str, int]  # ref -> the rank the graph gives it (its outputs')
    column_inputs: frozenset = frozenset()  # inputs Triton wants as [rows, 1]: see `_as_column`


class StepFailed(Exception):
    def __init__(self, step: Step, message: str, code: int):
        super().__init__(f"step '{step.label}' (model {step.model}) failed: {message}")
        self.code = code


def _empty_spec(step: dict, ref: str) -> tuple[type, tuple[int, ...]]:
    spec = step.get("output_specs", {}).get(ref)
    if spec is None or spec.get("datatype") not in NUMPY_DTYPES or not spec.get("shape"):
        raise ValueError(f"step {step['nodes']} has no datatype and shape for output '{ref}' in output_specs")
    return NUMPY_DTYPES[spec["datatype"]], tuple(0 if dim < 0 else dim for dim in [0, *spec["shape"][1:]])


def plan_read(path: str) -> tuple[bool, list[str], dict[str, str], list[Step]]:
    """The plan as (batched, graph inputs, graph output name -> ref, steps); raises
    RuntimeError naming what is wrong with it."""
    try:
        with open(path) as f:
            plan = json.load(f)
        batched = bool(plan["batched"])
        inputs = list(plan["inputs"])
        outputs = {o["name"]: o["ref"] for o in plan["outputs"]}
        steps, provided = [], set(inputs)
        for s in plan["steps"]:
            step = Step(model=s["model"], label=", ".join(s["nodes"]), inputs=dict(s["inputs"]),
                        outputs=dict(s["outputs"]),
                        empty={ref: _empty_spec(s, ref) for ref in s["outputs"].values()} if batched else {},
                        ranks={ref: len(spec["shape"]) for ref, spec in s.get("output_specs", {}).items()},
                        column_inputs=frozenset(s.get("column_inputs", ())))
            missing = sorted(set(step.inputs.values()) - provided)
            if missing:
                raise ValueError(f"step '{step.label}' reads {missing}, which no graph input or earlier step provides")
            provided.update(step.outputs.values())
            steps.append(step)
        missing = sorted(set(outputs.values()) - provided)
        if missing:
            raise ValueError(f"graph outputs read {missing}, which no graph input or step provides")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RuntimeError(f"The graph's plan {path} cannot be run: {type(exc).__name__}: {exc}") from None
    return batched, inputs, outputs, steps


def _as_column(array):
    """A batched step declares a tensor of one value per row as dims [1] (Triton needs a
    dim), so it takes [rows, 1]."""
    return array.reshape(-1, 1) if array.ndim == 1 else array


def _at_rank(array, rank):
    """Back to the rank the graph gives the tensor: a batched step answers a tensor of one
    value per row as [rows, 1]."""
    if rank is not None and array.ndim == rank + 1 and array.shape[-1] == 1:
        return array.reshape(array.shape[:-1])
    return array


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        path = os.path.join(args["model_repository"], args["model_version"], "plan.json")
        self.batched, self.inputs, self.outputs, self.steps = plan_read(path)
        for kind, planned, declared in (("inputs", self.inputs, config.get("input", [])),
                                        ("outputs", self.outputs, config.get("output", []))):
            if set(planned) != {t["name"] for t in declared}:
                raise RuntimeError(f"The graph's plan {path} has {kind} {sorted(planned)}, its config "
                                   f"{sorted(t['name'] for t in declared)}")

    async def _call(self, step: Step, env: dict) -> None:
        """Runs one step, storing its outputs in `env` under their refs."""
        feeds = {name: _as_column(env[ref]) if name in step.column_inputs else env[ref]
                 for name, ref in step.inputs.items()}
        if self.batched and all(a.shape[0] == 0 for a in feeds.values()):
            for ref, (dtype, shape) in step.empty.items():
                env[ref] = np.empty(shape, dtype)
            return
        try:
            response = await pb_utils.InferenceRequest(
                model_name=step.model, requested_output_names=list(step.outputs),
                inputs=[pb_utils.Tensor(name, array) for name, array in feeds.items()],
            ).async_exec()
        except Exception as exc:  # pb_utils.TritonModelException: the request could not be sent
            raise StepFailed(step, str(exc), pb_utils.TritonError.INTERNAL) from None
        if response.has_error():
            raise StepFailed(step, response.error().message(), response.error().code())
        for name, ref in step.outputs.items():
            tensor = pb_utils.get_output_tensor_by_name(response, name)
            if tensor is None:
                raise StepFailed(step, f"it returned no output '{name}'", pb_utils.TritonError.INTERNAL)
            env[ref] = _at_rank(tensor.as_numpy(), step.ranks.get(ref))

    async def _run(self, request):
        env = {}
        for name in self.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                return pb_utils.InferenceResponse(error=pb_utils.TritonError(
                    f"input '{name}' is missing", pb_utils.TritonError.INVALID_ARG))
            env[name] = tensor.as_numpy()
        try:
            for step in self.steps:
                await self._call(step, env)
        except StepFailed as exc:
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc), exc.code))
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor(name, np.ascontiguousarray(env[ref])) for name, ref in self.outputs.items()
        ])

    async def _answer(self, request):
        try:
            return await self._run(request)
        except Exception as exc:  # a bug or a BLS exception fails this request only
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{type(exc).__name__}: {exc}"))

    async def execute(self, requests):
        """The requests of a batch go through the steps side by side: while one waits for
        a step, the others send theirs, and the step's own dynamic batcher joins them."""
        return list(await asyncio.gather(*(self._answer(request) for request in requests)))

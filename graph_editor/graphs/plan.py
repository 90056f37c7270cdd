"""A valid graph compiled into units that Triton runs as separate models, for the two
executors that keep a graph's steps apart: a Triton ensemble (a DAG, no switch) and a BLS
orchestrator (any graph, switches included). The third executor, one fused ONNX model for
the whole graph, is graph_editor.graphs.fuse.

Units:
- A model node is a unit of its own, named by its model version: two graphs that use the
  same version share one loaded model on a server (workers/services/graph_units.py counts
  who holds it).
- Built-in ops (switches included) are grouped and each group is fused into one ONNX
  model (`fuse.steps_model`). An op joins the group of the node it feeds when that node is
  its only consumer besides graph outputs and is a built-in op too, so a group has one way
  out to other units and contracting it cannot make a cycle: chains and in-trees of ops,
  such as cast → flatten, or topk → label lookup, run as one model. A group is named by a
  hash of its ONNX bytes, so the same group in two deployed versions is loaded once.

Tensors: a unit's inputs are named by the "<node>.<port>" refs they read (graph inputs by
their own names), its outputs by the refs they are; a model unit keeps its model's own
tensor names. The executors map these names to each other."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from gateway.contract.errors import PlatformError
from graph_editor.graphs.fuse import Step, graph_steps, port_type, steps_model
from graph_editor.graphs.spec import spec_parse
from graph_editor.graphs.types import BATCH


@dataclass
class UnitTensor:
    name: str  # the tensor's name in the unit's Triton model
    ref: str  # the graph tensor: a graph input's name, or "<node>.<port>"
    datatype: str
    shape: list  # "batch", fixed ints, or -1 (unknown or symbolic)

    def signature(self) -> dict:
        """{name, datatype, shape} as Triton configs and KServe clients read them: -1 for
        the batch and every dim that is not fixed."""
        return {"name": self.name, "datatype": self.datatype,
                "shape": [d if isinstance(d, int) else -1 for d in self.shape]}


@dataclass
class Unit:
    key: str  # what it is, stable across graphs: "mv<model version id>" or "seg-<hash>"
    kind: str  # model or segment
    nodes: list[str]  # the spec's node ids it runs, in run order
    inputs: list[UnitTensor]
    outputs: list[UnitTensor]
    batched: bool  # Triton batches it: see _batched
    onnx_bytes: bytes = b""  # a segment's fused ONNX model
    model_version: int | None = None  # a model unit's version


@dataclass
class GraphPlan:
    units: list[Unit]  # in an order that runs each after the units it reads
    inputs: list[dict]  # the graph's signature
    outputs: list[dict]
    output_refs: list[tuple[str, str]]  # (graph output name, the ref it is)
    has_switch: bool
    batched: bool
    node_units: dict[str, str] = field(default_factory=dict)  # spec node id -> its unit's key


def _shape(port: dict) -> list:
    return [d if (isinstance(d, int) and d > 0) or d == BATCH else -1 for d in port["shape"]]


def _batched(tensors: list[UnitTensor], kinds: set[str]) -> bool:
    """Whether Triton may batch a unit: every tensor has the graph's batch dim first, and
    all its inputs (and outputs) have the same rows. A switch's branches and a merge's
    inputs do not (one has the request's rows, the other none), and Triton refuses inputs
    of one request whose first dims differ; such a unit takes whole tensors."""
    if kinds & {"switch", "merge"}:
        return False
    return all(t.shape and t.shape[0] == BATCH for t in tensors)


def _groups(parsed, steps: list[Step]) -> list[list[Step]]:
    """Model steps alone; built-in op steps grouped by their only consumer (see the module
    docstring). In run order of each group's last step."""
    by_node = {step.node: step for step in steps}
    consumers: dict[str, set[str]] = {step.node: set() for step in steps}
    for edge in parsed.edges:
        if edge.source in consumers:
            consumers[edge.source].add(edge.target)
    group_of = {step.node: [step] for step in steps}
    for step in steps:  # run order: a step's group is complete when it is reached
        if step.kind == "model":
            continue
        targets = {t for t in consumers[step.node] if parsed.nodes[t].kind != "output"}
        if len(targets) != 1:
            continue
        (target,) = targets
        if target not in by_node or by_node[target].kind == "model":
            continue
        merged = group_of[step.node] + group_of[target]
        for member in merged:
            group_of[member.node] = merged
    order, seen = [], set()
    for step in reversed(steps):  # a group runs where its last step does
        group = group_of[step.node]
        if id(group) not in seen:
            seen.add(id(group))
            order.append(sorted(group, key=steps.index))
    order.reverse()
    return order


def graph_plan(*, tenant, spec) -> GraphPlan:
    """The graph's units. Raise PlatformError: invalid_graph for a graph the validator
    refuses (another tenant's model version included), unfusable for ops that cannot share
    one model."""
    check, steps = graph_steps(tenant=tenant, spec=spec)
    parsed = spec_parse(spec)
    graph_inputs = {f"{node.id}.{name}": name for node in parsed.nodes.values() if node.kind == "input"
                    for name, _ in node.tensors}
    output_refs = [(e.target_port, e.source_ref) for node in parsed.nodes.values() if node.kind == "output"
                   for e in parsed.edges if e.target == node.id]

    def tensor(name: str, ref: str) -> UnitTensor:
        port = check.ports[ref]
        return UnitTensor(name=name, ref=graph_inputs.get(ref, ref), datatype=port["datatype"], shape=_shape(port))

    read_later: dict[str, set[str]] = {}  # ref -> the nodes reading it
    for edge in parsed.edges:
        read_later.setdefault(edge.source_ref, set()).add(edge.target)
    exported = {ref for _, ref in output_refs}

    units = []
    for group in _groups(parsed, steps):
        members = {step.node for step in group}
        if group[0].kind == "model":
            step = group[0]
            node = parsed.nodes[step.node]
            inputs = [tensor(port, source) for port, source in step.feeds.items()]
            outputs = [tensor(o.name, f"{step.node}.{o.name}") for o in step.model.graph.output]
            units.append(Unit(key=f"mv{node.model_version}", kind="model", nodes=[step.node], inputs=inputs,
                              outputs=outputs, batched=_batched([*inputs, *outputs], set()),
                              model_version=node.model_version))
            continue
        outside = []  # refs read from outside the group, in first-read order
        for step in group:
            for source in step.feeds.values():
                if source.split(".", 1)[0] not in members and source not in outside:
                    outside.append(source)
        leaving = []  # refs of the group's steps read outside it or exported as graph outputs
        for step in group:
            for output in step.model.graph.output:
                ref = f"{step.node}.{output.name}"
                if ref in exported or read_later.get(ref, set()) - members:
                    leaving.append(ref)
        named = {ref: graph_inputs.get(ref, ref) for ref in outside}
        value_infos = [port_type(check.ports[ref]).value_info(named[ref]) for ref in outside]
        outs = [(ref, ref, port_type(check.ports[ref])) for ref in leaving]
        model, _, _ = steps_model(group, named=named, inputs=value_infos, outputs=outs)
        model.graph.name = "segment"
        data = model.SerializeToString(deterministic=True)
        inputs, outputs = [tensor(named[ref], ref) for ref in outside], [tensor(ref, ref) for ref in leaving]
        kinds = {"switch" if step.kind == "switch" else parsed.nodes[step.node].op for step in group}
        units.append(Unit(key=f"seg-{hashlib.sha256(data).hexdigest()[:16]}", kind="segment",
                          nodes=[step.node for step in group], inputs=inputs, outputs=outputs,
                          batched=_batched([*inputs, *outputs], kinds), onnx_bytes=data))
    tensors = [*check.inputs, *check.outputs]
    return GraphPlan(
        units=units, inputs=check.inputs, outputs=check.outputs,
        output_refs=[(name, graph_inputs.get(ref, ref)) for name, ref in output_refs],
        has_switch=any(n.kind == "switch" for n in parsed.nodes.values()),
        batched=bool(tensors) and all(t["shape"] and t["shape"][0] == -1 for t in tensors),
        node_units={node: unit.key for unit in units for node in unit.nodes},
    )


def ensemble_refusal(plan: GraphPlan) -> str | None:
    """Why a Triton ensemble cannot run the plan (None: it can). An ensemble has no
    conditionals, maps each step output to one tensor, and batches all steps alike."""
    if plan.has_switch:
        return "the graph has a switch, and a Triton ensemble has no conditionals: use the bls or fused executor"
    refs = [ref for _, ref in plan.output_refs]
    if len(refs) != len(set(refs)):
        return "one tensor is two graph outputs, which an ensemble cannot map: use the bls or fused executor"
    inputs = {t["name"] for t in plan.inputs}
    if inputs & set(refs):
        return "a graph input is also a graph output, which an ensemble cannot map: use the bls or fused executor"
    if plan.batched and any(len(t["shape"]) == 1 for t in plan.inputs):
        return ("a graph input has one value per row, which an ensemble takes only as [rows, 1] while this graph's "
                "callers send [rows]: use the bls or fused executor")
    if any(unit.batched != plan.batched for unit in plan.units):
        return ("a step does not take the graph's batch dimension first, and an ensemble batches all its steps "
                "alike: use the bls or fused executor")
    return None


def plan_check(plan: GraphPlan, executor: str) -> None:
    """Raise PlatformError (unfusable) when `executor` cannot run the plan."""
    if executor == "ensemble":
        reason = ensemble_refusal(plan)
        if reason:
            raise PlatformError(f"This graph cannot be served as an ensemble: {reason}", code="unfusable")

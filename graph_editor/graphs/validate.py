"""The one validator of graph specs: the API, the editor and the compiler all go by it.

`graph_validate` never raises for a bad spec; it collects as many independent problems as
it can in one pass, each a GraphIssue whose message names the node, port or edge and says
what to change. A node that is itself wrong (unknown op, bad params, a missing model
version) is reported once: what depends on its types is not checked further.

Codes: invalid_spec, invalid_node_id, duplicate_node, unknown_kind, unknown_node,
invalid_edge, invalid_tensor, duplicate_tensor, no_inputs, no_outputs, unknown_op,
invalid_params, model_version_not_found, unknown_port, duplicate_connection,
unconnected_input, cycle, unreachable_output, dtype_mismatch, shape_mismatch,
branch_conflict, invalid_merge, unmerged_branch."""
from __future__ import annotations

from dataclasses import dataclass, field

from graph_editor.graphs.issues import GraphCheck, GraphIssue
from graph_editor.graphs.ops import SWITCH, InvalidParams, Op, OpError, get_op
from graph_editor.graphs.spec import Edge, Node, spec_parse
from graph_editor.graphs.structure import branch_issues, cycles, topological_order, unreached
from graph_editor.graphs.types import DimUnifier, TensorType, unify_types
from graph_editor.models import ModelVersion
from graph_editor.onnx_inspect import TENSOR_NAME, TENSOR_NAME_RULE

__all__ = ["GraphCheck", "GraphIssue", "graph_validate"]

_HINTS = {"rank": "add a reshape or flatten op between them", "dim": "change the shapes upstream so that they agree"}


@dataclass
class _Ports:
    """A node's ports: None where they cannot be known (the node is broken)."""

    inputs: tuple[str, ...] | None = ()
    outputs: tuple[str, ...] | None = ()
    expects: dict[str, TensorType] = field(default_factory=dict)  # a model's input types
    gives: dict[str, TensorType] = field(default_factory=dict)  # an input's or a model's output types
    op: Op | None = None
    params: dict | None = None  # checked; None when they are not valid


class _Validation:
    """One pass over one spec: ports, edges, structure, then types in the order nodes run."""

    def __init__(self, tenant, spec):
        parsed = spec_parse(spec)
        self.nodes, self.issues = parsed.nodes, parsed.issues
        self.edges: list[Edge] = []
        self.ports: dict[str, _Ports] = {}
        self.feeding: dict[str, dict[str, Edge]] = {node_id: {} for node_id in self.nodes}
        self.types: dict[str, TensorType] = {}
        self.dims = DimUnifier()
        self._resolve_ports(tenant)
        self._connect(parsed.edges)

    def issue(self, code: str, message: str, *, node=None, port=None, edge=None) -> None:
        self.issues.append(GraphIssue(code, message, node=node, port=port, edge=edge))

    # Ports

    def _resolve_ports(self, tenant) -> None:
        wanted = {n.model_version for n in self.nodes.values() if n.kind == "model" and not n.broken}
        versions = {v.pk: v for v in ModelVersion.objects.for_tenant(tenant).select_related("model")
                    .filter(pk__in=wanted)} if wanted else {}
        for node in self.nodes.values():
            self.ports[node.id] = self._node_ports(node, versions)

    def _node_ports(self, node: Node, versions: dict) -> _Ports:
        if node.broken:
            return _Ports(inputs=None, outputs=None)
        if node.kind == "input":
            return _Ports(outputs=tuple(name for name, _ in node.tensors), gives=dict(node.tensors))
        if node.kind == "output":
            return _Ports(inputs=None)  # named by the edges into it
        if node.kind == "model":
            version = versions.get(node.model_version)
            if version is None:
                self.issue("model_version_not_found", f"{node.describe()}: model version {node.model_version} does "
                           "not exist in this tenant; pick one of your model versions", node=node.id)
                return _Ports(inputs=None, outputs=None)
            batch = version.has_batch_dim
            return _Ports(inputs=tuple(t["name"] for t in version.inputs),
                          outputs=tuple(t["name"] for t in version.outputs),
                          expects={t["name"]: TensorType.from_signature(t, batch=batch) for t in version.inputs},
                          gives={t["name"]: TensorType.from_signature(t, batch=batch) for t in version.outputs})
        op = SWITCH if node.kind == "switch" else get_op(node.op)
        if op is None:
            self.issue("unknown_op", f"{node.describe()} names op {node.op!r}, which the library does not have: use "
                       "one of the ops of the palette (GET /api/v1/graphs/ops)", node=node.id)
            return _Ports(inputs=None, outputs=None)
        ports = _Ports(inputs=op.input_ports(node.params), outputs=op.outputs, op=op)
        try:
            ports.params = op.check_params(node.params)
        except InvalidParams as exc:
            for _, message in exc.problems:
                self.issue("invalid_params", f"{node.describe()}: {message}", node=node.id)
        return ports

    # Edges

    def _connect(self, edges: list[Edge]) -> None:
        for edge in edges:
            source, target = self.ports[edge.source], self.ports[edge.target]
            if source.outputs is not None and edge.source_port not in source.outputs:
                self._unknown_port(edge, edge.source, edge.source_port, source, output=True)
                continue
            if target.inputs is not None and edge.target_port not in target.inputs:
                self._unknown_port(edge, edge.target, edge.target_port, target, output=False)
                continue
            if self.nodes[edge.target].kind == "output" and not TENSOR_NAME.fullmatch(edge.target_port):
                self.issue("invalid_tensor", f"{edge.describe()}: '{edge.target_port}' would name a graph output, "
                           f"and tensor names must be {TENSOR_NAME_RULE}: rename the port", node=edge.target,
                           port=edge.target_ref, edge=edge.index)
                continue
            earlier = self.feeding[edge.target].get(edge.target_port)
            if earlier is not None:
                self.issue("duplicate_connection", f"{edge.describe()}: {edge.target_ref} is already fed by "
                           f"{earlier.describe()}; an input port takes one edge: remove one of them",
                           node=edge.target, port=edge.target_ref, edge=edge.index)
                continue
            self.feeding[edge.target][edge.target_port] = edge
            self.edges.append(edge)

    def _unknown_port(self, edge: Edge, node_id: str, port: str, ports: _Ports, *, output: bool) -> None:
        node = self.nodes[node_id]
        listed, other = (ports.outputs, ports.inputs) if output else (ports.inputs, ports.outputs)
        role = "output" if output else "input"
        if other and port in other:
            reason = f"'{port}' is an {'input' if output else 'output'} port of {node.describe()}"
        else:
            reason = f"{node.describe()} has no {role} port '{port}'"
        choice = ", ".join(listed) if listed else "none"
        self.issue("unknown_port", f"{edge.describe()}: {reason}; its {role} ports are: {choice}", node=node_id,
                   port=f"{node_id}.{port}", edge=edge.index)

    # Structure

    def check_structure(self) -> list[str]:
        """Graph-level checks; returns the order nodes run in (those on cycles left out)."""
        kinds = [node.kind for node in self.nodes.values()]
        if "input" not in kinds:
            self.issue("no_inputs", "the graph has no input node: add one whose tensors are what requests carry")
        if "output" not in kinds:
            self.issue("no_outputs", "the graph has no output node: add one and connect what the graph answers")
        self._check_unique_tensors()
        for node_id, ports in self.ports.items():
            node = self.nodes[node_id]
            if node.kind == "output" and not self.feeding[node_id]:
                self.issue("unconnected_input", f"output node '{node_id}' has no edges into it: connect a tensor to "
                           f"{node_id}.<output name>, or delete the node", node=node_id)
            for port in ports.inputs or ():
                if port not in self.feeding[node_id]:
                    self.issue("unconnected_input", f"{node.describe()}: input port {node_id}.{port} is not "
                               "connected: add an edge into it", node=node_id, port=f"{node_id}.{port}")
        node_ids = list(self.nodes)
        for cycle in cycles(node_ids, self.edges):
            path = " -> ".join([edge.source for edge in cycle] + [cycle[0].source])
            self.issue("cycle", f"the nodes {path} form a cycle (edges {', '.join(str(e.index) for e in cycle)}); "
                       "each node runs once per request: remove one of these edges", node=cycle[0].source,
                       edge=cycle[-1].index)
        order = topological_order(node_ids, self.edges)
        why = unreached(self.nodes, order, self.feeding, {n: p.inputs for n, p in self.ports.items()})
        for node_id, node in self.nodes.items():
            if node.kind != "output":
                continue
            for port, edge in self.feeding[node_id].items():
                reason = why.get(edge.source) or why.get(node_id)
                if reason:
                    self.issue("unreachable_output", f"graph output '{port}' ({node_id}.{port}) is not reachable "
                               f"from the graph's inputs: {reason}", node=node_id, port=f"{node_id}.{port}",
                               edge=edge.index)
        self.issues.extend(branch_issues(self.nodes, order, self.feeding))
        return order

    def _check_unique_tensors(self) -> None:
        for kind, ports_of in (("input", lambda n: self.ports[n.id].outputs or ()),
                               ("output", lambda n: tuple(self.feeding[n.id]))):
            seen: dict[str, str] = {}
            for node in self.nodes.values():
                if node.kind != kind:
                    continue
                for name in ports_of(node):
                    if name in seen and seen[name] != node.id:
                        self.issue("duplicate_tensor", f"graph {kind} '{name}' is given by both '{seen[name]}' and "
                                   f"'{node.id}': rename one ({node.id}.{name})", node=node.id,
                                   port=f"{node.id}.{name}")
                    seen.setdefault(name, node.id)

    # Types

    def propagate(self, order: list[str]) -> None:
        for node_id in order:
            node, ports, edges = self.nodes[node_id], self.ports[node_id], self.feeding[node_id]
            given = {port: self.types[e.source_ref] for port, e in edges.items() if e.source_ref in self.types}
            if node.kind in ("input", "model"):
                for port, edge in edges.items():
                    if port in given and port in ports.expects:
                        self._check_edge(edge, given[port], ports.expects[port])
                self._set(node_id, ports.expects)
                self._set(node_id, ports.gives)
                continue
            # An output's ports, and an op's or a switch's inputs, are what feeds them.
            self._set(node_id, given)
            if node.kind != "output" and ports.op is not None and ports.params is not None \
                    and ports.inputs is not None and set(ports.inputs) <= set(given):
                self._infer(node, ports, given, edges)

    def _check_edge(self, edge: Edge, given: TensorType, expected: TensorType) -> None:
        problem = unify_types(given, expected, self.dims, where=edge.describe())
        if problem is None:
            return
        code, differs, reason = problem
        hint = _HINTS.get(differs) or f"add a cast op (to {expected.datatype}) between them"
        self.issue(code, f"{edge.describe()}: {edge.target_ref} takes {self.dims.resolve_type(expected)} but "
                   f"{edge.source_ref} gives {self.dims.resolve_type(given)}: {reason}; {hint}", node=edge.target,
                   port=edge.target_ref, edge=edge.index)

    def _infer(self, node: Node, ports: _Ports, given: dict[str, TensorType], edges: dict[str, Edge]) -> None:
        trial = self.dims.copy(scope=node.id)
        inputs = {port: trial.resolve_type(given[port]) for port in ports.inputs}
        try:
            outputs = ports.op.infer(ports.params, inputs, trial)
        except OpError as exc:
            edge = edges.get(exc.port)
            where = f", input {node.id}.{exc.port}" if exc.port else ""
            bound = self.dims.bindings(given.values())
            note = f" (here {', '.join(bound)})" if bound and exc.code == "shape_mismatch" else ""
            self.issue(exc.code, f"{node.describe()}{where}: {exc.message}{note}", node=node.id,
                       port=f"{node.id}.{exc.port}" if exc.port else None, edge=edge.index if edge else None)
            return
        self.dims.adopt(trial)
        self._set(node.id, inputs)
        self._set(node.id, outputs)

    def _set(self, node_id: str, types: dict[str, TensorType]) -> None:
        for port, tensor in types.items():
            self.types[f"{node_id}.{port}"] = tensor

    # The answer

    def check(self) -> GraphCheck:
        resolved = {ref: self.dims.resolve_type(tensor) for ref, tensor in self.types.items()}
        ports = {ref: {"datatype": t.datatype, "shape": t.port_shape()} for ref, t in resolved.items()}

        def signature(kind: str, names) -> list[dict]:
            return [{"name": name, "datatype": resolved[ref].datatype, "shape": resolved[ref].kserve_shape()}
                    for node in self.nodes.values() if node.kind == kind
                    for name in names(node) if (ref := f"{node.id}.{name}") in resolved]

        inputs = signature("input", lambda n: [name for name, _ in n.tensors])
        outputs = signature("output", lambda n: list(self.feeding[n.id]))
        return GraphCheck(errors=self.issues, ports=ports, inputs=inputs, outputs=outputs)


def graph_validate(*, tenant, spec) -> GraphCheck:
    """Check a spec against the op library and the tenant's model versions (another tenant's
    version reads as missing). Every problem is an issue; this raises for none of them."""
    validation = _Validation(tenant, spec)
    order = validation.check_structure()
    validation.propagate(order)
    return validation.check()

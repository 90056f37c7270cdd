"""A graph spec (the JSON stored on a graph version) read into nodes and edges.

Every structural problem becomes a GraphIssue and reading goes on, so that one pass
reports them all: a node that cannot be read is kept as `broken` (its ports unknown) when
its id is usable, so that edges to it raise no second complaint."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from graph_editor.graphs.issues import GraphIssue
from graph_editor.graphs.types import BATCH, DATATYPES, SYMBOL_NAME, TensorType
from graph_editor.onnx_inspect import MAX_DIM, MAX_RANK, TENSOR_NAME, TENSOR_NAME_RULE

NODE_ID = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
NODE_ID_RULE = "1 to 64 letters, digits, _ and -, starting with a letter"
KINDS = ("input", "output", "model", "op", "switch")
MAX_NODES = 256
MAX_EDGES = 1024


@dataclass
class Node:
    id: str
    kind: str | None  # None: an unknown kind
    op: str | None = None
    params: object = None
    model_version: int | None = None
    tensors: list[tuple[str, TensorType]] = field(default_factory=list)  # an input node's
    broken: bool = False  # unreadable: its ports are unknown and nothing about it is checked further

    def describe(self) -> str:
        what = self.op if self.kind == "op" and self.op else self.kind
        return f"node '{self.id}' ({what})"


@dataclass
class Edge:
    index: int
    source: str
    source_port: str
    target: str
    target_port: str

    @property
    def source_ref(self) -> str:
        return f"{self.source}.{self.source_port}"

    @property
    def target_ref(self) -> str:
        return f"{self.target}.{self.target_port}"

    def describe(self) -> str:
        return f"edge {self.index} ({self.source_ref} -> {self.target_ref})"


@dataclass
class Spec:
    nodes: dict[str, Node]
    edges: list[Edge]
    issues: list[GraphIssue]


def _dim(value, axis: int, node: str, tensor: str):
    """A spec dim as a TensorType dim, or None when it is not one."""
    if isinstance(value, bool):
        return None
    if value == -1:
        return BATCH if axis == 0 else f"{node}.{tensor}[{axis}]"
    if isinstance(value, int) and 1 <= value <= MAX_DIM:
        return value
    if isinstance(value, str) and SYMBOL_NAME.fullmatch(value):
        return value
    return None


def _input_tensors(raw: dict, node_id: str, issues: list[GraphIssue]) -> list[tuple[str, TensorType]] | None:
    tensors = raw.get("tensors")
    if not isinstance(tensors, list) or not tensors:
        issues.append(GraphIssue("invalid_spec", f"input node '{node_id}' needs `tensors`: a list of "
                                 '{"name", "datatype", "shape"}, one per graph input', node=node_id))
        return None
    parsed = []
    for position, tensor in enumerate(tensors):
        name = tensor.get("name") if isinstance(tensor, dict) else None
        label = f"tensor {position} of input node '{node_id}'"
        if not isinstance(name, str) or not TENSOR_NAME.fullmatch(name):
            issues.append(GraphIssue("invalid_tensor", f"{label} has name {name!r}: tensor names must be "
                                     f"{TENSOR_NAME_RULE}", node=node_id))
            continue
        port = f"{node_id}.{name}"
        datatype, shape = tensor.get("datatype"), tensor.get("shape")
        if datatype not in DATATYPES:
            issues.append(GraphIssue("invalid_tensor", f"graph input {port} has datatype {datatype!r}: use one of "
                                     f"{', '.join(DATATYPES)}", node=node_id, port=port))
            continue
        if not isinstance(shape, list) or len(shape) > MAX_RANK:
            issues.append(GraphIssue("invalid_tensor", f"graph input {port} has shape {shape!r}: give a list of at "
                                     f"most {MAX_RANK} dims, e.g. [-1, 8, 8]", node=node_id, port=port))
            continue
        dims = [_dim(value, axis, node_id, name) for axis, value in enumerate(shape)]
        bad = [shape[axis] for axis, dim in enumerate(dims) if dim is None]
        if bad:
            issues.append(GraphIssue("invalid_tensor", f"graph input {port} has shape {shape}: {bad[0]!r} is not a "
                                     f"dim; use -1 (any size; the first is the batch), a size from 1 to {MAX_DIM}, "
                                     "or a name such as \"n\" for a size shared by several tensors",
                                     node=node_id, port=port))
            continue
        if any(name == other for other, _ in parsed):
            issues.append(GraphIssue("duplicate_tensor", f"input node '{node_id}' lists '{name}' twice: rename one",
                                     node=node_id, port=port))
            continue
        parsed.append((name, TensorType(datatype, dims)))
    return parsed


def _node(raw, position: int, issues: list[GraphIssue]) -> Node | None:
    if not isinstance(raw, dict):
        issues.append(GraphIssue("invalid_spec", f"node {position} is {type(raw).__name__}, not an object with "
                                 "`id` and `kind`"))
        return None
    node_id = raw.get("id")
    if not isinstance(node_id, str) or not NODE_ID.fullmatch(node_id):
        issues.append(GraphIssue("invalid_node_id", f"node {position} has id {node_id!r}: ids are {NODE_ID_RULE}"))
        return None
    kind = raw.get("kind")
    node = Node(id=node_id, kind=kind if kind in KINDS else None)
    if node.kind is None:
        issues.append(GraphIssue("unknown_kind", f"node '{node_id}' has kind {kind!r}: use one of "
                                 f"{', '.join(KINDS)}", node=node_id))
        node.broken = True
    elif kind == "input":
        tensors = _input_tensors(raw, node_id, issues)
        node.tensors = tensors or []
        node.broken = tensors is None
    elif kind == "model":
        version = raw.get("model_version")
        if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version < 2**63:
            issues.append(GraphIssue("invalid_spec", f"model node '{node_id}' has model_version {version!r}: give "
                                     "the id of one of your model versions", node=node_id))
            node.broken = True
        node.model_version = version
    elif kind in ("op", "switch"):
        node.op = raw.get("op") if kind == "op" else "switch"
        node.params = raw.get("params", {})
    return node


def _endpoint(value) -> tuple[str, str] | None:
    """'<node id>.<port name>' split at its first dot (tensor names may hold dots)."""
    if not isinstance(value, str) or "." not in value:
        return None
    node, port = value.split(".", 1)
    return (node, port) if node and port else None


def _edge(raw, index: int, nodes: dict[str, Node], unreadable: set, issues: list[GraphIssue]) -> Edge | None:
    ends = (raw.get("from"), raw.get("to")) if isinstance(raw, dict) else (None, None)
    parsed = [_endpoint(end) for end in ends]
    if None in parsed:
        issues.append(GraphIssue("invalid_edge", f"edge {index} is {raw!r}: an edge is "
                                 '{"from": "<node>.<output port>", "to": "<node>.<input port>"}', edge=index))
        return None
    (source, source_port), (target, target_port) = parsed
    edge = Edge(index, source, source_port, target, target_port)
    if source in unreadable or target in unreadable:
        return None  # the node's own issue says what is wrong
    for node_id in (source, target):
        if node_id not in nodes:
            issues.append(GraphIssue("unknown_node", f"{edge.describe()} names node '{node_id}', which is not in the "
                                     "graph: add the node or fix the edge", edge=index))
            return None
    if nodes[target].kind == "input":
        issues.append(GraphIssue("invalid_edge", f"{edge.describe()} goes into input node '{target}', which takes no "
                                 "edges: its tensors come from the request", node=target, edge=index))
        return None
    if nodes[source].kind == "output":
        issues.append(GraphIssue("invalid_edge", f"{edge.describe()} starts at output node '{source}', which has no "
                                 "outputs: start it at the node that feeds the output", node=source, edge=index))
        return None
    return edge


def spec_parse(spec) -> Spec:
    """Read a spec; every problem found is in .issues, and what could be read is kept."""
    issues: list[GraphIssue] = []
    nodes: dict[str, Node] = {}
    if not isinstance(spec, dict):
        issues.append(GraphIssue("invalid_spec", f"the spec is {type(spec).__name__}: it must be an object "
                                 'with "nodes" and "edges" lists'))
        return Spec(nodes, [], issues)
    raw_nodes, raw_edges = spec.get("nodes"), spec.get("edges", [])
    for key, value, limit in (("nodes", raw_nodes, MAX_NODES), ("edges", raw_edges, MAX_EDGES)):
        if not isinstance(value, list):
            issues.append(GraphIssue("invalid_spec", f'the spec\'s "{key}" must be a list, not {value!r:.40}'))
        elif len(value) > limit:
            issues.append(GraphIssue("invalid_spec", f"the spec has {len(value)} {key}; at most {limit}: split the "
                                     "graph"))
    if issues:
        return Spec(nodes, [], issues)
    unreadable = set()
    for position, raw in enumerate(raw_nodes):
        node = _node(raw, position, issues)
        if node is None:
            if isinstance(raw, dict) and isinstance(raw.get("id"), str):
                unreadable.add(raw["id"])
            continue
        if node.id in nodes:
            issues.append(GraphIssue("duplicate_node", f"node id '{node.id}' is used by more than one node "
                                     f"(again at position {position}): give each node its own id", node=node.id))
            continue
        nodes[node.id] = node
    edges = [edge for index, raw in enumerate(raw_edges) if (edge := _edge(raw, index, nodes, unreadable, issues))]
    return Spec(nodes, edges, issues)

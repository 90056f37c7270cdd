"""A valid graph fused into one ONNX model: the cheapest executor for a graph whose steps
are all ONNX (built-in ops and the tenant's model versions), one session instead of one
per step.

How it is put together:
- Each step is built on its own first (`graph_steps`): an op's or a switch's ONNX form from
  the op library, typed by what the validator worked out for its ports, and a model node's
  ONNX file. The chain of these step models is the meaning the fused model keeps, and what
  the tests compare it with.
- Opsets only go up: every step is brought to the highest default-domain opset among them
  (at least the op library's 17) with `onnx.version_converter`. Upgrading is what the
  converter does reliably; going down would fail for any op newer than the target. Other
  domains (ai.onnx.ml) are not converted: the fused model imports the highest version any
  step uses, and the checker confirms that every step's nodes still fit it.
- Every name inside a step is prefixed with `<node id>#` (`onnx.compose.add_prefix`). A node
  id cannot hold '#', and neither can a graph's input and output names, so nothing collides.
- The GraphProto is assembled from the prefixed nodes and initializers rather than by
  `onnx.compose.merge_models`, which joins two models along one io_map: a graph is a DAG in
  which one tensor feeds several steps and a step reads several. Each edge becomes an
  Identity node from the source tensor to the step's prefixed input, so a step's nodes and
  subgraphs are kept as they are; onnxruntime removes these Identity nodes when it loads the
  model, so they cost nothing per request.
- A switch keeps the op library's semantic (graph_editor.graphs.ops.select): the branch it
  picks gets all the rows and the other one none, and merge joins them. The untaken branch
  then runs on a 0-row tensor, which costs a few kernel calls rather than a model's work,
  and the answers are those of the step models one by one. An ONNX `If` would instead move
  each branch's steps into subgraphs and rewrite their outer-scope reads, and nested or
  partly shared branches would need the validator's branch analysis to place every node;
  that is worth it only for a branch whose steps are costly even on 0 rows."""
from __future__ import annotations

from dataclasses import dataclass, field

import onnx
from onnx import compose, helper, version_converter

from gateway.contract.errors import PlatformError
from graph_editor.graphs.ops import OPSET, SWITCH, get_op
from graph_editor.graphs.ops.base import PRODUCER
from graph_editor.graphs.spec import spec_parse
from graph_editor.graphs.structure import topological_order
from graph_editor.graphs.types import TensorType
from graph_editor.graphs.validate import GraphCheck, graph_validate
from graph_editor.models import ModelVersion

SEPARATOR = "#"  # between a step's node id and its own names: neither node ids nor tensor names hold it
_DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass
class Step:
    node: str  # the spec's node id
    kind: str  # op, switch or model
    model: onnx.ModelProto  # its own ONNX form: graph inputs and outputs named by its ports
    feeds: dict[str, str]  # input port -> the "<node>.<port>" it reads


@dataclass
class FusedGraph:
    model: onnx.ModelProto  # inputs and outputs named and typed as `inputs` and `outputs` say
    steps: list[str]  # the node ids fused into it, in the order they run
    inputs: list[dict]  # the graph's signature, as GraphCheck gives it
    outputs: list[dict]
    opset: int  # the fused model's default-domain opset
    upgraded: list[str] = field(default_factory=list)  # steps whose opset was raised to `opset`


def port_type(port: dict) -> TensorType:
    """A port's type as GraphCheck.ports gives it ({"datatype", "shape"}, -1 unknown)."""
    return TensorType(port["datatype"], tuple(None if d == -1 else d for d in port["shape"]))


def _checked(*, tenant, spec) -> GraphCheck:
    check = graph_validate(tenant=tenant, spec=spec)
    if not check.valid:
        first = check.errors[0]
        raise PlatformError(f"the graph is not valid: {first.message}", code="invalid_graph")
    return check


def graph_steps(*, tenant, spec) -> tuple[GraphCheck, list[Step]]:
    """Each op, switch and model node of a valid graph as its own ONNX model, in run order.
    Raise PlatformError (invalid_graph) for a graph the validator refuses, another tenant's
    model version included."""
    check = _checked(tenant=tenant, spec=spec)
    parsed = spec_parse(spec)
    feeding: dict[str, dict[str, str]] = {node_id: {} for node_id in parsed.nodes}
    for edge in parsed.edges:
        feeding[edge.target][edge.target_port] = edge.source_ref
    wanted = {n.model_version for n in parsed.nodes.values() if n.kind == "model"}
    versions = {v.pk: v for v in ModelVersion.objects.for_tenant(tenant).filter(pk__in=wanted)} if wanted else {}
    steps = []
    for node_id in topological_order(list(parsed.nodes), parsed.edges):
        node = parsed.nodes[node_id]
        if node.kind in ("input", "output"):
            continue
        if node.kind == "model":
            version = versions.get(node.model_version)
            if version is None:  # deleted since the validator read it
                raise PlatformError(f"{node.describe()}: model version {node.model_version} does not exist in this "
                                    "tenant; pick one of your model versions", code="invalid_graph")
            model = onnx.load(str(version.absolute_path))
        else:
            op = SWITCH if node.kind == "switch" else get_op(node.op)
            inputs = {port: port_type(check.ports[f"{node_id}.{port}"]) for port in feeding[node_id]}
            model = op.build(node.params, inputs)
        steps.append(Step(node=node_id, kind=node.kind, model=model, feeds=feeding[node_id]))
    return check, steps


def _opset(model: onnx.ModelProto) -> int:
    return max((o.version for o in model.opset_import if o.domain in _DEFAULT_DOMAINS), default=1)


def _upgraded(step: Step, target: int) -> onnx.ModelProto:
    try:
        return version_converter.convert_version(step.model, target)
    except Exception as exc:  # the converter raises bare RuntimeErrors and ValueErrors
        raise PlatformError(f"step '{step.node}' is at opset {_opset(step.model)} and could not be converted to "
                            f"opset {target}, which another step needs: {exc}", code="unfusable") from None


def _opset_imports(models: list[onnx.ModelProto], target: int) -> list:
    versions = {"": target}
    for model in models:
        for opset in model.opset_import:
            if opset.domain not in _DEFAULT_DOMAINS:
                versions[opset.domain] = max(versions.get(opset.domain, 0), opset.version)
    return [helper.make_opsetid(domain, version) for domain, version in versions.items()]


def _tensor(source_ref: str, named: dict[str, str]) -> str:
    """The fused graph's tensor for "<node>.<port>": a tensor it takes (a graph input, or
    what a segment reads from outside) by the name it is given, a step's output by its
    prefixed one."""
    if source_ref in named:
        return named[source_ref]
    node, port = source_ref.split(".", 1)
    return f"{node}{SEPARATOR}{port}"


def steps_assemble(*, steps: list[Step], models: list[onnx.ModelProto], named: dict[str, str],
                   inputs: list, outputs: list[tuple[str, str, TensorType]]):
    """The nodes, initializers and value infos of `steps` (run order) joined into one
    GraphProto. `named`: "<node>.<port>" refs it takes as inputs -> their tensor names;
    `inputs`: their ValueInfoProtos; `outputs`: (name, the ref it is, its type)."""
    nodes, initializers, sparse, value_info, functions = [], [], [], [], []
    for step, model in zip(steps, models, strict=True):
        prefix = f"{step.node}{SEPARATOR}"
        model = compose.add_prefix(model, prefix, rename_functions=True)
        for port, source in step.feeds.items():
            nodes.append(helper.make_node("Identity", [_tensor(source, named)], [prefix + port],
                                          name=f"{prefix}in:{port}"))
        nodes.extend(model.graph.node)
        initializers.extend(model.graph.initializer)
        sparse.extend(model.graph.sparse_initializer)
        value_info.extend(model.graph.value_info)
        functions.extend(model.functions)
    graph_outputs = []
    for name, ref, tensor_type in outputs:
        nodes.append(helper.make_node("Identity", [_tensor(ref, named)], [name], name=f"out:{name}"))
        graph_outputs.append(tensor_type.value_info(name))
    graph = helper.make_graph(nodes, "graph", inputs, graph_outputs, initializer=initializers,
                              sparse_initializer=sparse, value_info=value_info)
    return graph, functions


def steps_model(steps: list[Step], *, named: dict[str, str], inputs: list,
                outputs: list[tuple[str, str, TensorType]]) -> tuple[onnx.ModelProto, int, list[str]]:
    """`steps` as one checked ONNX model, at the highest opset among them; with the opset
    and the steps whose opset was raised. Raise PlatformError (unfusable)."""
    target = max([OPSET] + [_opset(step.model) for step in steps])
    upgraded = [step.node for step in steps if _opset(step.model) < target]
    models = [_upgraded(step, target) if step.node in upgraded else step.model for step in steps]
    graph, functions = steps_assemble(steps=steps, models=models, named=named, inputs=inputs, outputs=outputs)
    opsets = _opset_imports(models, target)
    fused = helper.make_model(graph, opset_imports=opsets, producer_name=PRODUCER, functions=functions)
    fused.ir_version = max([helper.find_min_ir_version_for(opsets)] + [m.ir_version for m in models])
    try:
        onnx.checker.check_model(fused, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise PlatformError(f"the graph's steps do not fit in one ONNX model: {exc}", code="unfusable") from None
    return fused, target, upgraded


def graph_fuse(*, tenant, spec) -> FusedGraph:
    """One ONNX model computing what the graph's steps compute one by one; it passes
    onnx.checker's full check. Raise PlatformError: invalid_graph for a graph the validator
    refuses, unfusable for steps that cannot share one model (an opset the converter cannot
    raise)."""
    check, steps = graph_steps(tenant=tenant, spec=spec)
    parsed = spec_parse(spec)
    named = {f"{node.id}.{name}": name for node in parsed.nodes.values() if node.kind == "input"
             for name, _ in node.tensors}
    graph_inputs = [port_type(check.ports[ref]).value_info(name) for ref, name in named.items()]
    outputs = []
    for edge in (e for node in parsed.nodes.values() if node.kind == "output" for e in parsed.edges
                 if e.target == node.id):
        if edge.target_port in named.values():
            raise PlatformError(f"graph output '{edge.target_port}' has the name of a graph input: rename it",
                                code="unfusable")
        outputs.append((edge.target_port, edge.source_ref, port_type(check.ports[edge.target_ref])))
    fused, target, upgraded = steps_model(steps, named=named, inputs=graph_inputs, outputs=outputs)
    return FusedGraph(model=fused, steps=[step.node for step in steps], inputs=check.inputs, outputs=check.outputs,
                      opset=target, upgraded=upgraded)

"""The graph validator: a unit test per error code, each naming the node, port or edge it is
about; the three-node and the switch graph pass with their ports and signature; another
tenant's model version reads as a missing one.

Graphs without model nodes never read the database: those tests pass no tenant."""
import copy

import pytest

from graph_editor.graphs.validate import GraphCheck, GraphIssue, graph_validate
from graph_editor.services import model_version_upload


def tensor(name, datatype, shape):
    return {"name": name, "datatype": datatype, "shape": shape}


def edges(*pairs):
    return [{"from": source, "to": target} for source, target in pairs]


# in.x FP32[batch, 4] -> softmax -> out.probs
SOFTMAX = {
    "nodes": [{"id": "in", "kind": "input", "tensors": [tensor("x", "FP32", [-1, 4])]},
              {"id": "sm", "kind": "op", "op": "softmax", "position": {"x": 10, "y": 20}},
              {"id": "out", "kind": "output"}],
    "edges": edges(("in.x", "sm.x"), ("sm.y", "out.probs")),
}

# softmax, then a switch on the top score: below 0.9 the probabilities are scaled down,
# otherwise they pass as they are.
BRANCHES = {
    "nodes": [{"id": "in", "kind": "input", "tensors": [tensor("x", "FP32", [-1, 4])]},
              {"id": "sm", "kind": "op", "op": "softmax"},
              {"id": "top", "kind": "op", "op": "topk", "params": {"k": 1}},
              {"id": "sw", "kind": "switch", "params": {"op": "lt", "value": 0.9}},
              {"id": "damp", "kind": "op", "op": "scale", "params": {"scale": 0.5}},
              {"id": "pick", "kind": "op", "op": "merge"},
              {"id": "out", "kind": "output"}],
    "edges": edges(("in.x", "sm.x"), ("sm.y", "top.x"), ("sm.y", "sw.x"), ("top.values", "sw.when"),
                   ("sw.then", "damp.x"), ("damp.y", "pick.then"), ("sm.y", "pick.else"), ("pick.y", "out.probs")),
}


def changed(base, *, nodes=None, drop_nodes=(), add_nodes=(), edges=None, add_edges=(), drop_edges=()):
    spec = copy.deepcopy(base)
    for node in spec["nodes"]:
        node.update((nodes or {}).get(node["id"], {}))
    spec["nodes"] = [n for n in spec["nodes"] if n["id"] not in drop_nodes] + list(add_nodes)
    if edges is not None:
        spec["edges"] = edges
    spec["edges"] = [e for i, e in enumerate(spec["edges"]) if i not in drop_edges] + list(add_edges)
    return spec


def codes(check: GraphCheck) -> list[str]:
    return [issue.code for issue in check.errors]


def only(check: GraphCheck, code: str) -> GraphIssue:
    found = [issue for issue in check.errors if issue.code == code]
    assert len(found) == 1, check.errors
    return found[0]


def test_the_op_graphs_are_valid():
    for spec in (SOFTMAX, BRANCHES):
        check = graph_validate(tenant=None, spec=spec)
        assert check.valid, check.errors
    check = graph_validate(tenant=None, spec=BRANCHES)
    assert check.ports["sw.then"] == {"datatype": "FP32", "shape": ["batch", 4]}
    assert check.ports["top.values"] == {"datatype": "FP32", "shape": ["batch", 1]}
    assert check.outputs == [{"name": "probs", "datatype": "FP32", "shape": [-1, 4]}]


# (code, spec, the issue's node, port and edge, what its message says)
CASES = [
    ("invalid_spec", ["not", "a", "graph"], (None, None, None), "must be an object"),
    ("invalid_spec", {"nodes": {"in": {}}, "edges": []}, (None, None, None), '"nodes" must be a list'),
    ("invalid_node_id", changed(SOFTMAX, nodes={"sm": {"id": "2-sm"}}), (None, None, None), "'2-sm'"),
    ("duplicate_node", changed(SOFTMAX, add_nodes=[{"id": "sm", "kind": "op", "op": "argmax"}]),
     ("sm", None, None), "node id 'sm' is used by more than one node"),
    ("unknown_kind", changed(SOFTMAX, nodes={"sm": {"kind": "lambda"}}), ("sm", None, None), "use one of input"),
    ("unknown_node", changed(SOFTMAX, add_edges=edges(("ghost.y", "out.extra"))), (None, None, 2),
     "edge 2 (ghost.y -> out.extra) names node 'ghost'"),
    ("invalid_edge", changed(SOFTMAX, add_edges=[{"from": "sm", "to": "out.y"}]), (None, None, 2), "edge 2 is"),
    ("invalid_edge", changed(SOFTMAX, add_edges=edges(("sm.y", "in.x"))), ("in", None, 2),
     "goes into input node 'in'"),
    ("invalid_tensor", changed(SOFTMAX, nodes={"in": {"tensors": [tensor("x", "FLOAT", [-1, 4])]}}),
     ("in", "in.x", None), "datatype 'FLOAT'"),
    ("invalid_tensor", changed(SOFTMAX, nodes={"in": {"tensors": [tensor("x", "FP32", [-1, 0])]}}),
     ("in", "in.x", None), "0 is not a dim"),
    ("invalid_tensor", changed(SOFTMAX, edges=edges(("in.x", "sm.x"), ("sm.y", "out.my probs"))),
     ("out", "out.my probs", 1), "would name a graph output"),
    ("duplicate_tensor", changed(SOFTMAX, add_nodes=[{"id": "in2", "kind": "input",
                                                       "tensors": [tensor("x", "FP32", [-1, 4])]}]),
     ("in2", "in2.x", None), "graph input 'x' is given by both 'in' and 'in2'"),
    ("no_inputs", changed(SOFTMAX, drop_nodes=["in"], edges=edges(("sm.y", "out.probs"))), (None, None, None),
     "no input node"),
    ("no_outputs", changed(SOFTMAX, drop_nodes=["out"], edges=edges(("in.x", "sm.x"))), (None, None, None),
     "no output node"),
    ("unknown_op", changed(SOFTMAX, nodes={"sm": {"op": "fft"}}), ("sm", None, None), "op 'fft'"),
    ("invalid_params", changed(SOFTMAX, nodes={"sm": {"params": {"axis": "last"}}}), ("sm", None, None),
     "node 'sm' (softmax): param 'axis' must be an integer"),
    ("unknown_port", changed(SOFTMAX, edges=edges(("in.x", "sm.x"), ("sm.z", "out.probs"))), ("sm", "sm.z", 1),
     "node 'sm' (softmax) has no output port 'z'; its output ports are: y"),
    ("unknown_port", changed(SOFTMAX, edges=edges(("in.x", "sm.x"), ("sm.x", "out.probs"))), ("sm", "sm.x", 1),
     "'x' is an input port of node 'sm'"),
    ("duplicate_connection", changed(SOFTMAX, add_edges=edges(("in.x", "sm.x"))), ("sm", "sm.x", 2),
     "sm.x is already fed by edge 0 (in.x -> sm.x)"),
    ("unconnected_input", changed(SOFTMAX, drop_edges=[0]), ("sm", "sm.x", None), "input port sm.x is not connected"),
    ("unconnected_input", changed(SOFTMAX, edges=edges(("in.x", "sm.x"))), ("out", None, None),
     "output node 'out' has no edges into it"),
    ("unreachable_output", changed(SOFTMAX, drop_edges=[0]), ("out", "out.probs", 0),
     "graph output 'probs' (out.probs) is not reachable from the graph's inputs: sm.x is not connected"),
    ("dtype_mismatch", changed(SOFTMAX, nodes={"in": {"tensors": [tensor("x", "UINT8", [-1, 4])]}}),
     ("sm", "sm.x", 0),
     "node 'sm' (softmax), input sm.x: softmax takes FP16, FP32, FP64 on 'x', not UINT8; add a cast op"),
    ("shape_mismatch", changed(SOFTMAX, nodes={"sm": {"op": "concat"}},
                               add_nodes=[{"id": "in2", "kind": "input", "tensors": [tensor("w", "FP32", [-1, 4, 1])]}],
                               edges=edges(("in.x", "sm.x0"), ("in2.w", "sm.x1"), ("sm.y", "out.probs"))),
     ("sm", "sm.x1", 1), "'x1' has shape [batch, 4, 1] but 'x0' has [batch, 4]"),
    ("branch_conflict", changed(BRANCHES, add_nodes=[{"id": "both", "kind": "op", "op": "concat"}],
                                add_edges=edges(("sw.then", "both.x0"), ("sw.else", "both.x1"), ("both.y", "out.b"))),
     ("both", None, None), "node 'both' (concat) reads both the then and the else branch of switch 'sw'"),
    ("invalid_merge", changed(BRANCHES, drop_edges=[5, 6], add_edges=edges(("sw.else", "pick.then"),
                                                                            ("damp.y", "pick.else"))),
     ("pick", "pick.then", 6), "swap its two edges"),
    ("unmerged_branch", changed(BRANCHES, add_edges=edges(("damp.y", "out.damped"))), ("out", "out.damped", 8),
     "graph output out.damped depends on the then branch of switch 'sw'"),
]


@pytest.mark.parametrize("code, spec, where, fragment", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_each_error_is_reported_with_what_it_is_about(code, spec, where, fragment):
    check = graph_validate(tenant=None, spec=spec)
    assert not check.valid
    issue = only(check, code)
    assert (issue.node, issue.port, issue.edge) == where
    assert fragment in issue.message
    named = [name for name in (issue.port, issue.node) if name] or ([f"edge {issue.edge}"] if issue.edge else [])
    assert all(name in issue.message for name in named), issue.message


def test_a_cycle_names_its_nodes_and_edges():
    spec = {
        "nodes": [{"id": "in", "kind": "input", "tensors": [tensor("x", "FP32", [-1, 4])]},
                  {"id": "add", "kind": "op", "op": "concat", "params": {"axis": 0}},
                  {"id": "a", "kind": "op", "op": "scale"}, {"id": "b", "kind": "op", "op": "scale"},
                  {"id": "out", "kind": "output"}],
        "edges": edges(("in.x", "add.x0"), ("b.y", "add.x1"), ("add.y", "a.x"), ("a.y", "b.x"), ("b.y", "out.y")),
    }
    issue = only(graph_validate(tenant=None, spec=spec), "cycle")
    assert issue.node == "add" and issue.edge == 1
    assert "the nodes add -> a -> b -> add form a cycle (edges 2, 3, 1)" in issue.message
    assert "remove one of these edges" in issue.message


def test_symbolic_dims_have_one_binding_per_graph():
    spec = {
        "nodes": [{"id": "in", "kind": "input", "tensors": [tensor("a", "FP32", ["n", 4]), tensor("b", "FP32", [3, 4]),
                                                             tensor("c", "FP32", [5, 4])]},
                  {"id": "ab", "kind": "op", "op": "concat"}, {"id": "ac", "kind": "op", "op": "concat"},
                  {"id": "out", "kind": "output"}],
        "edges": edges(("in.a", "ab.x0"), ("in.b", "ab.x1"), ("in.a", "ac.x0"), ("in.c", "ac.x1"),
                       ("ab.y", "out.ab"), ("ac.y", "out.ac")),
    }
    check = graph_validate(tenant=None, spec=spec)
    issue = only(check, "shape_mismatch")
    assert (issue.node, issue.port, issue.edge) == ("ac", "ac.x1", 3)
    assert "differ at dim 0 (3 is not 5)" in issue.message and "(here 'n' is 3 (at ab.x1))" in issue.message
    assert check.ports["ab.y"] == {"datatype": "FP32", "shape": [3, 8]}
    assert check.inputs[0] == {"name": "a", "datatype": "FP32", "shape": [3, 4]}


def test_independent_errors_are_all_reported_in_one_pass():
    spec = changed(BRANCHES, nodes={"damp": {"op": "dampen"}, "top": {"params": {"k": 0}}},
                   add_nodes=[{"id": "loose", "kind": "op", "op": "argmax"}, {"id": "sm", "kind": "op", "op": "cast"}],
                   add_edges=edges(("loose.y", "out.index"), ("sw.nowhere", "out.n")))
    check = graph_validate(tenant=None, spec=spec)
    assert {"unknown_op", "invalid_params", "duplicate_node", "unconnected_input", "unreachable_output",
            "unknown_port"} <= set(codes(check)), check.errors


@pytest.mark.parametrize("spec", [None, "graph", 7, {}, {"nodes": [1, None, "x"]}, {"nodes": [{"id": 5}]},
                                  {"nodes": [{"id": "in", "kind": "input", "tensors": "x"}], "edges": [7]},
                                  {"nodes": [{"id": "in", "kind": "input", "tensors": [{"name": "x", "shape": 3}]}]},
                                  {"nodes": [{"id": "m", "kind": "model", "model_version": True}], "edges": None},
                                  {"nodes": [{"id": "o", "kind": "op", "op": ["cast"], "params": [1]}]},
                                  {"nodes": [{"id": "s", "kind": "switch", "params": None}],
                                   "edges": [{"from": 1, "to": {}}]}])
def test_any_json_gets_issues_and_never_an_exception(spec):
    check = graph_validate(tenant=None, spec=spec)
    assert not check.valid
    assert all(isinstance(issue.message, str) and issue.message for issue in check.errors)


# Model nodes: the tenant's own versions, from the database.

@pytest.fixture(autouse=True)
def storage(settings, tmp_path):
    settings.MODEL_STORAGE_DIR = tmp_path / "models"


@pytest.fixture
def digits(acme, digits_onnx):
    return model_version_upload(tenant=acme, model_name="digits", chunks=[digits_onnx])


@pytest.fixture
def fallback(acme, digits_onnx):
    return model_version_upload(tenant=acme, model_name="digits-fallback", chunks=[digits_onnx])


def three_node_spec(model_version: int, *, cast=True) -> dict:
    """in.image UINT8[batch, 8, 8] -> cast, flatten -> the digits classifier -> topk -> out."""
    nodes = [{"id": "in", "kind": "input", "tensors": [tensor("image", "UINT8", [-1, 8, 8])]},
             {"id": "prep", "kind": "op", "op": "cast", "params": {"to": "FP32"}},
             {"id": "flat", "kind": "op", "op": "flatten"},
             {"id": "clf", "kind": "model", "model_version": model_version},
             {"id": "top", "kind": "op", "op": "topk", "params": {"k": 1}},
             {"id": "out", "kind": "output"}]
    pairs = [("in.image", "prep.x"), ("prep.y", "flat.x"), ("flat.y", "clf.X"), ("clf.probabilities", "top.x"),
             ("clf.label", "out.label"), ("top.values", "out.score")]
    if not cast:
        pairs[:2] = [("in.image", "flat.x")]
    return {"nodes": nodes if cast else [n for n in nodes if n["id"] != "prep"], "edges": edges(*pairs)}


def switch_spec(model_version: int, fallback_version: int) -> dict:
    """The three-node graph; when its top score is below 0.9 the fallback model answers instead."""
    spec = three_node_spec(model_version)
    spec["nodes"][-1:-1] = [
        {"id": "sure", "kind": "switch", "params": {"op": "lt", "value": 0.9, "reduce": "any"}},
        {"id": "fb", "kind": "model", "model_version": fallback_version},
        {"id": "pick", "kind": "op", "op": "merge"},
        {"id": "names", "kind": "op", "op": "label_lookup", "params": {"labels": [str(d) for d in range(10)]}},
    ]
    spec["edges"] = [e for e in spec["edges"] if e["from"] != "clf.label"] + edges(
        ("flat.y", "sure.x"), ("top.values", "sure.when"), ("sure.then", "fb.X"), ("fb.label", "pick.then"),
        ("clf.label", "pick.else"), ("pick.y", "out.label"), ("pick.y", "names.x"), ("names.y", "out.name"))
    return spec


@pytest.mark.django_db
def test_the_three_node_graph_is_valid_with_its_ports_and_signature(acme, digits):
    check = graph_validate(tenant=acme, spec=three_node_spec(digits.pk))
    assert check.valid, check.errors
    assert check.ports["prep.y"] == {"datatype": "FP32", "shape": ["batch", 8, 8]}
    assert check.ports["flat.y"] == check.ports["clf.X"] == {"datatype": "FP32", "shape": ["batch", 64]}
    assert check.ports["clf.probabilities"] == {"datatype": "FP32", "shape": ["batch", 10]}
    assert check.ports["top.indices"] == {"datatype": "INT64", "shape": ["batch", 1]}
    assert check.inputs == [{"name": "image", "datatype": "UINT8", "shape": [-1, 8, 8]}]
    assert check.outputs == [{"name": "label", "datatype": "INT64", "shape": [-1]},
                             {"name": "score", "datatype": "FP32", "shape": [-1, 1]}]


@pytest.mark.django_db
def test_the_switch_graph_is_valid(acme, digits, fallback):
    check = graph_validate(tenant=acme, spec=switch_spec(digits.pk, fallback.pk))
    assert check.valid, check.errors
    assert check.ports["sure.then"] == check.ports["fb.X"] == {"datatype": "FP32", "shape": ["batch", 64]}
    assert check.ports["pick.y"] == {"datatype": "INT64", "shape": ["batch"]}
    assert check.outputs == [{"name": "score", "datatype": "FP32", "shape": [-1, 1]},
                             {"name": "label", "datatype": "INT64", "shape": [-1]},
                             {"name": "name", "datatype": "BYTES", "shape": [-1]}]


@pytest.mark.django_db
@pytest.mark.parametrize("cast, code, fragment", [
    (False, "dtype_mismatch", "edge 1 (flat.y -> clf.X): clf.X takes FP32[batch, 64] but flat.y gives "
                              "UINT8[batch, 64]: the datatype is UINT8, expected FP32; add a cast op (to FP32)"),
])
def test_an_edge_into_a_model_is_type_checked(acme, digits, cast, code, fragment):
    issue = only(graph_validate(tenant=acme, spec=three_node_spec(digits.pk, cast=cast)), code)
    assert (issue.node, issue.port, issue.edge) == ("clf", "clf.X", 1)
    assert fragment in issue.message


@pytest.mark.django_db
def test_a_shape_that_does_not_fit_a_model_is_refused(acme, digits):
    spec = three_node_spec(digits.pk)
    spec["nodes"] = [n for n in spec["nodes"] if n["id"] != "flat"]
    spec["edges"] = [e for e in spec["edges"] if "flat" not in e["from"] + e["to"]] + edges(("prep.y", "clf.X"))
    issue = only(graph_validate(tenant=acme, spec=spec), "shape_mismatch")
    assert (issue.node, issue.port, issue.edge) == ("clf", "clf.X", 4)
    assert "clf.X takes FP32[batch, 64] but prep.y gives FP32[batch, 8, 8]" in issue.message
    assert "add a reshape or flatten op between them" in issue.message


@pytest.mark.django_db
def test_a_model_edge_binds_the_graphs_batch(acme, digits):
    spec = three_node_spec(digits.pk)
    spec["nodes"][0]["tensors"][0]["shape"] = [2, 8, 8]
    check = graph_validate(tenant=acme, spec=spec)
    assert check.valid, check.errors
    assert check.ports["clf.probabilities"]["shape"] == [2, 10]
    assert check.outputs[0] == {"name": "label", "datatype": "INT64", "shape": [2]}


@pytest.mark.django_db
def test_a_missing_model_version_is_reported(acme, digits):
    issue = only(graph_validate(tenant=acme, spec=three_node_spec(digits.pk + 1000)), "model_version_not_found")
    assert (issue.node, issue.port, issue.edge) == ("clf", None, None)
    assert f"node 'clf' (model): model version {digits.pk + 1000} does not exist in this tenant" in issue.message


@pytest.mark.django_db
def test_another_tenants_model_version_reads_as_missing(acme, globex, digits_onnx):
    theirs = model_version_upload(tenant=globex, model_name="digits", chunks=[digits_onnx])
    missing = theirs.pk + 1000
    foreign = graph_validate(tenant=acme, spec=three_node_spec(theirs.pk))
    absent = graph_validate(tenant=acme, spec=three_node_spec(missing))
    assert codes(foreign) == codes(absent) == ["model_version_not_found"]
    assert foreign.errors[0].message == absent.errors[0].message.replace(str(missing), str(theirs.pk))
    assert foreign.ports == absent.ports and "clf.X" not in foreign.ports
    assert graph_validate(tenant=globex, spec=three_node_spec(theirs.pk)).valid

"""The shape of a graph apart from its types: cycles, the order nodes run in, which nodes
the inputs reach, and which switch branches each tensor depends on."""
from __future__ import annotations

from collections import defaultdict

from graph_editor.graphs.issues import GraphIssue
from graph_editor.graphs.spec import Edge, Node


def _successors(edges: list[Edge]) -> dict[str, list[Edge]]:
    successors = defaultdict(list)
    for edge in edges:
        successors[edge.source].append(edge)
    return successors


def cycles(node_ids: list[str], edges: list[Edge]) -> list[list[Edge]]:
    """One cycle per strongly connected component that has one, as the edges around it."""
    successors = _successors(edges)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in node_ids:
        if root in index:
            continue
        work = [(root, iter(successors[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, pending = work[-1]
            edge = next(pending, None)
            if edge is not None:
                target = edge.target
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(successors[target])))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
    found = []
    for component in components:
        members = set(component)
        start = min(component, key=node_ids.index)
        path = _path_back(start, members, successors)
        if path:
            found.append(path)
    return found


def _path_back(start: str, members: set[str], successors) -> list[Edge] | None:
    """The edges of a shortest walk from start back to itself inside members."""
    came_by: dict[str, Edge] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for edge in successors[node]:
                if edge.target not in members:
                    continue
                if edge.target == start:
                    path = [edge]
                    while path[0].source != start:
                        path.insert(0, came_by[path[0].source])
                    return path
                if edge.target not in came_by:
                    came_by[edge.target] = edge
                    following.append(edge.target)
        frontier = following
    return None


def topological_order(node_ids: list[str], edges: list[Edge]) -> list[str]:
    """Nodes in an order that runs each after its inputs; those on or after a cycle are left out."""
    waiting = {node: 0 for node in node_ids}
    for edge in edges:
        waiting[edge.target] += 1
    successors = _successors(edges)
    ready = [node for node in node_ids if waiting[node] == 0]
    order = []
    while ready:
        node = ready.pop(0)
        order.append(node)
        for edge in successors[node]:
            waiting[edge.target] -= 1
            if waiting[edge.target] == 0:
                ready.append(edge.target)
    return order


def unreached(nodes: dict[str, Node], order: list[str], feeding: dict[str, dict[str, Edge]],
              required: dict[str, tuple[str, ...] | None]) -> dict[str, str]:
    """The nodes the graph's inputs do not reach, each with why: the first unconnected port or
    cycle upstream of it. `feeding`: node -> input port -> its edge; `required`: node -> the
    ports it needs (None: unknown, then the edges it has must all be reached)."""
    why: dict[str, str] = {}
    placed = set(order)
    for node_id in nodes:
        if node_id not in placed:
            why[node_id] = f"'{node_id}' is on or after a cycle"
    for node_id in order:
        node = nodes[node_id]
        if node.kind == "input":
            continue
        edges = feeding.get(node_id, {})
        missing = [port for port in required.get(node_id) or () if port not in edges]
        if missing:
            why[node_id] = f"{node_id}.{missing[0]} is not connected"
            continue
        if not edges:
            why[node_id] = f"nothing is connected to '{node_id}'"
            continue
        upstream = next((why[e.source] for e in edges.values() if e.source in why), None)
        if upstream:
            why[node_id] = upstream
    return why


Condition = frozenset  # of (switch id, "then" | "else"): the branches a tensor needs to have run


def _describe(condition: Condition) -> str:
    if not condition:
        return "no branch"
    return " and ".join(f"the {side} branch of switch '{switch}'" for switch, side in sorted(condition))


def branch_issues(nodes: dict[str, Node], order: list[str], feeding: dict[str, dict[str, Edge]]) -> list[GraphIssue]:
    """A node may read tensors that exist only when a switch took one branch; it must not read
    both branches of one switch (one never runs), a merge must join the two branches of one
    switch, and the graph's outputs must not depend on a branch."""
    issues = []
    # What a node's outputs depend on, by node id; a switch's two outputs by "<node>.<port>".
    condition: dict[str, Condition] = {}

    def needs(edge: Edge) -> Condition:
        return condition.get(edge.source_ref, condition.get(edge.source, Condition()))

    for node_id in order:
        node, edges = nodes[node_id], feeding.get(node_id, {})
        merging = node.kind == "op" and node.op == "merge" and {"then", "else"} <= set(edges)
        if merging:
            together = _merge(node, edges["then"], edges["else"], needs(edges["then"]), needs(edges["else"]), issues)
        else:
            together = Condition().union(*(needs(edge) for edge in edges.values()))
        both = sorted({switch for switch, side in together if (switch, "then" if side == "else" else "else")
                       in together})
        if both:
            issues.append(GraphIssue("branch_conflict", f"{node.describe()} reads both the then and the else branch "
                                     f"of switch '{both[0]}', but only one runs per request: join them with a merge "
                                     "op first", node=node_id))
            continue
        if node.kind == "output":
            for port, edge in edges.items():
                if needs(edge):
                    issues.append(GraphIssue("unmerged_branch", f"graph output {node_id}.{port} depends on "
                                             f"{_describe(needs(edge))}, which runs only for some requests: join "
                                             "the branches with a merge op before the output", node=node_id,
                                             port=f"{node_id}.{port}", edge=edge.index))
        elif node.kind == "switch":
            condition[f"{node_id}.then"] = together | {(node_id, "then")}
            condition[f"{node_id}.else"] = together | {(node_id, "else")}
        else:
            condition[node_id] = together
    return issues


def _merge(node: Node, then: Edge, otherwise: Edge, then_needs: Condition, else_needs: Condition,
           issues: list[GraphIssue]) -> Condition:
    """What a merge's output depends on: `then` must be on the then branch of a switch, `else`
    on its else branch or on neither (a default computed before the switch)."""
    for switch, side in sorted(then_needs):
        if side == "then" and (switch, "then") not in else_needs and (switch, "else") not in then_needs:
            return (then_needs - {(switch, "then")}) | (else_needs - {(switch, "else")})
    swapped = any(side == "then" for _, side in else_needs) and not any(side == "then" for _, side in then_needs)
    hint = ("swap its two edges" if swapped else
            "connect 'then' to the then branch of a switch, and 'else' to its else branch or to a tensor from "
            "before the switch")
    issues.append(GraphIssue("invalid_merge", f"{node.describe()} must join the branches of one switch, but "
                             f"{node.id}.then (fed by {then.source_ref}) depends on {_describe(then_needs)} and "
                             f"{node.id}.else (fed by {otherwise.source_ref}) on {_describe(else_needs)}: {hint}",
                             node=node.id, port=f"{node.id}.then", edge=then.index))
    return Condition()  # reported: what follows the merge is not blamed for it again

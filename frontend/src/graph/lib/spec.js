// The graph spec (what the REST API stores and validates) and the editor's nodes and edges,
// converted both ways without loss: a node's data is its spec node minus id, kind and
// position, and `position` is the only thing the editor adds to the spec.

/**
 * @typedef {{name: string, datatype: string, shape: (number|string)[]}} TensorSpec
 * @typedef {{tensors: TensorSpec[]}} InputData
 * @typedef {{}} OutputData
 * @typedef {{model_version: number}} ModelData
 * @typedef {{op: string, params?: Record<string, unknown>}} OpData
 * @typedef {{params?: {op?: string, value?: number, reduce?: string}}} SwitchData
 * @typedef {"input"|"output"|"model"|"op"|"switch"} NodeKind
 * @typedef {{id: string, type: NodeKind, position: {x: number, y: number},
 *            data: InputData|OutputData|ModelData|OpData|SwitchData, selected?: boolean}} FlowNode
 * @typedef {{id: string, source: string, sourceHandle: string, target: string, targetHandle: string}} FlowEdge
 * @typedef {{nodes: object[], edges: {from: string, to: string}[]}} GraphSpec
 */

export const NODE_KINDS = ["input", "output", "model", "op", "switch"];

/** "clf.label" -> {node: "clf", port: "label"}. Node ids hold no dot; port names may. */
export function splitPort(ref) {
  if (typeof ref !== "string") return null;
  const dot = ref.indexOf(".");
  if (dot <= 0 || dot === ref.length - 1) return null;
  return { node: ref.slice(0, dot), port: ref.slice(dot + 1) };
}

export function portRef(node, port) {
  return `${node}.${port}`;
}

/** An id for an edge, unique among `taken` (a Set the caller keeps). */
export function edgeId(source, sourceHandle, target, targetHandle, taken = new Set()) {
  const base = `${portRef(source, sourceHandle)}->${portRef(target, targetHandle)}`;
  let id = base;
  for (let n = 2; taken.has(id); n += 1) id = `${base}#${n}`;
  taken.add(id);
  return id;
}

/**
 * Spec -> {nodes, edges, positioned}. `positioned` is false when some node had no position
 * (a spec written by hand or by the API): the editor lays such a graph out on load.
 * Edges whose ends are not `node.port` references are dropped (`dropped` counts them).
 * @returns {{nodes: FlowNode[], edges: FlowEdge[], positioned: boolean, dropped: number}}
 */
export function specToFlow(spec) {
  const specNodes = Array.isArray(spec?.nodes) ? spec.nodes : [];
  const specEdges = Array.isArray(spec?.edges) ? spec.edges : [];
  let positioned = true;
  const nodes = specNodes.map((specNode, index) => {
    const { id, kind, position, ...data } = specNode ?? {};
    const hasPosition = Number.isFinite(position?.x) && Number.isFinite(position?.y);
    if (!hasPosition) positioned = false;
    return {
      id: String(id ?? `node-${index + 1}`),
      type: kind,  // an unknown kind renders as a plain node; the validator names it
      position: hasPosition ? { x: position.x, y: position.y } : { x: index * 240, y: 0 },
      data,
    };
  });
  const taken = new Set();
  const edges = [];
  let dropped = 0;
  for (const specEdge of specEdges) {
    const from = splitPort(specEdge?.from);
    const to = splitPort(specEdge?.to);
    if (!from || !to) {
      dropped += 1;
      continue;
    }
    edges.push({
      id: edgeId(from.node, from.port, to.node, to.port, taken),
      source: from.node, sourceHandle: from.port, target: to.node, targetHandle: to.port,
    });
  }
  return { nodes, edges, positioned, dropped };
}

/** Nodes and edges -> spec, in their order, positions rounded to whole pixels. */
export function flowToSpec(nodes, edges, { positions = true } = {}) {
  return {
    nodes: nodes.map((node) => {
      const specNode = { id: node.id, kind: node.type, ...node.data };
      if (positions) specNode.position = { x: Math.round(node.position.x), y: Math.round(node.position.y) };
      return specNode;
    }),
    edges: edges.map((edge) => ({
      from: portRef(edge.source, edge.sourceHandle),
      to: portRef(edge.target, edge.targetHandle),
    })),
  };
}

/** What a file or pasted text holds: a spec, or an object carrying one under `spec`. */
export function specFromJson(text) {
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new Error(`Not JSON: ${error.message}`);
  }
  const spec = parsed && typeof parsed === "object" && parsed.spec && !parsed.nodes ? parsed.spec : parsed;
  if (!spec || typeof spec !== "object" || !Array.isArray(spec.nodes) || !Array.isArray(spec.edges ?? [])) {
    throw new Error('Expected a spec: {"nodes": [...], "edges": [...]}');
  }
  return { nodes: spec.nodes, edges: spec.edges ?? [] };
}

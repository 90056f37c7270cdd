// Auto-layout: dagre ranks the graph left to right, inputs first.
import { graphlib, layout } from "@dagrejs/dagre";

export const DEFAULT_NODE_SIZE = { width: 220, height: 110 };

/** The nodes with new positions (top-left corners); other fields are kept. */
export function autoLayout(nodes, edges, { direction = "LR", nodeSep = 40, rankSep = 90 } = {}) {
  const graph = new graphlib.Graph({ multigraph: true });
  graph.setGraph({ rankdir: direction, nodesep: nodeSep, ranksep: rankSep, marginx: 20, marginy: 20 });
  graph.setDefaultEdgeLabel(() => ({}));
  const sizes = new Map();
  for (const node of nodes) {
    const size = {
      width: node.measured?.width ?? node.width ?? DEFAULT_NODE_SIZE.width,
      height: node.measured?.height ?? node.height ?? DEFAULT_NODE_SIZE.height,
    };
    sizes.set(node.id, size);
    graph.setNode(node.id, size);
  }
  edges.forEach((edge, index) => {
    if (sizes.has(edge.source) && sizes.has(edge.target)) graph.setEdge(edge.source, edge.target, {}, `e${index}`);
  });
  layout(graph);
  return nodes.map((node) => {
    const placed = graph.node(node.id);
    const { width, height } = sizes.get(node.id);
    return { ...node, position: { x: Math.round(placed.x - width / 2), y: Math.round(placed.y - height / 2) } };
  });
}

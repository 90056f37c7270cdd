// Copy and paste of a selection: the selected nodes and the edges between them, pasted with
// fresh ids beside the originals.
import { edgeId } from "./spec.js";
import { freeNodeId } from "./ids.js";

export const PASTE_OFFSET = 40;

export function copySelection(nodes, edges) {
  const picked = nodes.filter((n) => n.selected);
  const ids = new Set(picked.map((n) => n.id));
  return {
    nodes: picked.map(({ id, type, position, data }) => ({ id, type, position, data: structuredClone(data) })),
    edges: edges.filter((e) => ids.has(e.source) && ids.has(e.target))
      .map(({ source, sourceHandle, target, targetHandle }) => ({ source, sourceHandle, target, targetHandle })),
  };
}

/** The clipboard's nodes and edges renamed to be free in the document, selected, and
 * moved by `PASTE_OFFSET` times `times` (the n-th paste of the same copy lands further off). */
export function pasteClipboard(clipboard, { nodes, edges }, times = 1) {
  const taken = new Set(nodes.map((n) => n.id));
  const renamed = new Map();
  const pasted = clipboard.nodes.map((node) => {
    const id = freeNodeId(node.id, taken);
    taken.add(id);
    renamed.set(node.id, id);
    const offset = PASTE_OFFSET * times;
    return { ...node, id, data: structuredClone(node.data), selected: true,
      position: { x: node.position.x + offset, y: node.position.y + offset } };
  });
  const edgeIds = new Set(edges.map((e) => e.id));
  const pastedEdges = clipboard.edges.map((edge) => {
    const source = renamed.get(edge.source);
    const target = renamed.get(edge.target);
    return { ...edge, source, target, id: edgeId(source, edge.sourceHandle, target, edge.targetHandle, edgeIds) };
  });
  return {
    nodes: [...nodes.map((n) => (n.selected ? { ...n, selected: false } : n)), ...pasted],
    edges: [...edges.map((e) => (e.selected ? { ...e, selected: false } : e)), ...pastedEdges],
  };
}

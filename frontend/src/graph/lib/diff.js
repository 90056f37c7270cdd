// What changed between two versions of a graph: nodes added, removed and changed (what a
// node does, not where it sits on the canvas), and edges added and removed (an edge is its
// from/to pair). `diffCanvas` turns that into read-only nodes and edges to draw.
import { autoLayout } from "./layout.js";
import { specToFlow } from "./spec.js";

/** What a node is, besides its id: every field of its spec node but the editor's position. */
const IGNORED_FIELDS = new Set(["id", "position"]);

const isPlainObject = (value) => value !== null && typeof value === "object" && !Array.isArray(value);
const isObjectList = (value) => Array.isArray(value) && value.some(isPlainObject);

function sameValue(a, b) {
  if (a === b) return true;
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((item, i) => sameValue(item, b[i]));
  }
  if (isPlainObject(a) && isPlainObject(b)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    return [...keys].every((key) => sameValue(a[key], b[key]));
  }
  return false;
}

/** A value as the change list prints it: strings bare, anything else as JSON, absent as "(none)". */
export function formatValue(value) {
  if (value === undefined) return "(none)";
  return typeof value === "string" ? value : JSON.stringify(value);
}

/** The leaf-level differences between two values: objects by key (`params.value`), lists of
 * objects by index (`tensors[0].shape`), anything else as a whole. */
function valueChanges(path, before, after, out) {
  if (sameValue(before, after)) return out;
  if (isPlainObject(before) && isPlainObject(after)) {
    for (const key of new Set([...Object.keys(before), ...Object.keys(after)])) {
      valueChanges(`${path}.${key}`, before[key], after[key], out);
    }
  } else if (isObjectList(before) && isObjectList(after)) {
    for (let i = 0; i < Math.max(before.length, after.length); i += 1) valueChanges(`${path}[${i}]`, before[i], after[i], out);
  } else {
    out.push({ path, before, after, text: `${path}: ${formatValue(before)} → ${formatValue(after)}` });
  }
  return out;
}

/** The changes between two spec nodes of the same id, in a stable order (the older's fields first). */
export function nodeChanges(before, after) {
  const fields = [...new Set([...Object.keys(before ?? {}), ...Object.keys(after ?? {})])].filter((f) => !IGNORED_FIELDS.has(f));
  const out = [];
  for (const field of fields) valueChanges(field, before?.[field], after?.[field], out);
  return out;
}

const specNodes = (spec) => (Array.isArray(spec?.nodes) ? spec.nodes.filter(isPlainObject) : []);
const specEdges = (spec) => (Array.isArray(spec?.edges) ? spec.edges.filter(isPlainObject) : []);
const edgeKey = (edge) => `${edge.from}\u0000${edge.to}`;

/** The edges of `edges` left over once each of `others` has cancelled one equal edge (a multiset difference). */
function edgesNotIn(edges, others) {
  const counts = new Map();
  for (const edge of others) counts.set(edgeKey(edge), (counts.get(edgeKey(edge)) ?? 0) + 1);
  return edges.filter((edge) => {
    const left = counts.get(edgeKey(edge)) ?? 0;
    if (left) counts.set(edgeKey(edge), left - 1);
    return !left;
  }).map(({ from, to }) => ({ from, to }));
}

/**
 * @typedef {{path: string, before: unknown, after: unknown, text: string}} FieldChange
 * @typedef {{nodes: {added: string[], removed: string[], changed: {id: string, changes: FieldChange[]}[], unchanged: string[]},
 *            edges: {added: {from: string, to: string}[], removed: {from: string, to: string}[]}}} SpecDiff
 * @returns {SpecDiff} nodes in the newer spec's order (removed ones in the older's)
 */
export function specDiff(older, newer) {
  const before = new Map(specNodes(older).map((n) => [String(n.id), n]));
  const after = new Map(specNodes(newer).map((n) => [String(n.id), n]));
  const nodes = { added: [], removed: [], changed: [], unchanged: [] };
  for (const [id, node] of after) {
    if (!before.has(id)) {
      nodes.added.push(id);
      continue;
    }
    const changes = nodeChanges(before.get(id), node);
    if (changes.length) nodes.changed.push({ id, changes });
    else nodes.unchanged.push(id);
  }
  for (const id of before.keys()) if (!after.has(id)) nodes.removed.push(id);
  return {
    nodes,
    edges: { added: edgesNotIn(specEdges(newer), specEdges(older)), removed: edgesNotIn(specEdges(older), specEdges(newer)) },
  };
}

export function hasChanges(diff) {
  const { nodes, edges } = diff;
  return Boolean(nodes.added.length || nodes.removed.length || nodes.changed.length || edges.added.length || edges.removed.length);
}

const count = (n, noun) => `${n} ${noun}${n === 1 ? "" : "s"}`;

/** "2 nodes added, 1 changed, 1 removed; 3 edges added, 1 removed", or "No changes". */
export function diffSummary(diff) {
  if (!hasChanges(diff)) return "No changes";
  const { nodes, edges } = diff;
  return `${count(nodes.added.length, "node")} added, ${nodes.changed.length} changed, ${nodes.removed.length} removed; `
    + `${count(edges.added.length, "edge")} added, ${edges.removed.length} removed`;
}

export const DIFF_COLOURS = { added: "#16a34a", changed: "#d97706", removed: "#dc2626", same: "#94a3b8" };

/** A spec's nodes and edges for the canvas, laid out when the spec carries no positions. */
function placedFlow(spec) {
  const { nodes, edges, positioned } = specToFlow(spec);
  return { nodes: positioned ? nodes : autoLayout(nodes, edges), edges };
}

/**
 * The diff as read-only canvas content: the newer version's nodes and edges, with the older
 * version's removed nodes (where it had them) and removed edges added, each marked by class.
 * `marks`: node id -> {status: "added"|"changed"|"removed"|"same", changes}.
 */
export function diffCanvas(older, newer, diff = specDiff(older, newer)) {
  const marks = {};
  for (const id of diff.nodes.unchanged) marks[id] = { status: "same", changes: [] };
  for (const id of diff.nodes.added) marks[id] = { status: "added", changes: [] };
  for (const { id, changes } of diff.nodes.changed) marks[id] = { status: "changed", changes };
  for (const id of diff.nodes.removed) marks[id] = { status: "removed", changes: [] };

  const later = placedFlow(newer);
  const earlier = placedFlow(older);
  const removedIds = new Set(diff.nodes.removed);
  const asDiffNode = (node) => ({ ...node, className: `gdiff-${marks[node.id]?.status ?? "same"}`, draggable: false,
    connectable: false, deletable: false });
  const nodes = [...later.nodes, ...earlier.nodes.filter((n) => removedIds.has(n.id))].map(asDiffNode);

  const addedLeft = new Map();
  for (const edge of diff.edges.added) addedLeft.set(edgeKey(edge), (addedLeft.get(edgeKey(edge)) ?? 0) + 1);
  const edgeOf = (edge, status, id) => ({
    ...edge, id, className: `gdiff-edge-${status}`, selectable: false, deletable: false,
    style: { stroke: DIFF_COLOURS[status], strokeWidth: status === "same" ? 1.5 : 2.5,
      ...(status === "removed" ? { strokeDasharray: "6 4" } : {}) },
  });
  const edges = later.edges.map((edge) => {
    const key = edgeKey({ from: `${edge.source}.${edge.sourceHandle}`, to: `${edge.target}.${edge.targetHandle}` });
    const left = addedLeft.get(key) ?? 0;
    if (left) addedLeft.set(key, left - 1);
    return edgeOf(edge, left ? "added" : "same", edge.id);
  });
  const removedFlow = specToFlow({ nodes: [], edges: diff.edges.removed }).edges;
  for (const edge of removedFlow) edges.push(edgeOf(edge, "removed", `removed:${edge.id}`));
  return { nodes, edges, marks };
}

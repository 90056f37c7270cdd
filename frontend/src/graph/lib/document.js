// The editor's document: the live nodes and edges (with selection and drag positions) and
// the undo history of committed snapshots. A pure reducer, plus the edits it applies.
import { applyEdgeChanges, applyNodeChanges } from "@xyflow/react";
import { canRedo, canUndo, historyInit, historyPush, historyRedo, historyUndo } from "./history.js";
import { NEW_OUTPUT, newOutputName } from "./ports.js";
import { edgeId } from "./spec.js";

/** What undo restores: structure and positions, not selection or measured sizes. */
export function snapshot({ nodes, edges }) {
  return {
    nodes: nodes.map(({ id, type, position, data }) => ({ id, type, position: { ...position }, data })),
    edges: edges.map(({ id, source, sourceHandle, target, targetHandle }) => ({ id, source, sourceHandle, target, targetHandle })),
  };
}

function restore(state, saved) {
  const current = new Map(state.nodes.map((n) => [n.id, n]));
  const nodes = saved.nodes.map((node) => {
    const live = current.get(node.id);
    return live ? { ...node, measured: live.measured, selected: live.selected } : node;
  });
  return { ...state, nodes, edges: saved.edges };
}

export function documentInit({ nodes = [], edges = [] } = {}) {
  return { nodes, edges, history: historyInit(snapshot({ nodes, edges })) };
}

const committed = (state) => ({ ...state, history: historyPush(state.history, snapshot(state)) });

export function documentReducer(state, action) {
  switch (action.type) {
    case "nodesChanged":
      return { ...state, nodes: applyNodeChanges(action.changes, state.nodes) };
    case "edgesChanged":
      return { ...state, edges: applyEdgeChanges(action.changes, state.edges) };
    case "commit":
      return committed(state);
    case "edit": {
      const next = action.edit({ nodes: state.nodes, edges: state.edges });
      return next ? committed({ ...state, nodes: next.nodes, edges: next.edges }) : state;
    }
    case "amend":  // a correction that is part of the last step, such as laying out a loaded graph once measured
      return { ...state, nodes: action.nodes, edges: action.edges,
        history: { ...state.history, present: snapshot({ nodes: action.nodes, edges: action.edges }) } };
    case "load":
      return committed({ ...state, nodes: action.nodes, edges: action.edges });
    case "reset":
      return documentInit({ nodes: action.nodes, edges: action.edges });
    case "undo": {
      if (!canUndo(state.history)) return state;
      const history = historyUndo(state.history);
      return restore({ ...state, history }, history.present);
    }
    case "redo": {
      if (!canRedo(state.history)) return state;
      const history = historyRedo(state.history);
      return restore({ ...state, history }, history.present);
    }
    default:
      throw new Error(`Unknown document action ${action.type}`);
  }
}

// --- Edits: ({nodes, edges}) -> {nodes, edges} -----------------------------------------------

/** Add `connection` as an edge. Dropped on an output node's free handle, it names a new graph
 * output after the port that feeds it. */
export function connect(doc, connection) {
  let { targetHandle } = connection;
  if (targetHandle === NEW_OUTPUT) targetHandle = newOutputName(connection.sourceHandle, connection.target, doc.edges);
  const taken = new Set(doc.edges.map((e) => e.id));
  const edge = {
    id: edgeId(connection.source, connection.sourceHandle, connection.target, targetHandle, taken),
    source: connection.source, sourceHandle: connection.sourceHandle, target: connection.target, targetHandle,
  };
  return { nodes: doc.nodes, edges: [...doc.edges, edge] };
}

export function addNode(doc, node) {
  return {
    nodes: [...doc.nodes.map((n) => (n.selected ? { ...n, selected: false } : n)), { ...node, selected: true }],
    edges: doc.edges,
  };
}

/** Remove the selected nodes (with their edges) and the selected edges; null when nothing is selected. */
export function deleteSelection(doc) {
  const gone = new Set(doc.nodes.filter((n) => n.selected).map((n) => n.id));
  const edges = doc.edges.filter((e) => !e.selected && !gone.has(e.source) && !gone.has(e.target));
  if (!gone.size && edges.length === doc.edges.length) return null;
  return { nodes: doc.nodes.filter((n) => !gone.has(n.id)), edges };
}

export function selectAll(doc) {
  return { nodes: doc.nodes.map((n) => ({ ...n, selected: true })), edges: doc.edges.map((e) => ({ ...e, selected: true })) };
}

export function updateNodeData(doc, id, update) {
  return {
    nodes: doc.nodes.map((n) => (n.id === id ? { ...n, data: typeof update === "function" ? update(n.data) : update } : n)),
    edges: doc.edges,
  };
}

/** A node's new id, carried into its edges. */
export function renameNode(doc, oldId, newId) {
  const taken = new Set();
  return {
    nodes: doc.nodes.map((n) => (n.id === oldId ? { ...n, id: newId } : n)),
    edges: doc.edges.map((e) => {
      const source = e.source === oldId ? newId : e.source;
      const target = e.target === oldId ? newId : e.target;
      return { ...e, source, target, id: edgeId(source, e.sourceHandle, target, e.targetHandle, taken) };
    }),
  };
}

/** Rename one port of a node in its edges: a graph output's name is its output node's port. */
export function renameTargetPort(doc, nodeId, oldPort, newPort) {
  const taken = new Set();
  return {
    nodes: doc.nodes,
    edges: doc.edges.map((e) => {
      const targetHandle = e.target === nodeId && e.targetHandle === oldPort ? newPort : e.targetHandle;
      return { ...e, targetHandle, id: edgeId(e.source, e.sourceHandle, e.target, targetHandle, taken) };
    }),
  };
}

export function removeEdge(doc, id) {
  return { nodes: doc.nodes, edges: doc.edges.filter((e) => e.id !== id) };
}

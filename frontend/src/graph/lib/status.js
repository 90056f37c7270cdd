// A graph deployment's live status per node, from GET /deployments/<id>/nodes: each Triton
// unit (a fused model, one node's model, an ensemble's segment, the orchestrator) with its
// state and Triton's cumulative statistics; a fused unit runs several nodes and reports as one.

export const NODE_STATES = ["loaded", "loading", "cold", "failed"];
// A deployment's state as its nodes have it, while the /nodes answer is not there yet.
const FROM_DEPLOYMENT = { ready: "loaded", pending: "loading", loading: "loading", unloading: "loading", cold: "cold",
  failed: "failed" };
// Outlines that tell one fused unit's nodes from another's.
export const FUSED_COLOURS = ["#0d9488", "#c026d3", "#ea580c", "#2563eb", "#65a30d"];
export const TRANSITIONAL = new Set(["pending", "loading", "unloading"]);

/**
 * @typedef {{state: string, unit: string|null, kind: string|null, fused: boolean, fusedWith: string[],
 *   colour: string|null, calls: number|null, failures: number|null, p50_ms: number|null}} NodeStatus
 */

/** node id -> NodeStatus, from a /nodes answer. */
/** A unit that runs several nodes as one Triton model: a fused graph, or a fused group of ops. */
export function runsSeveral(unit) {
  return (unit.kind === "fused" || unit.kind === "segment") && (unit.nodes?.length ?? 0) > 1;
}

export function nodeStatuses(answer) {
  const byNode = {};
  if (!answer) return byNode;
  let fusedIndex = 0;
  for (const unit of answer.units ?? []) {
    const fused = runsSeveral(unit);
    const colour = fused ? FUSED_COLOURS[fusedIndex++ % FUSED_COLOURS.length] : null;
    for (const id of unit.nodes ?? []) {
      byNode[id] = { state: unit.state, unit: unit.name, kind: unit.kind, fused, fusedWith: fused ? unit.nodes : [],
        colour, calls: unit.calls ?? null, failures: unit.failures ?? null, p50_ms: unit.p50_ms ?? null,
        shared: Boolean(unit.shared) };
    }
  }
  for (const [id, node] of Object.entries(answer.nodes ?? {})) {
    const known = byNode[id];
    if (known) byNode[id] = { ...known, state: node.state ?? known.state };
    else byNode[id] = { state: node.state, unit: node.unit ?? null, kind: null, fused: Boolean(node.fused), fusedWith: [],
      colour: null, calls: null, failures: null, p50_ms: null, shared: false };
  }
  return byNode;
}

/** Every node with the deployment's own state and no statistics: until /nodes answers, or
 * where it cannot. Graph inputs and outputs run nowhere and have no status. */
export function statusesFromDeployment(deployment, nodes) {
  const state = FROM_DEPLOYMENT[deployment?.state];
  if (!state) return {};
  return Object.fromEntries(nodes.filter((n) => n.type !== "input" && n.type !== "output").map((n) => [n.id, {
    state, unit: null, kind: null, fused: false, fusedWith: [], colour: null, calls: null, failures: null, p50_ms: null,
    shared: false }]));
}

export const formatMs = (ms) => (ms === null || ms === undefined || Number.isNaN(ms) ? "–"
  : ms >= 100 ? `${Math.round(ms)} ms` : ms >= 10 ? `${ms.toFixed(1)} ms` : `${ms.toFixed(2)} ms`);

/** "10 calls · p50 1.20 ms · 0 failed", or null before there are statistics. */
export function statsText(status) {
  if (status?.calls === null || status?.calls === undefined) return null;
  return `${status.calls} call${status.calls === 1 ? "" : "s"} · p50 ${formatMs(status.p50_ms)} · ${status.failures ?? 0} failed`;
}

/**
 * What one call cost each unit, from two /nodes reads around it: the change in Triton's
 * success time over the change in its calls. `calls` above 1 means other calls ran in between.
 * @returns {{unit: string, kind: string, nodes: string[], calls: number, ms: number|null}[]}
 */
export function callLatencies(before, after) {
  const previous = new Map((before?.units ?? []).map((unit) => [unit.name, unit]));
  return (after?.units ?? []).map((unit) => {
    const earlier = previous.get(unit.name);
    const calls = (unit.calls ?? 0) - (earlier?.calls ?? 0);
    const nanoseconds = (unit.success_ns ?? 0) - (earlier?.success_ns ?? 0);
    return { unit: unit.name, kind: unit.kind, nodes: unit.nodes ?? [], calls,
      ms: calls > 0 && nanoseconds >= 0 ? nanoseconds / calls / 1e6 : null };
  });
}

/** True once Triton counted the call somewhere (a switch's branch not taken runs nowhere). */
export const latenciesSeen = (rows) => rows.some((row) => row.calls > 0);

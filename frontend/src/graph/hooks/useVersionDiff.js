import { applyNodeChanges } from "@xyflow/react";
import { useCallback, useRef, useState } from "react";
import { diffCanvas, diffSummary, specDiff } from "../lib/diff.js";

/** The validator's port types for a spec, so the diff's ports show types as the editor's do;
 * none when it does not answer (the diff still draws). */
async function portTypes(api, spec) {
  try {
    return (await api.validate(spec)).ports ?? {};
  } catch {
    return {};
  }
}

/**
 * Two versions compared on a read-only canvas of its own: the editor's document (and its undo
 * history) is not touched while a diff is open. `view` is null when none is.
 */
export function useVersionDiff(api, graphId) {
  const specs = useRef(new Map());  // a version never changes, so each is fetched once
  const [view, setView] = useState(null);
  const [busy, setBusy] = useState(false);

  const spec = useCallback(async (number) => {
    if (!specs.current.has(number)) specs.current.set(number, (await api.version(graphId, number)).spec);
    return specs.current.get(number);
  }, [api, graphId]);

  /** Compare version `from` (the base) with version `to`; throws when either does not load. */
  const open = useCallback(async (from, to) => {
    setBusy(true);
    try {
      const [older, newer] = await Promise.all([spec(from), spec(to)]);
      const diff = specDiff(older, newer);
      const canvas = diffCanvas(older, newer, diff);
      const [olderPorts, newerPorts] = await Promise.all([portTypes(api, older), portTypes(api, newer)]);
      setView({ from, to, diff, summary: diffSummary(diff), marks: canvas.marks, edges: canvas.edges,
        nodes: canvas.nodes, drawn: canvas.nodes, ports: { ...olderPorts, ...newerPorts } });
    } finally {
      setBusy(false);
    }
  }, [api, spec]);

  const close = useCallback(() => setView(null), []);

  // Measuring and selecting apply; nothing moves or goes away.
  const onNodesChange = useCallback((changes) => {
    const kept = changes.filter((change) => change.type === "dimensions" || change.type === "select");
    if (kept.length) setView((current) => current && { ...current, nodes: applyNodeChanges(kept, current.nodes) });
  }, []);

  return { view, busy, open, close, onNodesChange };
}

// The validator's issues, put where they belong on the canvas: on the node, port or edge
// they name. Edge issues carry an index into the spec's edges, so they are mapped with the
// edges of the spec that was validated, in that order.
import { splitPort } from "./spec.js";

/**
 * @param {{code: string, message: string, node?: string|null, port?: string|null, edge?: number|null}[]} issues
 * @param {string[]} edgeIds the ids of the validated spec's edges, in spec order
 */
export function mapIssues(issues, edgeIds) {
  const byNode = {};
  const byPort = {};
  const byEdge = {};
  const graph = [];
  const add = (table, key, issue) => {
    (table[key] ??= []).push(issue);
  };
  for (const issue of issues ?? []) {
    let node = issue.node ?? null;
    let port = issue.port ?? null;
    if (port && !node) {
      const ref = splitPort(port);
      if (ref) ({ node, port } = ref);
    } else if (port && node && port.startsWith(`${node}.`)) {
      port = port.slice(node.length + 1);
    }
    const edgeKnown = Number.isInteger(issue.edge) && issue.edge >= 0 && issue.edge < edgeIds.length;
    if (edgeKnown) add(byEdge, edgeIds[issue.edge], issue);
    if (node) {
      add(byNode, node, issue);
      if (port) add(byPort, `${node}.${port}`, issue);
    }
    if (!node && !edgeKnown) graph.push(issue);
  }
  return { byNode, byPort, byEdge, graph };
}

export const NO_ISSUES = Object.freeze({ byNode: {}, byPort: {}, byEdge: {}, graph: [] });

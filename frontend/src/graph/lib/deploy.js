// Deploying a graph version from the editor: the executors to choose from, the default
// deployment name, and which of the tenant's deployments serve this graph.

export const EXECUTORS = [
  { value: "auto", label: "Auto", help: "Fused while its models are small, else ensemble; orchestrator for a graph with a switch." },
  { value: "fused", label: "Fused", help: "The whole graph as one ONNX model: one hop, fastest; its own copy of the weights." },
  { value: "ensemble", label: "Ensemble", help: "Its steps as Triton models shared with other graphs; not for a graph with a switch." },
  { value: "bls", label: "Orchestrator (BLS)", help: "The same steps under an orchestrator that runs switches and skips an untaken branch." },
];

const NAME_LENGTH = 63;

/** A deployment name from the graph's: lowercase letters, digits and hyphens. */
export function deploymentName(graphName) {
  const slug = String(graphName ?? "").toLowerCase().replace(/[^a-z0-9-]+/g, "-").replace(/-+/g, "-")
    .replace(/^-|-$/g, "").slice(0, NAME_LENGTH).replace(/-$/, "");
  return slug || "graph";
}

/** The deployments (not undeployed) that serve a version of this graph, newest first.
 * `versions` are the graph's version summaries ({id, number}). */
export function graphDeployments(deployments, versions) {
  const ids = new Set((versions ?? []).map((v) => v.id));
  return (deployments ?? []).filter((d) => ids.has(d.graph_version) && d.state !== "undeployed")
    .sort((a, b) => b.id - a.id);
}

/** A deployment with a websocket event's fields (state, error, ...) applied. */
export const withEvent = (deployment, event) => (deployment && event && deployment.id === event.id
  ? { ...deployment, ...event } : deployment);

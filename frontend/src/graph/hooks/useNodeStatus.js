import { useCallback, useEffect, useRef, useState } from "react";

export const POLL_MS = 3000;
export const STATS_MS = 15000;

/**
 * A graph deployment's units and nodes (GET /deployments/<id>/nodes). Read again on demand
 * (a websocket event, a call from the Try it panel), every POLL_MS while the websocket is
 * down (the deployment too, for its state), and every STATS_MS for fresh statistics.
 */
export function useNodeStatus(api, deploymentId, { mode, onDeployment }) {
  const [answer, setAnswer] = useState(null);
  const [failure, setFailure] = useState(null);
  const reported = useRef(onDeployment);
  reported.current = onDeployment;

  const refresh = useCallback(async () => {
    if (deploymentId === null) return null;
    try {
      const nodes = await api.deploymentNodes(deploymentId);
      setAnswer({ ...nodes, deployment: nodes?.deployment ?? deploymentId });
      setFailure(null);
      return nodes;
    } catch (error) {
      setFailure(error.message);
      return null;
    }
  }, [api, deploymentId]);

  useEffect(() => {
    setAnswer(null);
    setFailure(null);
    refresh();
  }, [refresh]);

  useEffect(() => {
    if (deploymentId === null) return undefined;
    const polling = mode !== "live";
    const timer = setInterval(async () => {
      if (polling) {
        try {
          reported.current(await api.deployment(deploymentId));
        } catch {
          // Offline for a moment: the next tick tries again.
        }
      }
      refresh();
    }, polling ? POLL_MS : STATS_MS);
    return () => clearInterval(timer);
  }, [api, deploymentId, mode, refresh]);

  /** A read made elsewhere (the Try it panel's, after its call). */
  const show = useCallback((nodes) => {
    setAnswer({ ...nodes, deployment: nodes?.deployment ?? deploymentId });
    setFailure(null);
  }, [deploymentId]);

  return { answer: answer?.deployment === deploymentId ? answer : null, failure, refresh, show };
}

import { useCallback, useEffect, useMemo, useState } from "react";
import { listOf } from "../api.js";
import { graphDeployments, withEvent } from "../lib/deploy.js";

/** The deployments serving a version of this graph, newest first; `apply` takes a websocket
 * event (or a re-read deployment), `add` a deployment just created. */
export function useDeployments(api, versions) {
  const [all, setAll] = useState(null);
  const [error, setError] = useState(null);
  const refresh = useCallback(async () => {
    try {
      setAll(listOf(await api.deployments()));
      setError(null);
    } catch (failure) {
      setError(failure.message);
      setAll((previous) => previous ?? []);
    }
  }, [api]);
  useEffect(() => {
    refresh();
  }, [refresh]);

  const deployments = useMemo(() => (all === null || versions === null ? null : graphDeployments(all, versions)),
    [all, versions]);
  const apply = useCallback((event) => {
    if (!event || typeof event.id !== "number") return;
    setAll((list) => list && list.map((deployment) => withEvent(deployment, event)));
  }, []);
  const add = useCallback((deployment) => {
    setAll((list) => [deployment, ...(list ?? []).filter((d) => d.id !== deployment.id)]);
  }, []);
  return { deployments, error, refresh, apply, add };
}

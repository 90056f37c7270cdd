import { useCallback, useEffect, useState } from "react";
import { listOf } from "../api.js";

/** The graph's versions, newest first, reloaded after a save. */
export function useVersions(api, graphId) {
  const [versions, setVersions] = useState(null);
  const [error, setError] = useState(null);
  const refresh = useCallback(async () => {
    try {
      const list = listOf(await api.versions(graphId));
      const sorted = [...list].sort((a, b) => b.number - a.number);
      setVersions(sorted);
      setError(null);
      return sorted;
    } catch (failure) {
      setError(failure.message);
      setVersions((previous) => previous ?? []);
      return null;
    }
  }, [api, graphId]);
  useEffect(() => {
    refresh();
  }, [refresh]);
  return { versions, error, refresh };
}

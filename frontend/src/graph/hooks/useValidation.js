import { useCallback, useEffect, useRef, useState } from "react";

export const VALIDATE_DELAY_MS = 300;

/**
 * Runs the backend validator `delay` ms after the graph's structure last changed (`key`;
 * null: not yet),
 * abandoning an answer that a newer change has made stale. `current()` gives the spec to
 * send and its edges' ids, kept with the answer so that edge indexes map to edges.
 */
export function useValidation(api, key, current, { delay = VALIDATE_DELAY_MS } = {}) {
  const [result, setResult] = useState(null);
  const [pending, setPending] = useState(false);
  const [failure, setFailure] = useState(null);
  const currentRef = useRef(current);
  currentRef.current = current;

  useEffect(() => {
    if (key === null) return undefined;
    const controller = new AbortController();
    setPending(true);
    const timer = setTimeout(async () => {
      const { spec, edgeIds } = currentRef.current();
      try {
        const answer = await api.validate(spec, { signal: controller.signal });
        setResult({ ...answer, errors: answer.errors ?? [], edgeIds });
        setFailure(null);
      } catch (error) {
        if (error.name !== "AbortError") setFailure(error.message);
      } finally {
        if (!controller.signal.aborted) setPending(false);
      }
    }, delay);
    return () => {
      clearTimeout(timer);
      controller.abort();
    };
  }, [api, key, delay]);

  /** Issues that arrived another way (a refused save) shown until the next answer. */
  const showIssues = useCallback((errors, edgeIds) => {
    setResult((previous) => ({ ...(previous ?? { ports: {}, inputs: [], outputs: [] }), valid: false, errors, edgeIds }));
  }, []);

  return { result, pending, failure, showIssues };
}

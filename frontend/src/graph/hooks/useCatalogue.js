import { useEffect, useState } from "react";
import { listOf } from "../api.js";

const EMPTY = { ops: [], models: [], catalogue: { ops: new Map(), versions: new Map() }, loading: true, error: null };

/** The palette's contents: the built-in ops and the tenant's model versions with their signatures. */
export function useCatalogue(api) {
  const [state, setState] = useState(EMPTY);
  useEffect(() => {
    let cancelled = false;
    async function load() {
      const [ops, models] = await Promise.allSettled([api.ops(), api.models()]);
      const opList = ops.status === "fulfilled" ? listOf(ops.value) : [];
      const modelList = models.status === "fulfilled" ? listOf(models.value) : [];
      const withVersions = await Promise.all(modelList.map(async (model) => {
        try {
          return { ...model, versions: listOf(await api.modelVersions(model.id)) };
        } catch {
          return { ...model, versions: model.latest_version ? [model.latest_version] : [] };
        }
      }));
      const versions = new Map();
      for (const model of withVersions) {
        for (const version of model.versions) versions.set(version.id, { ...version, model_name: version.model_name ?? model.name });
      }
      const failed = [ops, models].filter((r) => r.status === "rejected").map((r) => r.reason.message);
      if (!cancelled) {
        setState({
          ops: opList, models: withVersions, loading: false, error: failed.length ? failed.join(" ") : null,
          catalogue: {
            ops: new Map(opList.filter((entry) => (entry.kind ?? "op") === "op").map((entry) => [entry.op, entry])),
            switchEntry: opList.find((entry) => entry.kind === "switch"),
            versions,
          },
        });
      }
    }
    load();
    return () => {
      cancelled = true;
    };
  }, [api]);
  return state;
}

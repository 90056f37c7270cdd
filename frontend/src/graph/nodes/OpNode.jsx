import { memo } from "react";
import { NodeFrame, usePorts } from "./NodeFrame.jsx";

export function paramsSummary(params) {
  return Object.entries(params ?? {})
    .map(([name, value]) => `${name}=${Array.isArray(value) || typeof value === "object" ? JSON.stringify(value) : value}`)
    .join(" ");
}

/** A built-in op; the catalogue gives its ports. @param {{id: string, data: import("../lib/spec.js").OpData}} props */
function OpNode({ id, data, selected }) {
  const { inputs, outputs } = usePorts(id);
  const summary = paramsSummary(data.params);
  return <NodeFrame id={id} kind="op" title={data.op ?? "op"} subtitle={summary.length > 40 ? `${summary.slice(0, 39)}…` : summary}
    selected={selected} inputs={inputs} outputs={outputs} />;
}

export default memo(OpNode);

import { memo } from "react";
import { NodeFrame, usePorts } from "./NodeFrame.jsx";

const SYMBOLS = { lt: "<", le: "≤", gt: ">", ge: "≥", eq: "=", ne: "≠" };

/** Routes `x` to `then` or `else` per request. @param {{id: string, data: import("../lib/spec.js").SwitchData}} props */
function SwitchNode({ id, data, selected }) {
  const { inputs, outputs } = usePorts(id);
  const { op, value, reduce = "any" } = data.params ?? {};
  const condition = op ? `${reduce} when ${SYMBOLS[op] ?? op} ${value ?? "?"}` : "no condition yet";
  return <NodeFrame id={id} kind="switch" title="Switch" subtitle={condition} selected={selected}
    inputs={inputs} outputs={outputs} />;
}

export default memo(SwitchNode);

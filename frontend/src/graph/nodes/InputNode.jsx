import { memo } from "react";
import { NodeFrame, usePorts } from "./NodeFrame.jsx";

/** The graph's inputs: each tensor is an output port. @param {{id: string, data: import("../lib/spec.js").InputData}} props */
function InputNode({ id, data, selected }) {
  const { outputs } = usePorts(id);
  const count = data.tensors?.length ?? 0;
  return <NodeFrame id={id} kind="input" title="Graph input" subtitle={`${count} tensor${count === 1 ? "" : "s"}`}
    selected={selected} inputs={[]} outputs={outputs} />;
}

export default memo(InputNode);

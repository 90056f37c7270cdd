import { memo } from "react";
import { useEditorContext } from "../EditorContext.js";
import { NEW_OUTPUT } from "../lib/ports.js";
import { NodeFrame, PortRow, usePorts } from "./NodeFrame.jsx";

/** The graph's outputs: each edge into it is one, named by its port; a free handle adds one. */
function OutputNode({ id, selected }) {
  const { inputs } = usePorts(id);
  const { readOnly } = useEditorContext();
  const free = readOnly ? null : <PortRow nodeId={id} port={NEW_OUTPUT} side="target" label="+ new output" />;
  return <NodeFrame id={id} kind="output" title="Graph output"
    subtitle={`${inputs.length} output${inputs.length === 1 ? "" : "s"}`} selected={selected}
    inputs={inputs} outputs={[]} extraInputs={free} />;
}

export default memo(OutputNode);

import { memo } from "react";
import { useEditorContext } from "../EditorContext.js";
import { NodeFrame, usePorts } from "./NodeFrame.jsx";

/** One of the tenant's model versions; its signature gives the ports. @param {{id: string, data: import("../lib/spec.js").ModelData}} props */
function ModelNode({ id, data, selected }) {
  const { inputs, outputs } = usePorts(id);
  const { catalogue } = useEditorContext();
  const version = catalogue.versions.get(Number(data.model_version));
  const title = version ? `${version.model_name} v${version.version}` : `model version #${data.model_version ?? "?"}`;
  return <NodeFrame id={id} kind="model" title={title} subtitle={version ? null : "not among your models"}
    selected={selected} inputs={inputs} outputs={outputs} />;
}

export default memo(ModelNode);

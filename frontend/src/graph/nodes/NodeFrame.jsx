import { Handle, Position, useUpdateNodeInternals } from "@xyflow/react";
import { useEffect } from "react";
import { useEditorContext } from "../EditorContext.js";
import { UNKNOWN_COLOUR, dtypeColour, formatType } from "../lib/ports.js";

/** One port: its handle, coloured by datatype, its name, and the type the validator gave it. */
export function PortRow({ nodeId, port, side, label, connectable = true }) {
  const { types, issues, readOnly } = useEditorContext();
  const type = types[`${nodeId}.${port}`];
  const portIssues = issues.byPort[`${nodeId}.${port}`] ?? [];
  const colour = type ? dtypeColour(type.datatype) : UNKNOWN_COLOUR;
  const isTarget = side === "target";
  return (
    <div className={`gport gport-${side}${portIssues.length ? " has-issues" : ""}`} data-port={port}
      title={portIssues.map((i) => i.message).join("\n") || undefined}>
      <Handle type={side} position={isTarget ? Position.Left : Position.Right} id={port}
        isConnectable={connectable && !readOnly}
        className={type ? "ghandle" : "ghandle unknown"} style={{ background: type ? colour : "#fff", borderColor: colour }} />
      <span className="gport-name">{label ?? port}</span>
      {type && <span className="gport-type" style={{ color: colour }}>{formatType(type)}</span>}
    </div>
  );
}

/** The shell every node type shares: a header, its ports, and the validator's issues on it;
 * in a version diff, what became of it. */
export function NodeFrame({ id, kind, title, subtitle, selected, inputs, outputs, extraInputs = null, children }) {
  const { issues, diff } = useEditorContext();
  const nodeIssues = issues.byNode[id] ?? [];
  const mark = diff?.[id];
  const updateNodeInternals = useUpdateNodeInternals();
  const portsKey = JSON.stringify([inputs, outputs, Boolean(extraInputs)]);
  // Handles that come and go (a new model version, a new graph output) must be re-measured.
  useEffect(() => updateNodeInternals(id), [id, portsKey, updateNodeInternals]);
  return (
    <div className={`gnode gnode-${kind}${nodeIssues.length ? " has-issues" : ""}${selected ? " selected" : ""}`}
      data-node-id={id} data-kind={kind} data-diff={mark?.status}
      title={mark?.changes.length ? mark.changes.map((c) => c.text).join("\n") : undefined}>
      <div className="gnode-head">
        <span className="gnode-kind">{kind}</span>
        <span className="gnode-title">{title}</span>
        {mark && mark.status !== "same" && <span className={`gdiff-badge ${mark.status}`}>{mark.status}</span>}
      </div>
      <div className="gnode-id">{id}{subtitle ? <span className="gnode-sub"> · {subtitle}</span> : null}</div>
      {children}
      <div className="gnode-ports">
        {inputs.map((port) => <PortRow key={`in:${port}`} nodeId={id} port={port} side="target" />)}
        {extraInputs}
        {outputs.map((port) => <PortRow key={`out:${port}`} nodeId={id} port={port} side="source" />)}
      </div>
      {mark?.changes.length > 0 && (
        <ul className="gnode-changes" data-node-changes>
          {mark.changes.map((change) => <li key={change.path}>{change.text}</li>)}
        </ul>
      )}
      {nodeIssues.length > 0 && (
        <ul className="gnode-issues" data-node-issues>
          {nodeIssues.map((issue, index) => <li key={index} data-code={issue.code}>{issue.message}</li>)}
        </ul>
      )}
    </div>
  );
}

export function usePorts(id) {
  const { ports } = useEditorContext();
  return ports[id] ?? { inputs: [], outputs: [], known: false };
}

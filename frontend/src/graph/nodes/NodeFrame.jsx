import { Handle, Position, useUpdateNodeInternals } from "@xyflow/react";
import { useEffect } from "react";
import { useEditorContext } from "../EditorContext.js";
import { UNKNOWN_COLOUR, dtypeColour, formatType } from "../lib/ports.js";
import { statsText } from "../lib/status.js";

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

/** A deployed node's state and its unit's statistics; a fused unit's nodes say with how many
 * they run, and share an outline colour. */
function LiveStatus({ status }) {
  const stats = statsText(status);
  const together = status.fusedWith.length;
  return (
    <div className="gnode-live" data-node-status={status.state}
      title={status.unit ? `Triton unit ${status.unit}${status.fused ? `: runs ${status.fusedWith.join(", ")} as one model` : ""}`
        : undefined}>
      <div className="gnode-live-row">
        <span className={`gstatus-dot ${status.state}`} />
        <span className="gnode-live-state">{status.state}</span>
        {status.fused && <span className="gfused-badge" data-fused={together} style={{ background: status.colour }}>fused ×{together}</span>}
      </div>
      {stats && <div className="gnode-stats" data-node-stats>{stats}</div>}
    </div>
  );
}

/** The shell every node type shares: a header, its ports, and the validator's issues on it;
 * in a version diff, what became of it; when deployed, its live status. */
export function NodeFrame({ id, kind, title, subtitle, selected, inputs, outputs, extraInputs = null, children }) {
  const { issues, diff, live } = useEditorContext();
  const nodeIssues = issues.byNode[id] ?? [];
  const mark = diff?.[id];
  const status = live?.[id];
  const updateNodeInternals = useUpdateNodeInternals();
  const portsKey = JSON.stringify([inputs, outputs, Boolean(extraInputs)]);
  // Handles that come and go (a new model version, a new graph output) must be re-measured.
  useEffect(() => updateNodeInternals(id), [id, portsKey, updateNodeInternals]);
  return (
    <div className={`gnode gnode-${kind}${nodeIssues.length ? " has-issues" : ""}${selected ? " selected" : ""}`}
      data-node-id={id} data-kind={kind} data-diff={mark?.status} data-fused-unit={status?.fused ? status.unit : undefined}
      style={status?.fused ? { outlineColor: status.colour } : undefined}
      title={mark?.changes.length ? mark.changes.map((c) => c.text).join("\n") : undefined}>
      <div className="gnode-head">
        <span className="gnode-kind">{kind}</span>
        <span className="gnode-title">{title}</span>
        {mark && mark.status !== "same" && <span className={`gdiff-badge ${mark.status}`}>{mark.status}</span>}
      </div>
      <div className="gnode-id">{id}{subtitle ? <span className="gnode-sub"> · {subtitle}</span> : null}</div>
      {status && <LiveStatus status={status} />}
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

import { formatMs, runsSeveral } from "../lib/status.js";

const STATE_LABELS = { pending: "Pending", loading: "Loading", ready: "Ready", cold: "Scaled to zero", failed: "Failed",
  unloading: "Undeploying" };

function UnitRow({ unit }) {
  return (
    <tr data-unit={unit.name} data-unit-state={unit.state}>
      <td>
        <span className={`gstatus-dot ${unit.state}`} title={unit.state} />
        <strong>{unit.name}</strong> <span className="muted small">{unit.kind}{unit.shared ? ", shared" : ""}</span>
        <div className="gunit-nodes">{unit.nodes.join(", ")}</div>
      </td>
      <td className="num">{unit.calls ?? "–"}</td>
      <td className="num">{formatMs(unit.p50_ms)}</td>
      <td className="num">{unit.failures ?? "–"}</td>
    </tr>
  );
}

/** Which deployment serves this graph, its state (live), and each Triton unit with its
 * statistics; a fused unit runs several nodes and reports them as one. */
export default function DeploymentPanel({ deployments, error, selected, onSelect, nodes, nodesFailure, mode, canDeploy,
  onDeploy, loadedNumber }) {
  if (error) return <p className="gproblems-failure">Deployments did not load: {error}</p>;
  if (deployments === null) return <p className="muted">Loading deployments…</p>;
  const deployButton = canDeploy && (
    <button type="button" className="small primary" data-action="deploy-panel" onClick={onDeploy}>Deploy…</button>);
  if (!selected) {
    return (
      <section className="gdeployment" data-deployment-panel="none">
        <p className="muted">This graph is not deployed.</p>
        {canDeploy ? deployButton : <p className="muted small" data-deploy-members>Owners and admins deploy it; you can try
          it once it is deployed.</p>}
      </section>
    );
  }
  const fusedUnits = (nodes?.units ?? []).filter(runsSeveral);
  return (
    <section className="gdeployment" data-deployment-panel={selected.id}>
      <div className="gdeployment-head">
        {deployments.length > 1 ? (
          <select aria-label="Deployment" data-deployment-pick value={selected.id}
            onChange={(event) => onSelect(Number(event.target.value))}>
            {deployments.map((d) => <option key={d.id} value={d.id}>{d.name} · v{d.graph_version_number}</option>)}
          </select>
        ) : <strong className="gdeployment-name">{selected.name}</strong>}
        <span className={`badge state-${selected.state}`} data-deployment-state={selected.state} title={selected.error || undefined}>
          {STATE_LABELS[selected.state] ?? selected.state}</span>
        {deployButton}
      </div>
      <div className="gdeployment-meta muted small">
        v{selected.graph_version_number} · {nodes?.executor ?? selected.executor}
        {loadedNumber && loadedNumber !== selected.graph_version_number
          && <span className="gmismatch" data-version-mismatch> · the canvas shows v{loadedNumber}</span>}
        <span className={`glive ${mode}`} data-live-mode={mode}>{mode === "live" ? "● Live" : "Refreshing every 3 s"}</span>
      </div>
      {selected.state === "failed" && selected.error && <div className="form-alert small" data-deployment-error>{selected.error}</div>}
      {nodes ? (
        <table className="gunits" data-units>
          <thead><tr><th>Unit · nodes</th><th className="num">Calls</th><th className="num">p50</th><th className="num">Failed</th></tr></thead>
          <tbody>{nodes.units.map((unit) => <UnitRow key={unit.name} unit={unit} />)}</tbody>
        </table>
      ) : nodesFailure ? <p className="muted small" data-nodes-failure>Node statistics unavailable: {nodesFailure}</p>
        : <p className="muted small">Reading node status…</p>}
      {fusedUnits.map((unit) => (
        <p key={unit.name} className="muted small" data-fused-note={unit.name}>Fused: {unit.nodes.join(", ")} run as one Triton model
          ({unit.name}) and report their statistics together.</p>
      ))}
      <p className="muted small">Statistics are Triton's, cumulative since the unit loaded.</p>
    </section>
  );
}

import { useEffect, useRef, useState } from "react";
import { EXECUTORS, deploymentName } from "../lib/deploy.js";
import { Modal } from "./Dialogs.jsx";

/** Deploy a saved version: its name in the gateway URL, the version, how Triton runs it. The
 * server says what it refuses (a name taken, a plan's limits, an ensemble with a switch). */
export default function DeployDialog({ api, versions, defaultNumber, graphName, dirty, onClose, onDeployed }) {
  const [name, setName] = useState(() => deploymentName(graphName));
  const [number, setNumber] = useState(defaultNumber ?? versions[0]?.number);
  const [executor, setExecutor] = useState("auto");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const field = useRef(null);
  useEffect(() => field.current?.focus(), []);
  const version = versions.find((v) => v.number === number);

  async function deploy(event) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      onDeployed(await api.deploy({ name: name.trim(), graphVersion: version.id, executor }));
    } catch (failure) {
      setError(failure.message);
    } finally {
      setBusy(false);
    }
  }

  return (
    <Modal title="Deploy a version" onClose={onClose}>
      <form className="stack-form" data-deploy-form onSubmit={deploy}>
        <label className="gfield"><span>Name</span>
          <input ref={field} name="name" value={name} maxLength={63} autoComplete="off" required
            onChange={(event) => setName(event.target.value)} />
          <span className="muted small">Clients call <code>/v2/models/{name || "…"}/infer</code>.</span>
        </label>
        <label className="gfield"><span>Version</span>
          <select name="version" value={number} onChange={(event) => setNumber(Number(event.target.value))}>
            {versions.map((v) => <option key={v.number} value={v.number}>v{v.number}{v.message ? ` · ${v.message}` : ""}</option>)}
          </select>
        </label>
        <fieldset className="gexecutors">
          <legend>Executor</legend>
          {EXECUTORS.map((choice) => (
            <label key={choice.value} className="gexecutor">
              <input type="radio" name="executor" value={choice.value} checked={executor === choice.value}
                onChange={() => setExecutor(choice.value)} />
              <span><strong>{choice.label}</strong> <span className="muted small">{choice.help}</span></span>
            </label>
          ))}
        </fieldset>
        {dirty && <p className="warning small">The canvas has unsaved changes: a deployment serves a saved version.</p>}
        {error && <div className="form-alert" role="alert" data-deploy-error>{error}</div>}
        <div className="gmodal-actions">
          <button type="button" onClick={onClose}>Cancel</button>
          <button type="submit" className="primary" disabled={busy || !version || !name.trim()}>
            {busy ? "Deploying…" : `Deploy v${number ?? "?"}`}</button>
        </div>
      </form>
    </Modal>
  );
}

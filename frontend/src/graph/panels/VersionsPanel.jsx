import { useState } from "react";

/** Pick two versions to compare; by default the newest and the one before it. */
function CompareForm({ versions, busy, onCompare }) {
  const [picked, setPicked] = useState({ from: null, to: null });
  const numbers = versions.map((v) => v.number);
  const from = numbers.includes(picked.from) ? picked.from : versions[1].number;
  const to = numbers.includes(picked.to) ? picked.to : versions[0].number;
  const select = (name, value, label) => (
    <select aria-label={label} data-diff-pick={name} value={value}
      onChange={(event) => setPicked((current) => ({ ...current, [name]: Number(event.target.value) }))}>
      {numbers.map((number) => <option key={number} value={number}>v{number}</option>)}
    </select>
  );
  return (
    <form className="gcompare" data-compare onSubmit={(event) => {
      event.preventDefault();
      onCompare(from, to);
    }}>
      <span>Compare</span>
      {select("from", from, "Compare from version")}
      <span>→</span>
      {select("to", to, "Compare to version")}
      <button type="submit" className="small" data-action="diff" disabled={busy || from === to}>Show diff</button>
    </form>
  );
}

/** The graph's saved versions, newest first; any can be loaded into the canvas (undoably), and
 * two compared on the canvas. */
export default function VersionsPanel({ versions, error, loadedNumber, onLoad, onCompare, busy }) {
  if (error) return <p className="gproblems-failure">Versions did not load: {error}</p>;
  if (versions === null) return <p className="muted">Loading versions…</p>;
  if (!versions.length) return <p className="muted">No version saved yet. Save one to keep this graph.</p>;
  return (
    <>
      {versions.length > 1 && <CompareForm versions={versions} busy={busy} onCompare={onCompare} />}
      <ol className="gversions" data-versions>
        {versions.map((version) => (
          <li key={version.number} className={version.number === loadedNumber ? "current" : undefined} data-version={version.number}>
            <div className="gversions-head">
              <span className="pill">v{version.number}</span>
              <span className="muted small" title={version.created_at}>{new Date(version.created_at).toLocaleString()}</span>
              {version.author && <span className="muted small">{typeof version.author === "object" ? version.author.username : version.author}</span>}
            </div>
            <div className="gversions-message">{version.message || <span className="muted">no message</span>}</div>
            <button type="button" className="small" disabled={busy} onClick={() => onLoad(version.number)}>
              {version.number === loadedNumber ? "Reload" : "Load"}
            </button>
          </li>
        ))}
      </ol>
    </>
  );
}

/** The graph's saved versions, newest first; any can be loaded into the canvas (undoably). */
export default function VersionsPanel({ versions, error, loadedNumber, onLoad, busy }) {
  if (error) return <p className="gproblems-failure">Versions did not load: {error}</p>;
  if (versions === null) return <p className="muted">Loading versions…</p>;
  if (!versions.length) return <p className="muted">No version saved yet. Save one to keep this graph.</p>;
  return (
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
  );
}

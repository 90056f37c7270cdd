const edgeText = (edge) => `${edge.from} → ${edge.to}`;

/** The side panel while two versions are compared: the summary, then each node and edge that
 * changed; a node's entry focuses it on the canvas. */
export default function DiffPanel({ view, onFocusNode, onClose }) {
  const { from, to, diff, summary } = view;
  const { nodes, edges } = diff;
  const nodeEntry = (id, status, changes = []) => (
    <li key={`${status}:${id}`} className={`gdiff-item ${status}`} data-diff-node={id} data-diff-status={status}>
      <button type="button" className="link-button" onClick={() => onFocusNode(id)}><code>{id}</code></button>
      <span className="gdiff-tag">{status}</span>
      {changes.length > 0 && (
        <ul className="gdiff-changes">{changes.map((change) => <li key={change.path}><code>{change.text}</code></li>)}</ul>
      )}
    </li>
  );
  return (
    <div className="gdiff-panel" data-diff-panel>
      <div className="gdiff-panel-head">
        <strong>v{from} → v{to}</strong>
        <button type="button" className="small" onClick={onClose}>Close diff</button>
      </div>
      <p className="gdiff-summary" data-diff-summary>{summary}</p>
      {(nodes.added.length + nodes.changed.length + nodes.removed.length) > 0 && (
        <section className="ginspector-section">
          <h4>Nodes</h4>
          <ul className="gdiff-list">
            {nodes.added.map((id) => nodeEntry(id, "added"))}
            {nodes.changed.map(({ id, changes }) => nodeEntry(id, "changed", changes))}
            {nodes.removed.map((id) => nodeEntry(id, "removed"))}
          </ul>
        </section>
      )}
      {(edges.added.length + edges.removed.length) > 0 && (
        <section className="ginspector-section">
          <h4>Edges</h4>
          <ul className="gdiff-list">
            {edges.added.map((edge, i) => <li key={`a${i}`} className="gdiff-item added" data-diff-edge="added">
              <span className="gdiff-tag">added</span> <code>{edgeText(edge)}</code></li>)}
            {edges.removed.map((edge, i) => <li key={`r${i}`} className="gdiff-item removed" data-diff-edge="removed">
              <span className="gdiff-tag">removed</span> <code>{edgeText(edge)}</code></li>)}
          </ul>
        </section>
      )}
      <p className="muted small">Read-only: the canvas shows v{to} with what changed since v{from}. Positions are not compared.
        Close the diff to go back to editing, with your canvas and its undo history as you left them.</p>
    </div>
  );
}

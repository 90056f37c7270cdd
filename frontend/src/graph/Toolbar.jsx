/** The editor's buttons; each names its shortcut. While two versions are compared only the
 * view's own buttons show: the canvas is the diff's, not the document's. */
export default function Toolbar({ readOnly, diffing, canUndo, canRedo, dirty, status, actions, deployment }) {
  const button = (action, label, title, extra = {}) => (
    <button type="button" className="small" data-action={action} title={title} onClick={() => actions[action]()} {...extra}>{label}</button>
  );
  const editing = !readOnly && !diffing;
  return (
    <div className="gtoolbar" role="toolbar" aria-label="Graph editor">
      {editing && (
        <>
          {button("undo", "Undo", "Undo (Ctrl+Z)", { disabled: !canUndo })}
          {button("redo", "Redo", "Redo (Ctrl+Shift+Z)", { disabled: !canRedo })}
          <span className="gtoolbar-sep" />
          {button("copy", "Copy", "Copy (Ctrl+C)")}
          {button("paste", "Paste", "Paste (Ctrl+V)")}
          {button("delete", "Delete", "Delete the selection (Delete)")}
          <span className="gtoolbar-sep" />
        </>
      )}
      {editing && button("layout", "Auto-layout", "Lay the graph out left to right (L)")}
      {button("fit", "Fit", "Fit the graph in view (F)")}
      {!diffing && button("json", readOnly ? "Export JSON" : "Import / export JSON", "The spec as JSON")}
      {button("help", "?", "Keyboard shortcuts (?)", { "aria-label": "Keyboard shortcuts" })}
      {diffing ? <span className="gtoolbar-status" data-validation-status="diff">Comparing versions (read-only)</span>
        : <span className="gtoolbar-status" data-validation-status={status.state}>{status.text}</span>}
      {editing && dirty && <span className="gdirty" data-dirty>Unsaved changes</span>}
      {editing && button("save", "Save version…", "Save as a new version (Ctrl+S)", { className: "small primary" })}
      {!diffing && deployment && (
        <button type="button" className="small gdeployed" data-deployment-chip={deployment.state} onClick={() => actions.tryIt()}
          title="Its status, statistics and the Try it panel">
          <span className={`gstatus-dot ${deployment.state}`} />{deployment.name} · {deployment.state}</button>
      )}
      {editing && button("deploy", "Deploy…", "Deploy a saved version")}
    </div>
  );
}

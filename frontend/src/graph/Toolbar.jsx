/** The editor's buttons; each names its shortcut. */
export default function Toolbar({ readOnly, canUndo, canRedo, dirty, status, actions }) {
  const button = (action, label, title, extra = {}) => (
    <button type="button" className="small" data-action={action} title={title} onClick={() => actions[action]()} {...extra}>{label}</button>
  );
  return (
    <div className="gtoolbar" role="toolbar" aria-label="Graph editor">
      {!readOnly && (
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
      {!readOnly && button("layout", "Auto-layout", "Lay the graph out left to right (L)")}
      {button("fit", "Fit", "Fit the graph in view (F)")}
      {button("json", readOnly ? "Export JSON" : "Import / export JSON", "The spec as JSON")}
      {button("help", "?", "Keyboard shortcuts (?)", { "aria-label": "Keyboard shortcuts" })}
      <span className="gtoolbar-status" data-validation-status={status.state}>{status.text}</span>
      {!readOnly && dirty && <span className="gdirty" data-dirty>Unsaved changes</span>}
      {!readOnly && button("save", "Save version…", "Save as a new version (Ctrl+S)", { className: "small primary" })}
    </div>
  );
}

import { useEffect, useRef, useState } from "react";
import { SHORTCUTS } from "../lib/shortcuts.js";

export function Modal({ title, onClose, children, wide = false }) {
  return (
    <div className="gmodal-backdrop" onMouseDown={(event) => { if (event.target === event.currentTarget) onClose(); }}>
      <div className={`gmodal${wide ? " wide" : ""}`} role="dialog" aria-modal="true" aria-label={title}>
        <div className="gmodal-head"><h2>{title}</h2>
          <button type="button" className="small" onClick={onClose} aria-label="Close">×</button></div>
        {children}
      </div>
    </div>
  );
}

export function HelpDialog({ onClose }) {
  return (
    <Modal title="Keyboard shortcuts" onClose={onClose}>
      <table className="gshortcuts" data-shortcuts>
        <tbody>
          {SHORTCUTS.map((s) => <tr key={s.keys}><td><kbd>{s.keys}</kbd></td><td>{s.label}</td></tr>)}
        </tbody>
      </table>
      <p className="help">On a Mac, ⌘ works where Ctrl is written.</p>
    </Modal>
  );
}

export function SaveDialog({ onClose, onSave, saving, error, valid }) {
  const [message, setMessage] = useState("");
  const field = useRef(null);
  useEffect(() => field.current?.focus(), []);
  return (
    <Modal title="Save as a new version" onClose={onClose}>
      <form className="stack-form" onSubmit={(event) => { event.preventDefault(); onSave(message); }}>
        <label className="gfield"><span>What changed</span>
          <textarea ref={field} rows={3} value={message} name="message" maxLength={1000}
            onChange={(event) => setMessage(event.target.value)} placeholder="e.g. fall back to the forest below 0.9" />
        </label>
        {!valid && <p className="warning small">The validator reports problems: the server will refuse this spec until they are fixed.</p>}
        {error && <div className="form-alert" role="alert" data-save-error>{error}</div>}
        <div className="gmodal-actions">
          <button type="button" onClick={onClose}>Cancel</button>
          <button type="submit" className="primary" disabled={saving}>{saving ? "Saving…" : "Save version"}</button>
        </div>
      </form>
    </Modal>
  );
}

/** The spec as JSON: download it, or (when editing) paste or open one to replace the canvas. */
export function JsonDialog({ onClose, json, fileName, readOnly, onImport }) {
  const [text, setText] = useState(json);
  const [problem, setProblem] = useState(null);
  function download() {
    const url = URL.createObjectURL(new Blob([json], { type: "application/json" }));
    const link = Object.assign(document.createElement("a"), { href: url, download: fileName });
    link.click();
    URL.revokeObjectURL(url);
  }
  function apply(source) {
    try {
      onImport(source);
      onClose();
    } catch (error) {
      setProblem(error.message);
    }
  }
  async function openFile(event) {
    const file = event.target.files?.[0];
    if (file) apply(await file.text());
  }
  return (
    <Modal title="Spec as JSON" onClose={onClose} wide>
      <textarea className="gjson" rows={18} value={text} readOnly={readOnly} spellCheck={false} aria-label="Spec JSON"
        onChange={(event) => setText(event.target.value)} />
      {problem && <div className="form-alert" role="alert">{problem}</div>}
      <div className="gmodal-actions">
        <button type="button" onClick={download}>Download .json</button>
        {!readOnly && <label className="button">Open a file…<input type="file" accept="application/json,.json" hidden onChange={openFile} /></label>}
        {!readOnly && <button type="button" className="primary" onClick={() => apply(text)}>Replace the canvas</button>}
      </div>
    </Modal>
  );
}

// The side panel's fields for each node kind. Every change is one undoable edit.
import { useEffect, useState } from "react";
import { renameTargetPort, updateNodeData } from "../lib/document.js";
import { DATATYPES, formatType, parseShape, shapeText } from "../lib/ports.js";
import ParamField from "./ParamField.jsx";

/** A text field applied on Enter or blur, with the reason a value is refused. */
function CommitField({ label, value, onCommit, disabled, placeholder, validate }) {
  const [draft, setDraft] = useState(value);
  const [problem, setProblem] = useState(null);
  useEffect(() => {
    setDraft(value);
    setProblem(null);
  }, [value]);
  function apply(text) {
    if (text === value) return setProblem(null);
    const reason = validate?.(text);
    setProblem(reason ?? null);
    if (!reason) onCommit(text);
  }
  return (
    <label className={`gfield${problem ? " has-error" : ""}`}>
      {label && <span>{label}</span>}
      <input type="text" value={draft} disabled={disabled} placeholder={placeholder}
        onChange={(event) => setDraft(event.target.value)} onBlur={(event) => apply(event.target.value)}
        onKeyDown={(event) => { if (event.key === "Enter") apply(event.currentTarget.value); }} />
      {problem && <span className="field-error">{problem}</span>}
    </label>
  );
}

export { CommitField };

const shapeProblem = (text) => {
  try {
    parseShape(text);
    return null;
  } catch (error) {
    return error.message;
  }
};

export function InputFields({ node, edit, readOnly }) {
  const tensors = node.data.tensors ?? [];
  const setTensors = (next) => edit((doc) => updateNodeData(doc, node.id, { ...node.data, tensors: next }));
  const change = (index, patch) => setTensors(tensors.map((t, i) => (i === index ? { ...t, ...patch } : t)));
  return (
    <section className="ginspector-section" data-tensors>
      <h4>Tensors</h4>
      <p className="help">What a caller sends. Shape: sizes, -1 for the batch or a free dimension, or a name such as n.</p>
      {tensors.map((tensor, index) => (
        <div className="gtensor" key={index} data-tensor={index}>
          <CommitField label="Name" value={tensor.name ?? ""} disabled={readOnly}
            validate={(text) => (text.trim() ? null : "A name.")} onCommit={(text) => change(index, { name: text.trim() })} />
          <label className="gfield"><span>Datatype</span>
            <select value={tensor.datatype} disabled={readOnly} onChange={(event) => change(index, { datatype: event.target.value })}>
              {DATATYPES.map((dtype) => <option key={dtype}>{dtype}</option>)}
            </select>
          </label>
          <CommitField label="Shape" value={shapeText(tensor.shape)} disabled={readOnly} validate={shapeProblem}
            onCommit={(text) => change(index, { shape: parseShape(text) })} />
          {!readOnly && <button type="button" className="small danger" onClick={() => setTensors(tensors.filter((_, i) => i !== index))}>Remove</button>}
        </div>
      ))}
      {!readOnly && (
        <button type="button" className="small" onClick={() => setTensors([...tensors,
          { name: `input_${tensors.length + 1}`, datatype: "FP32", shape: [-1, 4] }])}>Add a tensor</button>
      )}
    </section>
  );
}

export function OutputFields({ node, doc, edit, readOnly, types }) {
  const feeding = doc.edges.filter((e) => e.target === node.id);
  const names = new Set(feeding.map((e) => e.targetHandle));
  return (
    <section className="ginspector-section">
      <h4>Outputs</h4>
      <p className="help">Each edge into this node is a graph output, named by its port. Drop a port on “+ new output” to add one.</p>
      {!feeding.length && <p className="muted small">No outputs yet.</p>}
      {feeding.map((edge) => (
        <div key={edge.id} className="goutput">
          <CommitField label={`from ${edge.source}.${edge.sourceHandle}`} value={edge.targetHandle} disabled={readOnly}
            validate={(text) => (!text.trim() ? "A name." : names.has(text.trim()) ? "Another output has this name." : null)}
            onCommit={(text) => edit((d) => renameTargetPort(d, node.id, edge.targetHandle, text.trim()))} />
          <span className="muted small">{formatType(types[`${edge.source}.${edge.sourceHandle}`])}</span>
        </div>
      ))}
    </section>
  );
}

export function ModelFields({ node, models, catalogue, edit, readOnly }) {
  const version = catalogue.versions.get(Number(node.data.model_version));
  return (
    <section className="ginspector-section">
      <h4>Model version</h4>
      <select value={node.data.model_version ?? ""} disabled={readOnly} aria-label="Model version"
        onChange={(event) => edit((doc) => updateNodeData(doc, node.id, { ...node.data, model_version: Number(event.target.value) }))}>
        {!version && <option value={node.data.model_version ?? ""}>#{node.data.model_version} (not among your models)</option>}
        {models.map((model) => (
          <optgroup key={model.id} label={model.name}>
            {[...model.versions].sort((a, b) => b.version - a.version).map((v) => (
              <option key={v.id} value={v.id}>{model.name} v{v.version}</option>))}
          </optgroup>
        ))}
      </select>
      {version && (
        <table className="gsignature">
          <tbody>
            {version.inputs.map((t) => <tr key={`i${t.name}`}><td>in</td><td><code>{t.name}</code></td><td>{formatType(t)}</td></tr>)}
            {version.outputs.map((t) => <tr key={`o${t.name}`}><td>out</td><td><code>{t.name}</code></td><td>{formatType(t)}</td></tr>)}
          </tbody>
        </table>
      )}
    </section>
  );
}

export function ParamsFields({ node, entry, edit, readOnly }) {
  const schema = entry?.params ?? {};
  const params = node.data.params ?? {};
  const names = [...new Set([...Object.keys(schema), ...Object.keys(params)])];
  const set = (name, value) => edit((doc) => updateNodeData(doc, node.id, (data) => {
    const next = { ...(data.params ?? {}) };
    if (value === undefined) delete next[name];
    else next[name] = value;
    return { ...data, params: next };
  }));
  return (
    <section className="ginspector-section" data-params>
      <h4>Parameters</h4>
      {entry?.doc && <p className="help">{entry.doc}</p>}
      {!entry && <p className="muted small">This op is not in the catalogue; the validator says why.</p>}
      {!names.length && <p className="muted small">No parameters.</p>}
      {names.map((name) => (
        <ParamField key={name} name={name} schema={schema[name] ?? { type: "json" }} value={params[name]}
          disabled={readOnly} onChange={(value) => set(name, value)} />
      ))}
    </section>
  );
}

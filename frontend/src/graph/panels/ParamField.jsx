import { useEffect, useState } from "react";
import { fieldKind, parseParam } from "../lib/params.js";
import { DATATYPES } from "../lib/ports.js";

const shown = (kind, value) => (value === undefined || value === null ? ""
  : kind === "json" ? JSON.stringify(value) : String(value));

/** One param: typed text is applied on Enter or when the field loses focus. */
export default function ParamField({ name, schema = {}, value, onChange, disabled }) {
  const kind = fieldKind(schema);
  const [draft, setDraft] = useState(shown(kind, value));
  const [problem, setProblem] = useState(null);
  useEffect(() => {
    setDraft(shown(kind, value));
    setProblem(null);
  }, [kind, value]);

  function apply(text) {
    try {
      const parsed = parseParam(kind, text);
      setProblem(null);
      if (JSON.stringify(parsed) !== JSON.stringify(value)) onChange(parsed);
    } catch (error) {
      setProblem(error.message);
    }
  }

  const id = `param-${name}`;
  const placeholder = schema.default === undefined || schema.default === null ? "" : `default ${shown(kind, schema.default)}`;
  let control;
  if (kind === "bool") {
    control = <input id={id} type="checkbox" checked={Boolean(value ?? schema.default)} disabled={disabled}
      onChange={(event) => onChange(event.target.checked)} />;
  } else if (kind === "choice" || kind === "datatype") {
    const choices = kind === "choice" ? schema.choices : DATATYPES;
    control = (
      <select id={id} value={value ?? ""} disabled={disabled}
        onChange={(event) => onChange(choices.find((choice) => String(choice) === event.target.value))}>
        <option value="">{placeholder || "—"}</option>
        {choices.map((choice) => <option key={String(choice)} value={choice}>{String(choice)}</option>)}
      </select>
    );
  } else {
    control = <input id={id} type="text" value={draft} placeholder={placeholder} disabled={disabled}
      inputMode={kind === "int" || kind === "number" ? "decimal" : undefined}
      onChange={(event) => setDraft(event.target.value)} onBlur={(event) => apply(event.target.value)}
      onKeyDown={(event) => { if (event.key === "Enter") apply(event.currentTarget.value); }} />;
  }
  return (
    <div className={`gfield${problem ? " has-error" : ""}`} data-param={name}>
      <label htmlFor={id}>{name}{schema.required ? <span className="req" title="required">*</span> : null}
        <span className="gfield-type">{schema.type}</span></label>
      {control}
      {problem && <div className="field-error">{problem}</div>}
      {schema.help && <div className="help">{schema.help}</div>}
    </div>
  );
}

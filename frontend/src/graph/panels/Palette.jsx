import { useMemo, useState } from "react";
import { DATATYPES, dtypeColour } from "../lib/ports.js";
import { paletteGroups } from "../lib/palette.js";

export const PALETTE_MIME = "application/x-graph-node";

/** Search, then drag an entry onto the canvas (or click it to add it in the middle). */
export default function Palette({ ops, models, loading, error, readOnly, onAdd }) {
  const [query, setQuery] = useState("");
  const groups = useMemo(() => paletteGroups(ops, models), [ops, models]);
  const words = query.trim().toLowerCase().split(/\s+/).filter(Boolean);
  const shown = groups.map((group) => ({
    ...group, entries: group.entries.filter((entry) => words.every((word) => entry.search.includes(word))),
  })).filter((group) => group.entries.length);

  return (
    <aside className="gpalette" aria-label="Palette">
      <input type="search" className="gpalette-search" placeholder="Search ops and models" value={query}
        onChange={(event) => setQuery(event.target.value)} aria-label="Search the palette" />
      {readOnly && <p className="muted small">Read-only: the palette is for owners and admins.</p>}
      {error && <p className="gpalette-error small">Part of the palette did not load: {error}</p>}
      {loading && <p className="muted small">Loading ops and models…</p>}
      <div className="gpalette-groups">
        {shown.map((group) => (
          <section key={group.title}>
            <h3>{group.title}</h3>
            <ul>
              {group.entries.map((entry) => (
                <li key={entry.key}>
                  <button type="button" className="gpalette-entry" data-palette-entry={entry.key}
                    draggable={!readOnly} disabled={readOnly} title={entry.doc || entry.detail}
                    onDragStart={(event) => {
                      event.dataTransfer.setData(PALETTE_MIME, JSON.stringify(entry.payload));
                      event.dataTransfer.effectAllowed = "move";
                    }}
                    onClick={() => onAdd(entry.payload)}>
                    <span className="gpalette-label">{entry.label}</span>
                    <span className="gpalette-detail">{entry.detail}</span>
                  </button>
                </li>
              ))}
            </ul>
          </section>
        ))}
        {!loading && !shown.length && <p className="muted small">Nothing matches “{query}”.</p>}
        {!loading && !models.length && !words.length && (
          <p className="muted small">No models yet: upload one on the Models page to use it here.</p>)}
      </div>
      <div className="gpalette-legend" aria-label="Datatype colours">
        {DATATYPES.map((dtype) => (
          <span key={dtype}><i style={{ background: dtypeColour(dtype) }} />{dtype}</span>
        ))}
      </div>
    </aside>
  );
}

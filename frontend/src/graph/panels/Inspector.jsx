import { useEditorContext } from "../EditorContext.js";
import { removeEdge, renameNode } from "../lib/document.js";
import { nodeIdProblem } from "../lib/ids.js";
import { formatType, switchEntry } from "../lib/ports.js";
import { CommitField, InputFields, ModelFields, OutputFields, ParamsFields } from "./NodeFields.jsx";

function Issues({ issues }) {
  if (!issues?.length) return null;
  return (
    <ul className="ginspector-issues" data-inspector-issues>
      {issues.map((issue, index) => <li key={index}><code>{issue.code}</code> {issue.message}</li>)}
    </ul>
  );
}

function Ports({ id }) {
  const { ports, types } = useEditorContext();
  const own = ports[id];
  if (!own || (!own.inputs.length && !own.outputs.length)) return null;
  const rows = [...own.inputs.map((p) => ["in", p]), ...own.outputs.map((p) => ["out", p])];
  return (
    <section className="ginspector-section">
      <h4>Ports</h4>
      <table className="gsignature">
        <tbody>
          {rows.map(([side, port]) => (
            <tr key={`${side}:${port}`}><td>{side}</td><td><code>{port}</code></td>
              <td>{formatType(types[`${id}.${port}`]) || <span className="muted">not typed yet</span>}</td></tr>))}
        </tbody>
      </table>
    </section>
  );
}

function NodeInspector({ node, doc, models, edit }) {
  const { catalogue, issues, types, readOnly } = useEditorContext();
  const taken = new Set(doc.nodes.map((n) => n.id).filter((id) => id !== node.id));
  const props = { node, doc, edit, readOnly, catalogue, models, types };
  return (
    <div data-inspector-node={node.id}>
      <div className="ginspector-head"><span className={`gkind gkind-${node.type}`}>{node.type}</span>
        <CommitField value={node.id} disabled={readOnly} validate={(text) => nodeIdProblem(text, taken)}
          onCommit={(text) => edit((d) => renameNode(d, node.id, text))} />
      </div>
      <Issues issues={issues.byNode[node.id]} />
      {node.type === "input" && <InputFields {...props} />}
      {node.type === "output" && <OutputFields {...props} />}
      {node.type === "model" && <ModelFields {...props} />}
      {node.type === "op" && <ParamsFields {...props} entry={catalogue.ops.get(node.data.op)} />}
      {node.type === "switch" && <ParamsFields {...props} entry={switchEntry(catalogue)} />}
      <Ports id={node.id} />
    </div>
  );
}

function EdgeInspector({ edge, edit }) {
  const { issues, types, readOnly } = useEditorContext();
  return (
    <div data-inspector-edge={edge.id}>
      <div className="ginspector-head"><span className="gkind">edge</span>
        <code>{edge.source}.{edge.sourceHandle} → {edge.target}.{edge.targetHandle}</code></div>
      <Issues issues={issues.byEdge[edge.id]} />
      <p className="small">{formatType(types[`${edge.source}.${edge.sourceHandle}`]) || "Not typed yet."}</p>
      {!readOnly && <button type="button" className="small danger" onClick={() => edit((d) => removeEdge(d, edge.id))}>Delete edge</button>}
    </div>
  );
}

/** The side panel for the selection: one node's fields, one edge, or how many are selected. */
export default function Inspector({ doc, models, edit }) {
  const { readOnly } = useEditorContext();
  const nodes = doc.nodes.filter((n) => n.selected);
  const edges = doc.edges.filter((e) => e.selected);
  if (nodes.length === 1 && !edges.length) return <NodeInspector key={nodes[0].id} node={nodes[0]} doc={doc} models={models} edit={edit} />;
  if (edges.length === 1 && !nodes.length) return <EdgeInspector edge={edges[0]} edit={edit} />;
  if (nodes.length || edges.length) {
    return <p className="muted">{nodes.length} nodes and {edges.length} edges selected. Delete, copy or drag them together.</p>;
  }
  return <p className="muted">{readOnly ? "Select a node to see its fields and the types of its ports."
    : "Select a node to edit it. Drag from the palette to add one; drag from a port to a port to connect."}</p>;
}

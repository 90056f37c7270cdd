import { formatType } from "../lib/ports.js";

/** Every issue of the last validation, each a link to the node it names; then the signature. */
export default function ProblemsPanel({ validation, onFocusNode }) {
  const { result, pending, failure } = validation;
  const errors = result?.errors ?? [];
  return (
    <div className="gproblems">
      {failure && <p className="gproblems-failure">The validator could not be reached: {failure}</p>}
      {!result && !failure && <p className="muted">Checking the graph…</p>}
      {result && !errors.length && <p className="gvalid" data-graph-valid>The graph is valid{pending ? " (checking again…)" : "."}</p>}
      {errors.length > 0 && (
        <ol className="gproblems-list" data-problems>
          {errors.map((issue, index) => (
            <li key={index} data-code={issue.code}>
              <code>{issue.code}</code>{" "}
              {issue.node ? <button type="button" className="link-button" onClick={() => onFocusNode(issue.node)}>{issue.node}</button> : null}
              {issue.edge !== null && issue.edge !== undefined ? <span className="muted small"> edge {issue.edge}</span> : null}
              <div>{issue.message}</div>
            </li>
          ))}
        </ol>
      )}
      {result && (result.inputs?.length > 0 || result.outputs?.length > 0) && (
        <section className="ginspector-section">
          <h4>Signature</h4>
          <table className="gsignature" data-signature>
            <tbody>
              {(result.inputs ?? []).map((t) => <tr key={`i${t.name}`}><td>in</td><td><code>{t.name}</code></td><td>{formatType(t)}</td></tr>)}
              {(result.outputs ?? []).map((t) => <tr key={`o${t.name}`}><td>out</td><td><code>{t.name}</code></td><td>{formatType(t)}</td></tr>)}
            </tbody>
          </table>
        </section>
      )}
    </div>
  );
}

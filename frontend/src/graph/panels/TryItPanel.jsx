import { useCallback, useEffect, useRef, useState } from "react";
import { callLatencies, formatMs, latenciesSeen } from "../lib/status.js";
import { defaultRequest, gatewayMessage, outputsOf, parseRequest, requestText } from "../lib/tryit.js";

const KEY_STORAGE = "platform.tryit.apiKey";
const STATS_RETRIES = 4;
const STATS_RETRY_MS = 250;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function storedKey() {
  try {
    return window.sessionStorage.getItem(KEY_STORAGE) ?? "";
  } catch {
    return "";
  }
}

function LatencyTable({ rows }) {
  return (
    <table className="gunits" data-tryit-latency>
      <thead><tr><th>Unit · nodes</th><th className="num">This call</th></tr></thead>
      <tbody>
        {rows.map((row) => (
          <tr key={row.unit} data-latency-unit={row.unit}>
            <td><strong>{row.unit}</strong> <span className="muted small">{row.kind}</span>
              <div className="gunit-nodes">{row.nodes.join(", ")}</div></td>
            <td className="num" data-latency-ms={row.ms ?? ""}>
              {row.calls > 0 ? formatMs(row.ms) : <span className="muted">not run</span>}
              {row.calls > 1 && <div className="muted small">over {row.calls} calls</div>}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/**
 * Sends one request to the deployment through the gateway, as a client would, with the
 * user's own API key (kept in this tab's sessionStorage only), and shows the outputs and
 * what the call cost each node, from Triton's statistics read before and after it.
 */
export default function TryItPanel({ api, gateway, graphId, deployment, keysUrl, onCalled }) {
  const [key, setKey] = useState(storedKey);
  const [inputs, setInputs] = useState(null);
  const [text, setText] = useState("");
  const [problem, setProblem] = useState(null);
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState(null);
  const answerBox = useRef(null);
  const number = deployment.graph_version_number;
  // The side panel scrolls: bring a new answer into view. (Chromium's scrollIntoView returns a
  // promise, which an effect must not return.)
  useEffect(() => {
    answerBox.current?.scrollIntoView({ block: "nearest" });
  }, [result]);

  const reset = useCallback((signature) => {
    setText(requestText(defaultRequest(signature)));
    setProblem(null);
  }, []);

  useEffect(() => {
    let current = true;
    setInputs(null);
    setResult(null);
    api.version(graphId, number).then((version) => {
      if (!current) return;
      setInputs(version.inputs);
      reset(version.inputs);
    }).catch((error) => current && setProblem(`The version's signature did not load: ${error.message}`));
    return () => {
      current = false;
    };
  }, [api, graphId, number, reset]);

  function changeKey(value) {
    setKey(value);
    try {
      if (value) window.sessionStorage.setItem(KEY_STORAGE, value);
      else window.sessionStorage.removeItem(KEY_STORAGE);
    } catch {
      // Storage refused (private mode): the key lives as long as the page.
    }
  }

  async function send(event) {
    event.preventDefault();
    let body;
    try {
      body = parseRequest(text);
    } catch (error) {
      setProblem(error.message);
      return;
    }
    if (!key.trim()) {
      setProblem("Paste an API key with the infer scope first.");
      return;
    }
    setProblem(null);
    setBusy(true);
    try {
      const before = await api.deploymentNodes(deployment.id).catch(() => null);
      const answer = await gateway.infer(deployment.name, body, key.trim());
      let after = null;
      let rows = null;
      if (before) {
        for (let attempt = 0; attempt < STATS_RETRIES; attempt += 1) {
          after = await api.deploymentNodes(deployment.id).catch(() => null);
          rows = after && callLatencies(before, after);
          if (!answer.ok || !rows || latenciesSeen(rows)) break;
          await sleep(STATS_RETRY_MS);  // Triton counts a call as its response leaves
        }
      }
      if (after) onCalled(after);
      setResult(answer.ok
        ? { ok: true, status: answer.status, ms: answer.ms, outputs: outputsOf(answer.body), rows }
        : { ok: false, status: answer.status, ms: answer.ms, message: answer.failure
          ? `The gateway could not be reached at ${gateway.url}: ${answer.failure}` : gatewayMessage(answer.status, answer.body) });
    } finally {
      setBusy(false);
    }
  }

  return (
    <section className="gtryit" data-tryit>
      <h4>Try it</h4>
      <p className="muted small">Calls <code>{deployment.name}</code> through the gateway (<code>{gateway.url}</code>) with your API
        key, as a client does; the call is metered.</p>
      {deployment.state === "cold" && <p className="muted small" data-tryit-cold>Scaled to zero: the first call wakes it and
        waits while it loads.</p>}
      <form onSubmit={send}>
        <label className="gfield"><span>API key</span>
          <input type="password" name="api-key" autoComplete="off" spellCheck={false} value={key} data-tryit-key
            placeholder="sk-…" onChange={(event) => changeKey(event.target.value)} />
          <span className="muted small">Kept in this tab only. Create one on the <a href={keysUrl}>Keys page</a>.</span>
        </label>
        <label className="gfield"><span>Request <span className="gfield-type">KServe v2 inputs, batch 1</span></span>
          <textarea className="gjson" rows={7} value={text} spellCheck={false} data-tryit-request
            onChange={(event) => setText(event.target.value)} />
        </label>
        {problem && <div className="form-alert small" role="alert" data-tryit-problem>{problem}</div>}
        <div className="gtryit-actions">
          <button type="submit" className="small primary" data-action="try-send" disabled={busy || !text}>
            {busy ? "Sending…" : "Send"}</button>
          <button type="button" className="small" disabled={!inputs || busy} onClick={() => reset(inputs)}>
            Reset to the signature</button>
        </div>
      </form>
      <div ref={answerBox}>
      {result && !result.ok && (
        <div className="form-alert small" role="alert" data-tryit-error data-status={result.status}>
          <strong>{result.status || "No answer"}</strong> · {result.message}</div>
      )}
      {result?.ok && (
        <div className="gtryit-result" data-tryit-result>
          <p className="small"><strong className="gok">{result.status} OK</strong>
            <span className="muted"> · {formatMs(result.ms)} round trip from this browser</span></p>
          <table className="gunits" data-tryit-outputs>
            <thead><tr><th>Output</th><th>Values</th></tr></thead>
            <tbody>
              {result.outputs.map((output) => (
                <tr key={output.name} data-output={output.name}>
                  <td><strong>{output.name}</strong>
                    <div className="muted small">{output.datatype} [{output.shape.join(", ")}]</div></td>
                  <td className="gvalues" data-output-values>{output.text}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <h4>Per-node latency</h4>
          {result.rows ? <LatencyTable rows={result.rows} />
            : <p className="muted small" data-tryit-no-latency>Node statistics were not available for this call.</p>}
          <p className="muted small">From Triton's statistics: each unit's success time over its calls, read just before and
            after this call. A fused unit runs its nodes as one model and reports them together.</p>
        </div>
      )}
      </div>
    </section>
  );
}

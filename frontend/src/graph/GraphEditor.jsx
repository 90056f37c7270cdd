import "@xyflow/react/dist/style.css";
import "./editor.css";
import {
  Background, Controls, MiniMap, ReactFlow, ReactFlowProvider, useReactFlow, useUpdateNodeInternals,
} from "@xyflow/react";
import { useCallback, useEffect, useMemo, useReducer, useRef, useState } from "react";
import ConnectionHint, { connectionEnds } from "./ConnectionHint.jsx";
import { EditorContext } from "./EditorContext.js";
import { createGateway } from "./gateway.js";
import { useCatalogue } from "./hooks/useCatalogue.js";
import { useDeploymentEvents } from "./hooks/useDeploymentEvents.js";
import { useDeployments } from "./hooks/useDeployments.js";
import { useNodeStatus } from "./hooks/useNodeStatus.js";
import { useShortcuts } from "./hooks/useShortcuts.js";
import { useValidation } from "./hooks/useValidation.js";
import { useVersionDiff } from "./hooks/useVersionDiff.js";
import { useVersions } from "./hooks/useVersions.js";
import { copySelection, pasteClipboard } from "./lib/clipboard.js";
import { connectionProblem } from "./lib/connection.js";
import { DIFF_COLOURS } from "./lib/diff.js";
import { addNode, connect, deleteSelection, documentInit, documentReducer, selectAll } from "./lib/document.js";
import { canRedo, canUndo } from "./lib/history.js";
import { NO_ISSUES, mapIssues } from "./lib/issues.js";
import { autoLayout } from "./lib/layout.js";
import { nodeFromPalette } from "./lib/palette.js";
import { dtypeColour, mergedPortTypes, portAccepts, portsByNode } from "./lib/ports.js";
import { flowToSpec, specFromJson, specToFlow } from "./lib/spec.js";
import { nodeStatuses, statusesFromDeployment } from "./lib/status.js";
import { nodeTypes } from "./nodes/index.js";
import DiffPanel from "./panels/DiffPanel.jsx";
import DeployDialog from "./panels/DeployDialog.jsx";
import DeploymentPanel from "./panels/DeploymentPanel.jsx";
import { HelpDialog, JsonDialog, SaveDialog } from "./panels/Dialogs.jsx";
import Inspector from "./panels/Inspector.jsx";
import Palette, { PALETTE_MIME } from "./panels/Palette.jsx";
import ProblemsPanel from "./panels/ProblemsPanel.jsx";
import TryItPanel from "./panels/TryItPanel.jsx";
import VersionsPanel from "./panels/VersionsPanel.jsx";
import Toolbar from "./Toolbar.jsx";

/** What a graph with no saved version starts as. */
export const STARTER_SPEC = {
  nodes: [
    { id: "in", kind: "input", tensors: [{ name: "input", datatype: "FP32", shape: [-1, 4] }], position: { x: 0, y: 80 } },
    { id: "out", kind: "output", position: { x: 560, y: 80 } },
  ],
  edges: [],
};

const KIND_COLOURS = { input: "#0ea5e9", output: "#14b8a6", model: "#8b5cf6", op: "#64748b", switch: "#f59e0b" };
const NOTICE_MS = 4000;
const FIT = { padding: 0.2, maxZoom: 1, duration: 200 };
const shorten = (text, length = 72) => (text.length > length ? `${text.slice(0, length - 1)}…` : text);
const specText = (nodes, edges) => JSON.stringify(flowToSpec(nodes, edges), null, 2);
const NOOP = () => {};

export default function GraphEditor(props) {
  return (
    <ReactFlowProvider>
      <Editor {...props} />
    </ReactFlowProvider>
  );
}

function Editor({ api, graphId, graphName, canEdit, gatewayUrl, keysUrl }) {
  const readOnly = !canEdit;
  const flow = useReactFlow();
  const canvas = useRef(null);
  const [doc, dispatch] = useReducer(documentReducer, undefined, () => documentInit());
  const docRef = useRef(doc);
  docRef.current = doc;
  const { ops, models, catalogue, loading, error: catalogueError } = useCatalogue(api);
  const { versions, error: versionsError, refresh: refreshVersions } = useVersions(api, graphId);
  const [ready, setReady] = useState(false);
  const [loaded, setLoaded] = useState({ number: null, text: null });  // the saved version on the canvas
  const [busy, setBusy] = useState(false);
  const [dialog, setDialog] = useState(null);
  const [saveError, setSaveError] = useState(null);
  const [notice, setNotice] = useState(null);
  const [tab, setTab] = useState("node");
  const clipboard = useRef({ content: null, pastes: 0 });
  const gateway = useMemo(() => createGateway(gatewayUrl), [gatewayUrl]);

  // Structure only (no positions): dragging a node does not re-run the validator.
  const structureKey = useMemo(() => JSON.stringify(flowToSpec(doc.nodes, doc.edges, { positions: false })),
    [doc.nodes, doc.edges]);
  const currentText = useMemo(() => specText(doc.nodes, doc.edges), [doc.nodes, doc.edges]);
  const dirty = ready && currentText !== loaded.text;

  const validation = useValidation(api, ready ? structureKey : null, () => ({
    spec: flowToSpec(docRef.current.nodes, docRef.current.edges),
    edgeIds: docRef.current.edges.map((e) => e.id),
  }));
  // Keyed on the structure, not on `doc.nodes`: a drag moves nodes on every frame, and the
  // ports and types (which every node reads from the context) must not change with it.
  const ports = useMemo(() => portsByNode(doc.nodes, doc.edges, catalogue), [structureKey, catalogue]);
  const types = useMemo(() => mergedPortTypes(doc.nodes, catalogue, validation.result?.ports),
    [structureKey, catalogue, validation.result]);
  const accepts = useMemo(() => portAccepts(doc.nodes, catalogue), [structureKey, catalogue]);
  const rules = useRef(null);
  rules.current = { types, accepts };
  const issues = useMemo(() => (validation.result ? mapIssues(validation.result.errors, validation.result.edgeIds) : NO_ISSUES),
    [validation.result]);

  // The graph's deployments and the chosen one's live status: pushed over the websocket,
  // polled over REST while it is down.
  const { deployments, error: deploymentsError, apply: applyDeployment, add: addDeployment } = useDeployments(api, versions);
  const [chosenDeployment, setChosenDeployment] = useState(null);
  const deployment = deployments?.find((d) => d.id === chosenDeployment) ?? deployments?.[0] ?? null;
  const deploymentId = deployment?.id ?? null;
  const refreshNodes = useRef(NOOP);
  const onDeploymentEvent = useCallback((event) => {
    applyDeployment(event);
    if (event?.id === deploymentId) refreshNodes.current();
  }, [applyDeployment, deploymentId]);
  const liveMode = useDeploymentEvents(onDeploymentEvent, { enabled: deploymentId !== null });
  const nodeStatus = useNodeStatus(api, deploymentId, { mode: liveMode, onDeployment: applyDeployment });
  refreshNodes.current = nodeStatus.refresh;
  const nodesAnswer = nodeStatus.answer;
  const nodeKinds = useMemo(() => doc.nodes.map((n) => ({ id: n.id, type: n.type })), [structureKey]);
  const live = useMemo(() => (!deployment ? null : nodesAnswer ? nodeStatuses(nodesAnswer)
    : statusesFromDeployment(deployment, nodeKinds)), [deployment?.state, deploymentId, nodesAnswer, nodeKinds]);

  const context = useMemo(() => ({ ports, types, issues, catalogue, readOnly, diff: null, live }),
    [ports, types, issues, catalogue, readOnly, live]);

  // A version diff draws on the same canvas from its own read-only nodes; the document, its
  // undo history and (once restored on close) the viewport stay as they were.
  const versionDiff = useVersionDiff(api, graphId);
  const diffView = versionDiff.view;
  const diffing = diffView !== null;
  const diffContext = useMemo(() => diffView && {
    ports: portsByNode(diffView.drawn, diffView.edges, catalogue),
    types: mergedPortTypes(diffView.drawn, catalogue, diffView.ports),
    issues: NO_ISSUES, catalogue, readOnly: true, diff: diffView.marks, live: null,
  }, [diffView?.drawn, diffView?.edges, diffView?.ports, diffView?.marks, catalogue]);
  const editorViewport = useRef(null);
  const updateNodeInternals = useUpdateNodeInternals();

  const say = useCallback((tone, text) => setNotice({ tone, text, at: Date.now() }), []);
  useEffect(() => {
    if (!notice) return undefined;
    const timer = setTimeout(() => setNotice(null), NOTICE_MS);
    return () => clearTimeout(timer);
  }, [notice]);

  const fitSoon = useCallback(() => setTimeout(() => flow.fitView(FIT), 80), [flow]);
  const edit = useCallback((change) => {
    if (!readOnly) dispatch({ type: "edit", edit: change });
  }, [readOnly]);

  /** Put a spec on the canvas: laid out if it has no positions (again once the nodes are
   * measured); undoable unless `reset`. */
  const relayout = useRef(false);
  const place = useCallback((spec, { reset }) => {
    const { nodes, edges, positioned, dropped } = specToFlow(spec);
    const placed = positioned ? nodes : autoLayout(nodes, edges);
    relayout.current = !positioned;
    dispatch({ type: reset ? "reset" : "load", nodes: placed, edges });
    if (dropped) say("error", `${dropped} edge${dropped === 1 ? "" : "s"} without a node.port end left out.`);
    fitSoon();
    return specText(placed, edges);
  }, [fitSoon, say]);

  useEffect(() => {
    if (!relayout.current || !doc.nodes.length || !doc.nodes.every((n) => n.measured?.width)) return;
    relayout.current = false;
    const before = specText(doc.nodes, doc.edges);
    const nodes = autoLayout(doc.nodes, doc.edges);
    const after = specText(nodes, doc.edges);
    dispatch({ type: "amend", nodes, edges: doc.edges });
    setLoaded((current) => (current.text === before ? { ...current, text: after } : current));
    fitSoon();
  }, [doc.nodes, doc.edges, fitSoon]);

  const loadVersion = useCallback(async (number, { reset = false } = {}) => {
    setBusy(true);
    try {
      const version = await api.version(graphId, number);
      setLoaded({ number, text: place(version.spec, { reset }) });
      if (!reset) say("ok", `Loaded version ${number}${readOnly ? "" : " (undo brings back what was here)"}.`);
    } catch (error) {
      say("error", `Version ${number} did not load: ${error.message}`);
    } finally {
      setBusy(false);
      setReady(true);
    }
  }, [api, graphId, place, readOnly, say]);

  // The newest version, or a starter graph when none is saved yet.
  useEffect(() => {
    if (ready || busy || versions === null) return;
    if (versions.length) loadVersion(versions[0].number, { reset: true });
    else {
      place(STARTER_SPEC, { reset: true });
      setReady(true);
    }
  }, [ready, busy, versions, loadVersion, place]);

  const addFromPalette = useCallback((payload, at) => {
    let position = at;
    if (!position) {
      const box = canvas.current.getBoundingClientRect();
      const centre = flow.screenToFlowPosition({ x: box.left + box.width / 2, y: box.top + box.height / 2 });
      position = { x: centre.x - 110, y: centre.y - 50 };
    }
    edit((d) => addNode(d, nodeFromPalette(payload, { position, taken: new Set(d.nodes.map((n) => n.id)), catalogue })));
    setTab("node");
  }, [catalogue, edit, flow]);

  const onDrop = useCallback((event) => {
    event.preventDefault();
    const raw = event.dataTransfer.getData(PALETTE_MIME);
    if (!raw || readOnly || diffing) return;
    addFromPalette(JSON.parse(raw), flow.screenToFlowPosition({ x: event.clientX, y: event.clientY }));
  }, [addFromPalette, diffing, flow, readOnly]);

  const problemOf = useCallback((fromHandle, toHandle) => {
    const ends = connectionEnds(fromHandle, toHandle);
    if (!ends || ends.sameSide) return "Connect an output port (right) to an input port (left).";
    return connectionProblem(ends, { edges: docRef.current.edges, ...rules.current }) ?? "Not allowed here.";
  }, []);
  const isValidConnection = useCallback((connection) => connectionProblem(connection,
    { edges: docRef.current.edges, ...rules.current }) === null, []);
  const onConnectEnd = useCallback((event, state) => {
    if (state.isValid === false && state.toHandle) say("error", `Refused: ${problemOf(state.fromHandle, state.toHandle)}`);
  }, [problemOf, say]);

  async function save(message) {
    const { nodes, edges } = docRef.current;
    setBusy(true);
    setSaveError(null);
    try {
      const version = await api.saveVersion(graphId, flowToSpec(nodes, edges), message);
      setLoaded({ number: version.number, text: specText(nodes, edges) });
      setDialog(null);
      say("ok", `Saved version ${version.number}.`);
      refreshVersions();
    } catch (error) {
      if (error.code === "invalid_graph" && error.errors.length) {
        validation.showIssues(error.errors, edges.map((e) => e.id));
        setDialog(null);
        setTab("problems");
        say("error", `Not saved: ${error.message}`);
      } else {
        setSaveError(error.message);
      }
    } finally {
      setBusy(false);
    }
  }

  async function openDiff(from, to) {
    if (!diffing) editorViewport.current = flow.getViewport();
    try {
      await versionDiff.open(from, to);
      setNotice(null);
      setTimeout(() => flow.fitView({ ...FIT, padding: 0.12 }), 80);
    } catch (error) {
      say("error", `The diff did not load: ${error.message}`);
    }
  }

  function closeDiff() {
    versionDiff.close();
    if (editorViewport.current) flow.setViewport(editorViewport.current);
    editorViewport.current = null;
    // Nodes the diff drew under the same ids had other ports and sizes: measure the handles again.
    setTimeout(() => updateNodeInternals(docRef.current.nodes.map((n) => n.id)), 0);
  }

  function importSpec(text) {
    place(specFromJson(text), { reset: false });
    say("ok", "Imported the spec (undo brings back what was here).");
  }

  const actions = {
    undo: () => dispatch({ type: "undo" }),
    redo: () => dispatch({ type: "redo" }),
    copy: () => {
      clipboard.current = { content: copySelection(docRef.current.nodes, docRef.current.edges), pastes: 0 };
      say("ok", `Copied ${clipboard.current.content.nodes.length} node(s).`);
    },
    cut: () => {
      actions.copy();
      edit(deleteSelection);
    },
    paste: () => {
      const { content } = clipboard.current;
      if (!content?.nodes.length) return say("error", "Nothing copied yet: select nodes and press Ctrl+C.");
      const times = ++clipboard.current.pastes;
      edit((d) => pasteClipboard(content, d, times));
    },
    delete: () => edit(deleteSelection),
    selectAll: () => dispatch({ type: "edit", edit: selectAll }),
    layout: () => {
      edit((d) => ({ nodes: autoLayout(d.nodes, d.edges), edges: d.edges }));
      fitSoon();
    },
    fit: () => flow.fitView(FIT),
    json: () => setDialog("json"),
    help: () => setDialog((open) => (open === "help" ? null : "help")),
    save: () => {
      setSaveError(null);
      setDialog("save");
    },
    deploy: () => (versions?.length ? setDialog("deploy")
      : say("error", "Save a version first: a deployment serves a saved version.")),
    tryIt: () => setTab("tryit"),
    escape: () => (dialog ? setDialog(null) : diffing ? closeDiff() : dispatch({ type: "edit",
      edit: (d) => ({ nodes: d.nodes.map((n) => ({ ...n, selected: false })), edges: d.edges.map((e) => ({ ...e, selected: false })) }) })),
  };
  const allowed = diffing ? ["fit", "help", "escape"]
    : readOnly ? ["selectAll", "fit", "json", "help", "escape", "tryIt"] : Object.keys(actions);
  useShortcuts(Object.fromEntries(allowed.filter((name) => !dialog || name === "escape" || name === "help")
    .map((name) => [name, actions[name]])));

  const displayEdges = useMemo(() => doc.edges.map((edge) => {
    const edgeIssues = issues.byEdge[edge.id];
    if (edgeIssues) {
      return { ...edge, className: "gedge-error", label: shorten(edgeIssues[0].message), labelShowBg: true,
        labelStyle: { fill: "#991b1b", fontSize: 11, fontWeight: 600 }, labelBgStyle: { fill: "#fef2f2" },
        style: { stroke: "#dc2626", strokeWidth: 2.5, strokeDasharray: "6 4" } };
    }
    const type = types[`${edge.source}.${edge.sourceHandle}`];
    return { ...edge, style: { stroke: type ? dtypeColour(type.datatype) : "#94a3b8", strokeWidth: 2 } };
  }), [doc.edges, issues, types]);

  const problemCount = validation.result?.errors.length ?? 0;
  const status = !ready ? { state: "loading", text: "Loading…" }
    : validation.failure ? { state: "unreachable", text: "Validator unreachable" }
      : validation.pending || !validation.result ? { state: "checking", text: "Checking…" }
        : problemCount ? { state: "invalid", text: `${problemCount} problem${problemCount === 1 ? "" : "s"}` }
          : { state: "valid", text: "✓ Valid" };

  return (
    <EditorContext.Provider value={diffContext ?? context}>
      <div className={`geditor${readOnly ? " read-only" : ""}`} data-editor-ready={ready ? "true" : "false"}>
        <Toolbar readOnly={readOnly} diffing={diffing} canUndo={canUndo(doc.history)} canRedo={canRedo(doc.history)} dirty={dirty}
          status={status} actions={actions} deployment={deployment} />
        {readOnly && (
          <p className="gbanner" data-read-only>Read-only: your role in this tenant is member. You can inspect the graph,
            its versions and its spec; owners and admins edit it.</p>
        )}
        <div className={`gbody${diffing ? " diffing" : tab === "tryit" ? " wide-side" : ""}`}>
          {!diffing && <Palette ops={ops} models={models} loading={loading} error={catalogueError} readOnly={readOnly}
            onAdd={addFromPalette} />}
          <div className="gcanvas" ref={canvas} onDragOver={(event) => { event.preventDefault(); event.dataTransfer.dropEffect = "move"; }}
            onDrop={onDrop}>
            <ReactFlow nodes={diffing ? diffView.nodes : doc.nodes} edges={diffing ? diffView.edges : displayEdges}
              nodeTypes={nodeTypes}
              onNodesChange={diffing ? versionDiff.onNodesChange : (changes) => dispatch({ type: "nodesChanged", changes })}
              onEdgesChange={diffing ? NOOP : (changes) => dispatch({ type: "edgesChanged", changes })}
              onConnect={diffing ? NOOP : (connection) => edit((d) => connect(d, connection))}
              isValidConnection={isValidConnection} onConnectEnd={onConnectEnd}
              onNodeDragStop={() => dispatch({ type: "commit" })} onSelectionDragStop={() => dispatch({ type: "commit" })}
              nodesDraggable={!readOnly && !diffing} nodesConnectable={!readOnly && !diffing} elementsSelectable
              deleteKeyCode={null} selectionKeyCode="Shift" multiSelectionKeyCode={["Meta", "Control"]}
              minZoom={0.2} maxZoom={2} fitView fitViewOptions={FIT}>
              <Background gap={18} />
              <Controls showInteractive={false} />
              <MiniMap pannable zoomable nodeColor={(node) => (diffing ? DIFF_COLOURS[diffView.marks[node.id]?.status]
                : KIND_COLOURS[node.type]) ?? "#94a3b8"} />
              <ConnectionHint problemOf={problemOf} />
            </ReactFlow>
            {diffing && (
              <div className="gdiff-banner" data-diff-banner>
                <span className="gdiff-banner-title">Comparing v{diffView.from} → v{diffView.to}</span>
                <span className="gdiff-banner-summary" data-diff-summary>{diffView.summary}</span>
                <button type="button" className="small primary" data-action="close-diff" onClick={closeDiff}>Close diff</button>
              </div>
            )}
            {notice && <div className={`gnotice ${notice.tone}`} role="status" data-notice={notice.tone}>{notice.text}</div>}
          </div>
          <aside className="gside">
            {diffing ? (
              <div className="gtab-body">
                <DiffPanel view={diffView} onClose={closeDiff}
                  onFocusNode={(id) => flow.fitView({ nodes: [{ id }], padding: 0.6, maxZoom: 1.2, duration: 200 })} />
              </div>
            ) : (
              <>
                <div className="gtabs" role="tablist">
                  {[["node", "Node"], ["problems", `Problems${problemCount ? ` (${problemCount})` : ""}`],
                    ["versions", `Versions${versions?.length ? ` (${versions.length})` : ""}`], ["tryit", "Try it"],
                  ].map(([key, label]) => (
                    <button key={key} type="button" role="tab" aria-selected={tab === key} data-tab={key}
                      className={tab === key ? "active" : undefined} onClick={() => setTab(key)}>{label}</button>
                  ))}
                </div>
                <div className="gtab-body">
                  {tab === "node" && <Inspector doc={doc} models={models} edit={edit} />}
                  {tab === "problems" && <ProblemsPanel validation={validation} onFocusNode={(id) => {
                    dispatch({ type: "edit", edit: (d) => ({ nodes: d.nodes.map((n) => ({ ...n, selected: n.id === id })), edges: d.edges }) });
                    flow.fitView({ nodes: [{ id }], padding: 0.6, duration: 200 });
                    setTab("node");
                  }} />}
                  {tab === "versions" && <VersionsPanel versions={versions} error={versionsError} loadedNumber={loaded.number}
                    busy={busy || versionDiff.busy} onLoad={(number) => loadVersion(number)} onCompare={openDiff} />}
                  {tab === "tryit" && (
                    <>
                      <DeploymentPanel deployments={deployments} error={deploymentsError} selected={deployment}
                        onSelect={setChosenDeployment} nodes={nodesAnswer} nodesFailure={nodeStatus.failure} mode={liveMode}
                        canDeploy={!readOnly} onDeploy={actions.deploy} loadedNumber={loaded.number} />
                      {deployment && <TryItPanel api={api} gateway={gateway} graphId={graphId} deployment={deployment}
                        keysUrl={keysUrl} onCalled={nodeStatus.show} />}
                    </>
                  )}
                </div>
              </>
            )}
          </aside>
        </div>
        {dialog === "help" && <HelpDialog onClose={() => setDialog(null)} />}
        {dialog === "save" && <SaveDialog onClose={() => setDialog(null)} onSave={save} saving={busy} error={saveError}
          valid={!problemCount} />}
        {dialog === "deploy" && <DeployDialog api={api} versions={versions ?? []} defaultNumber={loaded.number ?? versions?.[0]?.number}
          graphName={graphName} dirty={dirty} onClose={() => setDialog(null)} onDeployed={(created) => {
            addDeployment(created);
            setChosenDeployment(created.id);
            setDialog(null);
            setTab("tryit");
            say("ok", `Deploying ${created.name} (v${created.graph_version_number}).`);
          }} />}
        {dialog === "json" && <JsonDialog onClose={() => setDialog(null)} json={currentText} readOnly={readOnly}
          fileName={`${graphName || `graph-${graphId}`}.json`} onImport={importSpec} />}
      </div>
    </EditorContext.Provider>
  );
}

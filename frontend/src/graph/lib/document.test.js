import { describe, expect, it } from "vitest";
import { copySelection, pasteClipboard } from "./clipboard.js";
import {
  addNode, connect, deleteSelection, documentInit, documentReducer, renameNode, renameTargetPort, snapshot,
} from "./document.js";
import { freeNodeId, nodeIdProblem } from "./ids.js";
import { NEW_OUTPUT } from "./ports.js";

const node = (id, type = "op", data = { op: "cast", params: {} }) => ({ id, type, position: { x: 0, y: 0 }, data });

function run(state, ...actions) {
  return actions.reduce(documentReducer, state);
}

describe("the document", () => {
  it("undoes and redoes committed edits, not selection or dragging in between", () => {
    let state = documentInit({ nodes: [node("in", "input", { tensors: [] })], edges: [] });
    state = run(state, { type: "edit", edit: (doc) => addNode(doc, node("prep")) });
    state = run(state,
      { type: "nodesChanged", changes: [{ id: "prep", type: "position", position: { x: 300, y: 10 }, dragging: true }] },
      { type: "nodesChanged", changes: [{ id: "prep", type: "select", selected: false }] },
      { type: "commit" });
    expect(state.history.past).toHaveLength(2);
    state = run(state, { type: "undo" });
    expect(state.nodes.find((n) => n.id === "prep").position).toEqual({ x: 0, y: 0 });
    state = run(state, { type: "undo" });
    expect(state.nodes.map((n) => n.id)).toEqual(["in"]);
    state = run(state, { type: "redo" }, { type: "redo" });
    expect(state.nodes.find((n) => n.id === "prep").position).toEqual({ x: 300, y: 10 });
    expect(run(state, { type: "redo" })).toBe(state);
  });

  it("makes loading a version undoable and a reset not", () => {
    let state = documentInit({ nodes: [node("a")], edges: [] });
    state = run(state, { type: "load", nodes: [node("b")], edges: [] });
    expect(run(state, { type: "undo" }).nodes.map((n) => n.id)).toEqual(["a"]);
    state = run(state, { type: "reset", nodes: [node("c")], edges: [] });
    expect(run(state, { type: "undo" }).nodes.map((n) => n.id)).toEqual(["c"]);
  });

  it("amends the last step without adding one", () => {
    let state = run(documentInit({ nodes: [node("a")], edges: [] }), { type: "load", nodes: [node("b")], edges: [] });
    const moved = [{ ...node("b"), position: { x: 50, y: 60 } }];
    state = run(state, { type: "amend", nodes: moved, edges: [] });
    expect(state.history.past).toHaveLength(1);
    expect(run(state, { type: "undo" }, { type: "redo" }).nodes[0].position).toEqual({ x: 50, y: 60 });
  });

  it("names a new graph output after the port dropped on the output node", () => {
    let doc = { nodes: [node("clf", "model"), node("out", "output", {})], edges: [] };
    doc = connect(doc, { source: "clf", sourceHandle: "label", target: "out", targetHandle: NEW_OUTPUT });
    doc = connect(doc, { source: "clf", sourceHandle: "label", target: "out", targetHandle: NEW_OUTPUT });
    expect(doc.edges.map((e) => e.targetHandle)).toEqual(["label", "label_2"]);
    doc = renameTargetPort(doc, "out", "label_2", "score");
    expect(doc.edges.map((e) => e.targetHandle)).toEqual(["label", "score"]);
  });

  it("deletes the selection and the edges of deleted nodes", () => {
    const doc = {
      nodes: [node("a"), { ...node("b"), selected: true }, node("c")],
      edges: [
        { id: "1", source: "a", sourceHandle: "y", target: "b", targetHandle: "x" },
        { id: "2", source: "a", sourceHandle: "y", target: "c", targetHandle: "x", selected: true },
        { id: "3", source: "c", sourceHandle: "y", target: "a", targetHandle: "z" },
      ],
    };
    const after = deleteSelection(doc);
    expect(after.nodes.map((n) => n.id)).toEqual(["a", "c"]);
    expect(after.edges.map((e) => e.id)).toEqual(["3"]);
    expect(deleteSelection({ nodes: [node("a")], edges: [] })).toBeNull();
  });

  it("carries a node's new id into its edges", () => {
    const doc = renameNode({
      nodes: [node("a"), node("b")],
      edges: [{ id: "a.y->b.x", source: "a", sourceHandle: "y", target: "b", targetHandle: "x" }],
    }, "a", "prep");
    expect(doc.nodes.map((n) => n.id)).toEqual(["prep", "b"]);
    expect(doc.edges[0]).toMatchObject({ id: "prep.y->b.x", source: "prep" });
  });

  it("snapshots structure only", () => {
    const shot = snapshot({ nodes: [{ ...node("a"), selected: true, measured: { width: 1, height: 2 } }], edges: [] });
    expect(shot.nodes[0]).toEqual({ id: "a", type: "op", position: { x: 0, y: 0 }, data: { op: "cast", params: {} } });
  });
});

describe("copy and paste", () => {
  it("pastes the selected nodes and the edges between them under free ids, selected", () => {
    const doc = {
      nodes: [{ ...node("a"), selected: true }, { ...node("b"), selected: true }, node("c")],
      edges: [
        { id: "e1", source: "a", sourceHandle: "y", target: "b", targetHandle: "x" },
        { id: "e2", source: "b", sourceHandle: "y", target: "c", targetHandle: "x" },
      ],
    };
    const clip = copySelection(doc.nodes, doc.edges);
    expect(clip.edges).toHaveLength(1);
    const pasted = pasteClipboard(clip, doc);
    expect(pasted.nodes.map((n) => [n.id, Boolean(n.selected)])).toEqual([
      ["a", false], ["b", false], ["c", false], ["a-2", true], ["b-2", true]]);
    expect(pasted.nodes[3].position).toEqual({ x: 40, y: 40 });
    expect(pasted.edges[2]).toMatchObject({ source: "a-2", target: "b-2" });
    pasted.nodes[3].data.params.to = "FP16";
    expect(doc.nodes[0].data.params.to).toBeUndefined();
  });
});

describe("node ids", () => {
  it("makes a valid, free id from any name", () => {
    expect(freeNodeId("cast", ["cast", "cast-2"])).toBe("cast-3");
    expect(freeNodeId("2 digits model!", [])).toBe("n2-digits-model");
    expect(freeNodeId("", [])).toBe("node");
  });

  it("says why an id is refused", () => {
    expect(nodeIdProblem("9x", new Set())).toMatch(/starting with a letter/);
    expect(nodeIdProblem("a", new Set(["a"]))).toMatch(/Another node/);
    expect(nodeIdProblem("ok_id-2", new Set())).toBeNull();
  });
});

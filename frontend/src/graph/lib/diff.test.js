import { describe, expect, it } from "vitest";
import { diffCanvas, diffSummary, formatValue, hasChanges, nodeChanges, specDiff } from "./diff.js";

const OLDER = {
  nodes: [
    { id: "in", kind: "input", tensors: [{ name: "image", datatype: "UINT8", shape: [-1, 8, 8] }], position: { x: 0, y: 40 } },
    { id: "prep", kind: "op", op: "cast", params: { to: "FP32" }, position: { x: 260, y: 40 } },
    { id: "clf", kind: "model", model_version: 12, position: { x: 520, y: 40 } },
    { id: "gate", kind: "switch", params: { op: "lt", value: 0.9, reduce: "any" }, position: { x: 780, y: 40 } },
    { id: "out", kind: "output", position: { x: 1040, y: 40 } },
  ],
  edges: [
    { from: "in.image", to: "prep.x" },
    { from: "prep.y", to: "clf.X" },
    { from: "clf.label", to: "out.label" },
  ],
};

const clone = (value) => JSON.parse(JSON.stringify(value));
const NO_CHANGE = { nodes: { added: [], removed: [], changed: [] }, edges: { added: [], removed: [] } };

describe("specDiff", () => {
  it("finds no change between identical specs", () => {
    const diff = specDiff(OLDER, clone(OLDER));
    expect(diff).toMatchObject(NO_CHANGE);
    expect(diff.nodes.unchanged).toEqual(["in", "prep", "clf", "gate", "out"]);
    expect(hasChanges(diff)).toBe(false);
    expect(diffSummary(diff)).toBe("No changes");
  });

  it("does not count a node that only moved", () => {
    const newer = clone(OLDER);
    newer.nodes[2].position = { x: 999, y: -300 };
    delete newer.nodes[3].position;
    expect(specDiff(OLDER, newer)).toMatchObject(NO_CHANGE);
  });

  it("does not count reordered params or nodes", () => {
    const newer = clone(OLDER);
    newer.nodes[3].params = { reduce: "any", value: 0.9, op: "lt" };
    newer.nodes.reverse();
    expect(specDiff(OLDER, newer)).toMatchObject(NO_CHANGE);
  });

  it("finds added and removed nodes, in their spec's order", () => {
    const newer = clone(OLDER);
    newer.nodes = newer.nodes.filter((n) => n.id !== "gate");
    newer.nodes.push({ id: "top", kind: "op", op: "topk", params: { k: 1 } }, { id: "soft", kind: "op", op: "softmax" });
    const { nodes } = specDiff(OLDER, newer);
    expect(nodes.added).toEqual(["top", "soft"]);
    expect(nodes.removed).toEqual(["gate"]);
    expect(nodes.changed).toEqual([]);
  });

  it.each([
    ["a param", (s) => { s.nodes[3].params.value = 0.8; }, "gate", ["params.value: 0.9 → 0.8"]],
    ["a param added and one dropped", (s) => { s.nodes[1].params = { dtype: "FP16" }; }, "prep",
      ["params.to: FP32 → (none)", "params.dtype: (none) → FP16"]],
    ["the op", (s) => { s.nodes[1].op = "scale"; }, "prep", ["op: cast → scale"]],
    ["the model version", (s) => { s.nodes[2].model_version = 13; }, "clf", ["model_version: 12 → 13"]],
    ["the kind", (s) => { s.nodes[1].kind = "switch"; }, "prep", ["kind: op → switch"]],
    ["a tensor's shape", (s) => { s.nodes[0].tensors[0].shape = [-1, 64]; }, "in", ["tensors[0].shape: [-1,8,8] → [-1,64]"]],
    ["a new tensor", (s) => { s.nodes[0].tensors.push({ name: "mask", datatype: "BOOL", shape: [-1] }); }, "in",
      ['tensors[1]: (none) → {"name":"mask","datatype":"BOOL","shape":[-1]}']],
  ])("lists what changed in a node: %s", (_, change, id, texts) => {
    const newer = clone(OLDER);
    change(newer);
    const diff = specDiff(OLDER, newer);
    expect(diff.nodes.changed.map((c) => c.id)).toEqual([id]);
    expect(diff.nodes.changed[0].changes.map((c) => c.text)).toEqual(texts);
    expect(diff.nodes.unchanged).not.toContain(id);
  });

  it("keeps the values of a change, not just its text", () => {
    const newer = clone(OLDER);
    newer.nodes[3].params.value = 0.8;
    newer.nodes[3].position = { x: 1, y: 1 };
    expect(specDiff(OLDER, newer).nodes.changed[0].changes).toEqual([
      { path: "params.value", before: 0.9, after: 0.8, text: "params.value: 0.9 → 0.8" }]);
  });

  it("compares edges by their from/to pair, counting duplicates", () => {
    const newer = clone(OLDER);
    newer.edges = [
      { from: "clf.label", to: "out.label" },
      { from: "in.image", to: "prep.x" },
      { from: "clf.probabilities", to: "out.scores" },
      { from: "clf.probabilities", to: "out.scores" },
    ];
    const { edges } = specDiff({ ...OLDER, edges: [...OLDER.edges, { from: "clf.probabilities", to: "out.scores" }] }, newer);
    expect(edges.added).toEqual([{ from: "clf.probabilities", to: "out.scores" }]);
    expect(edges.removed).toEqual([{ from: "prep.y", to: "clf.X" }]);
  });

  it("treats missing lists as empty", () => {
    const diff = specDiff({}, { nodes: [{ id: "in", kind: "input", tensors: [] }] });
    expect(diff.nodes.added).toEqual(["in"]);
    expect(diff.edges).toEqual({ added: [], removed: [] });
  });
});

describe("diffSummary", () => {
  it("counts nodes and edges, naming the noun once", () => {
    const newer = clone(OLDER);
    newer.nodes[3].params.value = 0.8;
    newer.nodes = newer.nodes.filter((n) => n.id !== "prep");
    newer.nodes.push({ id: "a", kind: "op", op: "softmax" }, { id: "b", kind: "op", op: "argmax" });
    newer.edges = [{ from: "in.image", to: "a.x" }, { from: "a.y", to: "clf.X" }, { from: "clf.label", to: "out.label" },
      { from: "clf.probabilities", to: "b.x" }];
    expect(diffSummary(specDiff(OLDER, newer))).toBe("2 nodes added, 1 changed, 1 removed; 3 edges added, 2 removed");
  });

  it("says 1 node and 1 edge in the singular", () => {
    const newer = clone(OLDER);
    newer.nodes.push({ id: "a", kind: "op", op: "softmax" });
    newer.edges.push({ from: "clf.probabilities", to: "a.x" });
    expect(diffSummary(specDiff(OLDER, newer))).toBe("1 node added, 0 changed, 0 removed; 1 edge added, 0 removed");
  });
});

describe("nodeChanges and formatValue", () => {
  it("ignores the id and the position", () => {
    expect(nodeChanges({ id: "a", kind: "op", position: { x: 0, y: 0 } }, { id: "b", kind: "op", position: { x: 5, y: 5 } }))
      .toEqual([]);
  });

  it("prints strings bare, the rest as JSON, and absence as (none)", () => {
    expect([formatValue("FP32"), formatValue(0.5), formatValue([1, "n"]), formatValue(null), formatValue(undefined)])
      .toEqual(["FP32", "0.5", '[1,"n"]', "null", "(none)"]);
  });
});

describe("diffCanvas", () => {
  const newer = clone(OLDER);
  newer.nodes[3].params.value = 0.8;
  newer.nodes = newer.nodes.filter((n) => n.id !== "prep");
  newer.nodes.push({ id: "soft", kind: "op", op: "softmax", position: { x: 520, y: 240 } });
  newer.edges = [{ from: "in.image", to: "clf.X" }, { from: "clf.label", to: "out.label" }, { from: "clf.probabilities", to: "soft.x" }];

  it("draws the newer nodes, then the removed ones where the older version had them, each marked", () => {
    const { nodes, marks } = diffCanvas(OLDER, newer);
    expect(nodes.map((n) => [n.id, n.className])).toEqual([
      ["in", "gdiff-same"], ["clf", "gdiff-same"], ["gate", "gdiff-changed"], ["out", "gdiff-same"], ["soft", "gdiff-added"],
      ["prep", "gdiff-removed"]]);
    expect(nodes.find((n) => n.id === "prep")).toMatchObject({ type: "op", position: { x: 260, y: 40 }, data: { op: "cast" } });
    expect(nodes.find((n) => n.id === "gate").data.params.value).toBe(0.8);
    expect(nodes.every((n) => n.draggable === false && n.connectable === false)).toBe(true);
    expect(marks.gate).toEqual({ status: "changed", changes: [expect.objectContaining({ text: "params.value: 0.9 → 0.8" })] });
    expect(marks.prep.status).toBe("removed");
  });

  it("draws the newer edges, added ones marked, then the removed ones with their own ids", () => {
    const { edges } = diffCanvas(OLDER, newer);
    expect(edges.map((e) => [`${e.source}.${e.sourceHandle}->${e.target}.${e.targetHandle}`, e.className])).toEqual([
      ["in.image->clf.X", "gdiff-edge-added"], ["clf.label->out.label", "gdiff-edge-same"],
      ["clf.probabilities->soft.x", "gdiff-edge-added"],
      ["in.image->prep.x", "gdiff-edge-removed"], ["prep.y->clf.X", "gdiff-edge-removed"]]);
    expect(new Set(edges.map((e) => e.id)).size).toBe(edges.length);
    expect(edges[3].style.strokeDasharray).toBeTruthy();
  });

  it("lays out a version saved without positions", () => {
    const bare = { nodes: OLDER.nodes.map(({ position, ...rest }) => rest), edges: OLDER.edges };
    const { nodes } = diffCanvas(bare, bare);
    const x = Object.fromEntries(nodes.map((n) => [n.id, n.position.x]));
    expect(x.in < x.prep && x.prep < x.clf && x.clf < x.out).toBe(true);
  });
});

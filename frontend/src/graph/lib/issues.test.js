import { describe, expect, it } from "vitest";
import { mapIssues } from "./issues.js";

describe("mapIssues", () => {
  const edgeIds = ["in.image->prep.x", "prep.y->clf.X"];

  it("puts each issue on the node, port and edge it names", () => {
    const issues = [
      { code: "unknown_op", message: "prep: no op 'cst'", node: "prep", port: null, edge: null },
      { code: "dtype_mismatch", message: "edge 1: FP32 vs UINT8", node: "clf", port: "X", edge: 1 },
      { code: "unconnected_input", message: "clf.Y is not connected", node: null, port: "clf.Y", edge: null },
      { code: "invalid_spec", message: "no output node", node: null, port: null, edge: null },
    ];
    const mapped = mapIssues(issues, edgeIds);
    expect(mapped.byNode.prep.map((i) => i.code)).toEqual(["unknown_op"]);
    expect(mapped.byNode.clf.map((i) => i.code)).toEqual(["dtype_mismatch", "unconnected_input"]);
    expect(Object.keys(mapped.byPort)).toEqual(["clf.X", "clf.Y"]);
    expect(mapped.byEdge).toEqual({ "prep.y->clf.X": [issues[1]] });
    expect(mapped.graph).toEqual([issues[3]]);
  });

  it("keeps an issue whose edge index is out of range at graph level", () => {
    const mapped = mapIssues([{ code: "x", message: "m", edge: 7 }], edgeIds);
    expect(mapped.byEdge).toEqual({});
    expect(mapped.graph).toHaveLength(1);
  });

  it("accepts a port given as node.port next to its node", () => {
    const mapped = mapIssues([{ code: "x", message: "m", node: "clf", port: "clf.X" }], edgeIds);
    expect(Object.keys(mapped.byPort)).toEqual(["clf.X"]);
  });
});

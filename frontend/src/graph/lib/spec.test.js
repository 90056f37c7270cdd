import { describe, expect, it } from "vitest";
import { flowToSpec, specFromJson, specToFlow, splitPort } from "./spec.js";

const SPEC = {
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

describe("spec <-> flow", () => {
  it("round-trips a spec unchanged", () => {
    const { nodes, edges, positioned } = specToFlow(SPEC);
    expect(positioned).toBe(true);
    expect(flowToSpec(nodes, edges)).toEqual(SPEC);
  });

  it("makes one node per spec node, typed by kind, with the rest as its data", () => {
    const { nodes, edges } = specToFlow(SPEC);
    expect(nodes.map((n) => [n.id, n.type])).toEqual([
      ["in", "input"], ["prep", "op"], ["clf", "model"], ["gate", "switch"], ["out", "output"]]);
    expect(nodes[1].data).toEqual({ op: "cast", params: { to: "FP32" } });
    expect(edges[1]).toMatchObject({ source: "prep", sourceHandle: "y", target: "clf", targetHandle: "X" });
  });

  it("keeps edge order, so the validator's edge indexes point at the right edge", () => {
    const { nodes, edges } = specToFlow(SPEC);
    expect(flowToSpec(nodes, edges).edges).toEqual(SPEC.edges);
    expect(new Set(edges.map((e) => e.id)).size).toBe(edges.length);
  });

  it("gives duplicate edges distinct ids", () => {
    const { edges } = specToFlow({ nodes: [], edges: [{ from: "a.y", to: "b.x" }, { from: "a.y", to: "b.x" }] });
    expect(edges[0].id).not.toEqual(edges[1].id);
  });

  it("reports a spec without positions, and rounds positions when writing", () => {
    const { nodes, edges, positioned } = specToFlow({ nodes: [{ id: "in", kind: "input", tensors: [] }], edges: [] });
    expect(positioned).toBe(false);
    nodes[0].position = { x: 10.4, y: 19.6 };
    expect(flowToSpec(nodes, edges).nodes[0].position).toEqual({ x: 10, y: 20 });
    expect(flowToSpec(nodes, edges, { positions: false }).nodes[0]).toEqual({ id: "in", kind: "input", tensors: [] });
  });

  it("splits a port reference at the first dot only", () => {
    expect(splitPort("clf.output.1")).toEqual({ node: "clf", port: "output.1" });
    expect(splitPort("nodot")).toBeNull();
    expect(splitPort(".x")).toBeNull();
  });

  it("reads a spec, or a version carrying one, from JSON", () => {
    expect(specFromJson(JSON.stringify(SPEC)).nodes).toHaveLength(5);
    expect(specFromJson(JSON.stringify({ number: 2, spec: SPEC })).edges).toHaveLength(3);
    expect(() => specFromJson("{")).toThrow(/Not JSON/);
    expect(() => specFromJson("[1]")).toThrow(/Expected a spec/);
  });
});

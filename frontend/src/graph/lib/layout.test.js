import { describe, expect, it } from "vitest";
import { autoLayout } from "./layout.js";

const node = (id) => ({ id, type: "op", position: { x: 0, y: 0 }, data: {} });
const edge = (source, target) => ({ id: `${source}-${target}`, source, sourceHandle: "y", target, targetHandle: "x" });

describe("autoLayout", () => {
  it("puts a chain left to right, in order", () => {
    const nodes = ["out", "clf", "in", "prep"].map(node);
    const edges = [edge("in", "prep"), edge("prep", "clf"), edge("clf", "out")];
    const placed = Object.fromEntries(autoLayout(nodes, edges).map((n) => [n.id, n.position]));
    expect(placed.in.x).toBeLessThan(placed.prep.x);
    expect(placed.prep.x).toBeLessThan(placed.clf.x);
    expect(placed.clf.x).toBeLessThan(placed.out.x);
    expect(new Set(Object.values(placed).map((p) => p.y)).size).toBe(1);
  });

  it("keeps branches apart and nodes whole", () => {
    const nodes = ["in", "a", "b"].map(node);
    const laid = autoLayout(nodes, [edge("in", "a"), edge("in", "b")]);
    const [, a, b] = laid;
    expect(a.position.x).toEqual(b.position.x);
    expect(Math.abs(a.position.y - b.position.y)).toBeGreaterThanOrEqual(110);
    expect(laid[0].data).toBe(nodes[0].data);
  });

  it("uses measured sizes", () => {
    const wide = { ...node("a"), measured: { width: 600, height: 50 } };
    const [a, b] = autoLayout([wide, node("b")], [edge("a", "b")]);
    expect(b.position.x - a.position.x).toBeGreaterThanOrEqual(600);
  });
});

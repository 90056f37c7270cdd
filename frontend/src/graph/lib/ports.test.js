import { describe, expect, it } from "vitest";
import { formatType, mergedPortTypes, parseShape, portAccepts, portsByNode } from "./ports.js";

const concat = { op: "concat", kind: "op", inputs: ["x0", "x1"], outputs: ["y"], accepts: { x0: ["FP32"], x1: ["FP32"] },
  params: { n: { type: "integer", default: 2 } }, variadic: { prefix: "x", count_param: "n" } };
const catalogue = {
  ops: new Map([["cast", { op: "cast", inputs: ["x"], outputs: ["y"], params: {} }], ["concat", concat]]),
  switchEntry: { op: "switch", kind: "switch", inputs: ["x", "when"], outputs: ["then", "else"],
    accepts: { x: ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"],
      when: ["FP32", "INT64"] } },
  versions: new Map([[12, { id: 12, has_batch_dim: true, inputs: [{ name: "X", datatype: "FP32", shape: [-1, 64] }],
    outputs: [{ name: "label", datatype: "INT64", shape: [-1] }] }]]),
};

const nodes = [
  { id: "in", type: "input", data: { tensors: [{ name: "image", datatype: "UINT8", shape: [-1, 8, 8] }] } },
  { id: "prep", type: "op", data: { op: "cast" } },
  { id: "clf", type: "model", data: { model_version: 12 } },
  { id: "later", type: "model", data: { model_version: 99 } },
  { id: "out", type: "output", data: {} },
];
const edges = [
  { id: "1", source: "clf", sourceHandle: "label", target: "out", targetHandle: "label" },
  { id: "2", source: "later", sourceHandle: "y", target: "out", targetHandle: "other" },
];

describe("ports", () => {
  it("come from the catalogue, the spec, and the edges", () => {
    const ports = portsByNode(nodes, edges, catalogue);
    expect(ports.in.outputs).toEqual(["image"]);
    expect(ports.prep).toEqual({ inputs: ["x"], outputs: ["y"], known: true });
    expect(ports.clf.inputs).toEqual(["X"]);
    expect(ports.later).toEqual({ inputs: [], outputs: ["y"], known: false });
    expect(ports.out.inputs).toEqual(["label", "other"]);
  });

  it("follow a variadic op's count param", () => {
    const join = [{ id: "j", type: "op", data: { op: "concat", params: { n: 3 } } }];
    expect(portsByNode(join, [], catalogue).j.inputs).toEqual(["x0", "x1", "x2"]);
    expect(portsByNode([{ ...join[0], data: { op: "concat" } }], [], catalogue).j.inputs).toEqual(["x0", "x1"]);
  });

  it("know which datatypes an op's port takes, where it limits them", () => {
    const accepts = portAccepts([{ id: "j", type: "op", data: { op: "concat", params: { n: 3 } } },
      { id: "gate", type: "switch", data: {} }], catalogue);
    expect(accepts).toEqual({ "j.x0": ["FP32"], "j.x1": ["FP32"], "j.x2": ["FP32"], "gate.when": ["FP32", "INT64"] });
  });

  it("types graph inputs from the spec over a stale validator answer", () => {
    const types = mergedPortTypes(nodes, catalogue, {
      "in.image": { datatype: "FP32", shape: ["batch", 8, 8] },
      "prep.y": { datatype: "FP32", shape: ["batch", 8, 8] },
    });
    expect(types["in.image"]).toEqual({ datatype: "UINT8", shape: ["batch", 8, 8] });
    expect(types["prep.y"].datatype).toBe("FP32");
    expect(types["clf.X"]).toEqual({ datatype: "FP32", shape: ["batch", 64] });
  });

  it("prints and parses shapes", () => {
    expect(formatType({ datatype: "FP32", shape: ["batch", -1, 64] })).toBe("FP32 [batch, ?, 64]");
    expect(parseShape("-1, 8, n")).toEqual([-1, 8, "n"]);
    expect(() => parseShape("0, 8")).toThrow(/positive/);
    expect(() => parseShape("8, 2x")).toThrow(/neither/);
  });
});

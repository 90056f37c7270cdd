import { describe, expect, it } from "vitest";
import { nodeFromPalette, paletteGroups, startingParams } from "./palette.js";

const ops = [
  { op: "cast", doc: "Convert the datatype", inputs: ["x"], outputs: ["y"],
    params: { to: { type: "datatype", required: true, default: "FP32" } } },
  { op: "softmax", doc: "Softmax", inputs: ["x"], outputs: ["y"], params: { axis: { type: "int", required: false, default: -1 } } },
];
const models = [{ id: 1, name: "digits", versions: [
  { id: 11, version: 1, inputs: [{ name: "X", datatype: "FP32" }], outputs: [{ name: "label", datatype: "INT64" }] },
  { id: 12, version: 2, inputs: [{ name: "X", datatype: "FP32" }], outputs: [{ name: "label", datatype: "INT64" }] },
] }];
const catalogue = { ops: new Map(ops.map((o) => [o.op, o])), versions: new Map([[12, { ...models[0].versions[1], model_name: "digits" }]]) };

describe("the palette", () => {
  it("lists the graph's ends, the switch, every op and every model version, newest first", () => {
    const groups = paletteGroups(ops, models);
    expect(groups.map((g) => g.entries.map((e) => e.label))).toEqual([
      ["Input", "Output"], ["Switch"], ["cast", "softmax"], ["digits v2", "digits v1"]]);
    expect(groups[3].entries[0].detail).toBe("X: FP32 → label: INT64");
  });

  it("starts an op with its required defaults only", () => {
    expect(startingParams(ops[0].params)).toEqual({ to: "FP32" });
    expect(startingParams(ops[1].params)).toEqual({});
  });

  it("drops nodes with free ids", () => {
    const position = { x: 5, y: 6 };
    const cast = nodeFromPalette({ kind: "op", op: "cast" }, { position, taken: new Set(["cast"]), catalogue });
    expect(cast).toEqual({ id: "cast-2", type: "op", position, data: { op: "cast", params: { to: "FP32" } } });
    const model = nodeFromPalette({ kind: "model", model_version: 12 }, { position, taken: new Set(), catalogue });
    expect(model).toMatchObject({ id: "digits", type: "model", data: { model_version: 12 } });
    const gate = nodeFromPalette({ kind: "switch" }, { position, taken: new Set(), catalogue });
    expect(gate.data.params).toEqual({ op: "lt", value: 0.5 });
  });

  it("keeps the switch out of the ops, under its own name", () => {
    const groups = paletteGroups([...ops, { op: "switch", kind: "switch", doc: "Routes x", inputs: [], outputs: [] }], []);
    expect(groups[2].entries.map((e) => e.label)).toEqual(["cast", "softmax"]);
    expect(groups[1].entries[0].doc).toBe("Routes x");
  });
});

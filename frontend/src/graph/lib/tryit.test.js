import { describe, expect, it } from "vitest";
import { concreteShape, defaultRequest, gatewayMessage, outputsOf, parseRequest, requestText, sampleData } from "./tryit.js";

describe("defaultRequest", () => {
  it("gives the demo's UINT8 image one 8x8 pattern with batch 1", () => {
    const request = defaultRequest([{ name: "image", datatype: "UINT8", shape: [-1, 8, 8] }]);
    expect(request.inputs).toHaveLength(1);
    const [image] = request.inputs;
    expect(image).toMatchObject({ name: "image", datatype: "UINT8", shape: [1, 8, 8] });
    expect(image.data).toHaveLength(64);
    expect(Math.max(...image.data)).toBe(16);
    expect(image.data.every((v) => Number.isInteger(v) && v >= 0)).toBe(true);
  });

  it.each([
    ["FP32", [-1, 4], [1, 4], 0],
    ["INT64", [3], [3], 0],
    ["BOOL", [-1, 2], [1, 2], true],
    ["BYTES", [-1], [1], "example"],
  ])("%s %j becomes %j", (datatype, shape, concrete, first) => {
    const [tensor] = defaultRequest([{ name: "x", datatype, shape }]).inputs;
    expect(tensor.shape).toEqual(concrete);
    expect(tensor.data[0]).toBe(first);
  });

  it("sets every variable dimension to 1 and writes zeros past the size it generates", () => {
    expect(concreteShape([-1, -1, 3])).toEqual([1, 1, 3]);
    const [big] = defaultRequest([{ name: "x", datatype: "FP32", shape: [-1, 200, 200] }]).inputs;
    expect(big.data).toHaveLength(40000);
    expect(new Set(big.data)).toEqual(new Set([0]));
  });

  it("has no sample for an unknown datatype", () => {
    expect(() => sampleData("COMPLEX", 1)).toThrow("COMPLEX");
  });
});

describe("requestText and parseRequest", () => {
  const request = defaultRequest([{ name: "image", datatype: "UINT8", shape: [-1, 8, 8] },
    { name: "mask", datatype: "BOOL", shape: [-1, 2] }]);

  it("round-trips, one line per tensor", () => {
    const text = requestText(request);
    expect(text.split("\n")).toHaveLength(6);
    expect(parseRequest(text)).toEqual(request);
  });

  it("takes a bare list of inputs and nested data", () => {
    const parsed = parseRequest('[{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [[0.5, 1]]}]');
    expect(parsed.inputs[0].name).toBe("x");
  });

  it.each([
    ["{", "Not JSON"],
    ["{}", '{"inputs": [...]}'],
    ['{"inputs": [{"datatype": "FP32", "shape": [1], "data": [1]}]}', "Input 1 has no name."],
    ['{"inputs": [{"name": "x", "shape": [1], "data": [1]}]}', "Input x has no datatype."],
    ['{"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1], "data": [1]}]}', "shape must be a list of whole numbers"],
    ['{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2]}]}', "needs 3 values, not 2"],
  ])("refuses %s saying %s", (text, message) => {
    expect(() => parseRequest(text)).toThrow(message);
  });
});

describe("outputsOf and gatewayMessage", () => {
  it("shows each output's values, floats to 6 digits, the first 64", () => {
    const rows = outputsOf({ outputs: [
      { name: "name", datatype: "BYTES", shape: [1, 1], data: ["seven"] },
      { name: "score", datatype: "FP32", shape: [1, 1], data: [0.987654321] },
      { name: "big", datatype: "INT64", shape: [1, 100], data: Array.from({ length: 100 }, (_, i) => i) },
    ] });
    expect(rows.map((r) => r.text)).toEqual(['["seven"]', "[0.987654]",
      `${JSON.stringify(Array.from({ length: 64 }, (_, i) => i))} … 36 more`]);
    expect(rows[1]).toMatchObject({ name: "score", datatype: "FP32", shape: [1, 1] });
  });

  it("says the gateway's own message", () => {
    expect(gatewayMessage(401, { error: "Missing API key", code: "unauthenticated" })).toBe("Missing API key");
    expect(gatewayMessage(502, null)).toBe("The gateway answered 502.");
    expect(gatewayMessage(0, null)).toBe("The gateway could not be reached.");
  });
});

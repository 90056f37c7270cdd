import { describe, expect, it } from "vitest";
import { connectionProblem, isValidConnection, typeMismatch } from "./connection.js";
import { NEW_OUTPUT } from "./ports.js";

const t = (datatype, shape) => ({ datatype, shape });
const edge = (source, sourceHandle, target, targetHandle) =>
  ({ id: `${source}.${sourceHandle}->${target}.${targetHandle}`, source, sourceHandle, target, targetHandle });

describe("typeMismatch", () => {
  it.each([
    ["equal types", t("FP32", ["batch", 64]), t("FP32", ["batch", 64]), null],
    ["unknown dims", t("FP32", [-1, 64]), t("FP32", ["batch", -1]), null],
    ["a symbolic dim meeting a fixed one", t("FP32", ["n", 64]), t("FP32", [4, 64]), null],
    ["two symbolic dims", t("FP32", ["batch", "n"]), t("FP32", ["batch", "m"]), null],
    ["an unknown type", undefined, t("FP32", [1]), null],
  ])("allows %s", (_, from, to, expected) => {
    expect(typeMismatch(from, to)).toBe(expected);
  });

  it.each([
    ["datatypes differ", t("UINT8", ["batch", 8, 8]), t("FP32", ["batch", 8, 8]), /datatype UINT8 cannot feed FP32/],
    ["ranks differ", t("FP32", ["batch", 8, 8]), t("FP32", ["batch", 64]), /rank 3 .* rank 2/],
    ["fixed dims differ", t("FP32", ["batch", 64]), t("FP32", ["batch", 10]), /dimension 1 is 64 but 10/],
  ])("refuses when %s", (_, from, to, message) => {
    expect(typeMismatch(from, to)).toMatch(message);
  });
});

describe("connectionProblem", () => {
  const types = {
    "in.image": t("UINT8", ["batch", 8, 8]),
    "prep.y": t("FP32", ["batch", 64]),
    "clf.X": t("FP32", ["batch", 64]),
    "clf.label": t("INT64", ["batch"]),
  };
  const edges = [edge("prep", "y", "clf", "X")];

  it("allows a well-typed edge into a free port", () => {
    expect(connectionProblem({ source: "prep", sourceHandle: "y", target: "other", targetHandle: "x" }, { edges, types })).toBeNull();
  });

  it("refuses a second edge into an input port", () => {
    const problem = connectionProblem({ source: "in", sourceHandle: "image", target: "clf", targetHandle: "X" }, { edges, types });
    expect(problem).toMatch(/clf.X already takes prep.y/);
  });

  it("refuses mismatched types by name", () => {
    const problem = connectionProblem({ source: "in", sourceHandle: "image", target: "clf", targetHandle: "X" }, { edges: [], types });
    expect(problem).toBe("in.image → clf.X: datatype UINT8 cannot feed FP32.");
    expect(isValidConnection({ source: "in", sourceHandle: "image", target: "clf", targetHandle: "X" }, { edges: [], types })).toBe(false);
  });

  it("refuses self-loops and cycles", () => {
    expect(connectionProblem({ source: "clf", sourceHandle: "label", target: "clf", targetHandle: "X" }, { edges: [], types }))
      .toMatch(/cannot feed itself/);
    expect(connectionProblem({ source: "clf", sourceHandle: "label", target: "prep", targetHandle: "x" }, { edges, types }))
      .toMatch(/cycle/);
  });

  it("refuses a datatype an op's port does not take", () => {
    const problem = connectionProblem({ source: "in", sourceHandle: "image", target: "soft", targetHandle: "x" },
      { edges: [], types, accepts: { "soft.x": ["FP16", "FP32", "FP64"] } });
    expect(problem).toBe("soft.x takes FP16, FP32, FP64, not UINT8: add a cast op before it.");
  });

  it("lets anything become a new graph output", () => {
    const connection = { source: "clf", sourceHandle: "label", target: "out", targetHandle: NEW_OUTPUT };
    expect(connectionProblem(connection, { edges: [edge("clf", "label", "out", "label")], types })).toBeNull();
  });
});

import { describe, expect, it } from "vitest";
import { fieldKind, parseParam } from "./params.js";

describe("op params", () => {
  it.each([
    [{ type: "string", choices: ["lt", "gt"] }, "choice"],
    [{ type: "integer" }, "int"],
    [{ type: "number" }, "number"],
    [{ type: "boolean" }, "bool"],
    [{ type: "string" }, "text"],
    [{ type: "integer[]" }, "json"],
    [{ type: "number|number[]" }, "json"],
  ])("edits %j as %s", (schema, kind) => {
    expect(fieldKind(schema)).toBe(kind);
  });

  it("reads typed text as the value the validator expects", () => {
    expect(parseParam("int", " -1 ")).toBe(-1);
    expect(parseParam("number", "0.9")).toBe(0.9);
    expect(parseParam("json", "[-1, 64]")).toEqual([-1, 64]);
    expect(parseParam("json", "0.5")).toBe(0.5);
    expect(parseParam("text", "zero")).toBe("zero");
    expect(parseParam("int", "")).toBeUndefined();
  });

  it("says what a field wants", () => {
    expect(() => parseParam("int", "1.5")).toThrow("A whole number.");
    expect(() => parseParam("number", "x")).toThrow("A number.");
    expect(() => parseParam("json", "[1,")).toThrow(/JSON/);
  });
});

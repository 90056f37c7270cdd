import { describe, expect, it } from "vitest";
import { SHORTCUTS, shortcutAction } from "./shortcuts.js";

const key = (k, modifiers = {}) => ({ key: k, ctrlKey: false, metaKey: false, shiftKey: false, altKey: false, ...modifiers });

describe("shortcuts", () => {
  it.each([
    [key("z", { ctrlKey: true }), "undo"],
    [key("Z", { ctrlKey: true, shiftKey: true }), "redo"],
    [key("y", { ctrlKey: true }), "redo"],
    [key("z", { metaKey: true }), "undo"],
    [key("c", { ctrlKey: true }), "copy"],
    [key("v", { ctrlKey: true }), "paste"],
    [key("Delete"), "delete"],
    [key("Backspace"), "delete"],
    [key("?", { shiftKey: true }), "help"],
    [key("l"), "layout"],
    [key("s", { ctrlKey: true }), "save"],
    [key("l", { altKey: true }), null],
    [key("x"), null],
  ])("maps %j to %s", (event, action) => {
    expect(shortcutAction(event)).toBe(action);
  });

  it("lists every action it maps in the help overlay", () => {
    const listed = new Set(SHORTCUTS.map((s) => s.action));
    for (const action of ["undo", "redo", "copy", "cut", "paste", "selectAll", "delete", "layout", "fit", "save", "help", "escape"]) {
      expect(listed.has(action)).toBe(true);
    }
  });
});

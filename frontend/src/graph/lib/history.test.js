import { describe, expect, it } from "vitest";
import { canRedo, canUndo, historyInit, historyPush, historyRedo, historyUndo } from "./history.js";

describe("history", () => {
  it("undoes and redoes step by step", () => {
    let h = historyInit({ n: 0 });
    h = historyPush(h, { n: 1 });
    h = historyPush(h, { n: 2 });
    expect(canUndo(h)).toBe(true);
    expect(canRedo(h)).toBe(false);
    h = historyUndo(h);
    expect(h.present).toEqual({ n: 1 });
    h = historyUndo(h);
    expect(h.present).toEqual({ n: 0 });
    expect(historyUndo(h)).toBe(h);
    h = historyRedo(historyRedo(h));
    expect(h.present).toEqual({ n: 2 });
    expect(historyRedo(h)).toBe(h);
  });

  it("records nothing for an unchanged snapshot", () => {
    const h = historyPush(historyInit({ n: 0 }), { n: 1 });
    expect(historyPush(h, { n: 1 })).toBe(h);
  });

  it("drops redo on a new edit", () => {
    let h = historyPush(historyPush(historyInit({ n: 0 }), { n: 1 }), { n: 2 });
    h = historyPush(historyUndo(h), { n: 3 });
    expect(canRedo(h)).toBe(false);
    expect(historyUndo(h).present).toEqual({ n: 1 });
  });

  it("keeps at most `limit` steps", () => {
    let h = historyInit(0);
    for (let n = 1; n <= 10; n += 1) h = historyPush(h, n, 3);
    expect(h.past).toEqual([7, 8, 9]);
  });
});

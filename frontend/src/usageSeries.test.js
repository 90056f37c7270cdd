import { describe, expect, it } from "vitest";
import { bars, fillMinutes, niceMax } from "./usageSeries.js";

describe("fillMinutes", () => {
  it("returns one point per minute, zero where nothing was recorded", () => {
    const now = new Date("2026-11-22T10:05:30Z");
    const series = fillMinutes([{ minute: "2026-11-22T10:03:00Z", requests: 7, errors: 2 }], 3, now);
    expect(series.map((p) => p.minute.toISOString())).toEqual([
      "2026-11-22T10:03:00.000Z", "2026-11-22T10:04:00.000Z", "2026-11-22T10:05:00.000Z",
    ]);
    expect(series.map((p) => p.requests)).toEqual([7, 0, 0]);
    expect(series[0].errors).toBe(2);
  });
});

describe("niceMax", () => {
  it.each([[0, 1], [1, 1], [3, 5], [7, 10], [12, 20], [480, 500]])("%i -> %i", (value, expected) => {
    expect(niceMax(value)).toBe(expected);
  });
});

describe("bars", () => {
  it("scales requests to the height and splits errors", () => {
    const series = [{ minute: new Date(), requests: 10, errors: 5 }, { minute: new Date(), requests: 0, errors: 0 }];
    const { max, bars: rects } = bars(series, 200, 100);
    expect(max).toBe(10);
    expect(rects[0].ok + rects[0].errors).toBe(100);
    expect(rects[0].errors).toBe(50);
    expect(rects[1].ok).toBe(0);
  });
});

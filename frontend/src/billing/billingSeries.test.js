import { describe, expect, it } from "vitest";
import { axisNeedsCents, colorOf, formatAxis, formatMoney, layoutColumns, monthDays, niceScale, stackDaily, toMicros } from "./billingSeries.js";

describe("toMicros", () => {
  it.each([
    ["0", 0], ["1.23", 1_230_000], ["0.000001", 1], ["12", 12_000_000], ["-0.5", -500_000],
    ["0.0000005", 1], ["0.0000004", 0], [".25", 250_000], ["garbage", 0], [null, 0],
  ])("%s -> %i", (amount, micros) => {
    expect(toMicros(amount)).toBe(micros);
  });

  it("sums exactly where floats would not", () => {
    expect(toMicros("0.1") + toMicros("0.2")).toBe(toMicros("0.3"));
  });
});

describe("monthDays", () => {
  it("lists every UTC day of the period, the end excluded", () => {
    const days = monthDays("2026-02-01", "2026-03-01");
    expect(days).toHaveLength(28);
    expect(days[0]).toBe("2026-02-01");
    expect(days.at(-1)).toBe("2026-02-28");
    expect(monthDays("2028-02-01", "2028-03-01")).toHaveLength(29);
    expect(monthDays("2026-12-01", "2027-01-01").at(-1)).toBe("2026-12-31");
  });
});

describe("stackDaily", () => {
  const days = ["2026-12-01", "2026-12-02", "2026-12-03"];
  const daily = [
    { day: "2026-12-01", deployment_name: "small", amount: "0.10" },
    { day: "2026-12-01", deployment_name: "big", amount: "2.00" },
    { day: "2026-12-02", deployment_name: "big", amount: "1.005" },
    { day: "2026-12-02", deployment_name: "small", amount: "0.20" },
    { day: "2026-11-30", deployment_name: "old", amount: "9.00" },
  ];

  it("orders deployments by their month's cost, costliest at the bottom of every column", () => {
    const { deployments, columns, total } = stackDaily(daily, days);
    expect(deployments.map((d) => d.name)).toEqual(["big", "small"]);
    expect(deployments[0].total).toBe(3_005_000);
    expect(total).toBe(3_305_000);
    expect(columns[0].segments.map((s) => [s.deployment, s.y0, s.y1])).toEqual([
      ["big", 0, 2_000_000], ["small", 2_000_000, 2_100_000]]);
    expect(columns[1].segments.map((s) => s.deployment)).toEqual(["big", "small"]);
    expect(columns[1].total).toBe(1_205_000);
  });

  it("keeps a column for a day without cost, and leaves out days of another month", () => {
    const { columns, deployments } = stackDaily(daily, days);
    expect(columns.map((c) => c.day)).toEqual(days);
    expect(columns[2]).toMatchObject({ segments: [], total: 0 });
    expect(deployments.map((d) => d.name)).not.toContain("old");
  });

  it("adds up two rows of the same day and deployment (two hardware classes)", () => {
    const { columns } = stackDaily([
      { day: "2026-12-01", deployment_name: "d", amount: "0.1" },
      { day: "2026-12-01T00:00:00Z", deployment_name: "d", amount: "0.2" },
    ], days);
    expect(columns[0].segments).toEqual([{ deployment: "d", micros: 300_000, y0: 0, y1: 300_000 }]);
  });
});

describe("niceScale", () => {
  it.each([
    [0, 10_000],
    [3_000_000, 3_000_000],
    [3_100_000, 4_000_000],
    [7_300_000, 8_000_000],
    [12_340_000, 15_000_000],
    [99_000_000, 100_000_000],
  ])("%i micro-units -> a top of %i", (max, top) => {
    const scale = niceScale(max);
    expect(scale.max).toBe(top);
    expect(scale.ticks[0]).toBe(0);
    expect(scale.ticks.at(-1)).toBe(top);
    expect(scale.max).toBeGreaterThanOrEqual(max);
    expect(scale.ticks.length).toBeGreaterThanOrEqual(3);
    expect(scale.ticks.length).toBeLessThanOrEqual(6);
  });
});

describe("formatMoney", () => {
  it("writes the plan's currency to the cent, half-up", () => {
    expect(formatMoney(1_234_565_000, "usd")).toBe("$1,234.57");
    expect(formatMoney(1_234_564_999, "usd")).toBe("$1,234.56");
    expect(formatMoney(0, "usd")).toBe("$0.00");
    expect(formatMoney(2_500_000, "eur", "en-US")).toBe("€2.50");
    // German puts the sign after the amount, behind a no-break space.
    expect(formatMoney(2_500_000, "EUR", "de-DE").replace(/\s/u, " ")).toBe("2,50 €");
  });

  it("says a little usage is less than a cent rather than free", () => {
    expect(formatMoney(1, "usd")).toBe("< $0.01");
    expect(formatMoney(4_999, "usd")).toBe("< $0.01");
    expect(formatMoney(5_000, "usd")).toBe("$0.01");
  });
});

describe("formatAxis", () => {
  it("keeps axis labels short", () => {
    expect(formatAxis(0, "usd")).toBe("$0");
    expect(formatAxis(2_500_000, "usd")).toBe("$2.50");
    expect(formatAxis(4_000_000, "usd")).toBe("$4");
    expect(formatAxis(1_500_000_000, "usd")).toBe("$1.5K");
  });

  it("writes every label of an axis alike: cents on all when one needs them", () => {
    const { ticks } = niceScale(1_400_000);
    expect(axisNeedsCents(ticks)).toBe(true);
    expect(ticks.map((t) => formatAxis(t, "usd", axisNeedsCents(ticks)))).toEqual(["$0", "$0.50", "$1.00", "$1.50"]);
    const whole = niceScale(7_300_000).ticks;
    expect(axisNeedsCents(whole)).toBe(false);
    expect(whole.map((t) => formatAxis(t, "usd", false))).toEqual(["$0", "$2", "$4", "$6", "$8"]);
  });
});

describe("layoutColumns", () => {
  it("scales each stack to the plot, the top of the scale at the top", () => {
    const { columns } = stackDaily([
      { day: "2026-12-01", deployment_name: "a", amount: "1" },
      { day: "2026-12-01", deployment_name: "b", amount: "1" },
    ], ["2026-12-01", "2026-12-02"]);
    const [first, second] = layoutColumns(columns, { width: 200, height: 100, max: 4_000_000 });
    expect(first.rects.map((r) => [r.y, r.height])).toEqual([[75, 25], [50, 25]]);
    expect(first.slot).toBe(100);
    expect(second.x).toBeGreaterThan(first.x + first.width);
    expect(second.rects).toEqual([]);
  });

  it("gives each deployment its own colour", () => {
    expect(new Set([0, 1, 2, 3, 4, 5, 6, 7].map(colorOf)).size).toBe(8);
  });
});

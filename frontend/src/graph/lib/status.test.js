import { describe, expect, it } from "vitest";
import { callLatencies, formatMs, latenciesSeen, nodeStatuses, statsText, statusesFromDeployment } from "./status.js";

const fusedAnswer = (calls, successNs) => ({
  deployment: 12, executor: "fused", state: "ready",
  units: [{ name: "fused", kind: "fused", nodes: ["prep", "classifier", "top1"], state: "loaded", calls, failures: 0,
    p50_ms: 1.2, mean_ms: 1.3, success_ns: successNs, shared: false }],
  nodes: { prep: { unit: "fused", state: "loaded", fused: true }, classifier: { unit: "fused", state: "loaded", fused: true },
    top1: { unit: "fused", state: "loaded", fused: true } },
});

describe("nodeStatuses", () => {
  it("gives a fused unit's nodes its state and statistics, one colour, and each other", () => {
    const statuses = nodeStatuses(fusedAnswer(10, 13_000_000));
    expect(Object.keys(statuses)).toEqual(["prep", "classifier", "top1"]);
    expect(statuses.classifier).toMatchObject({ state: "loaded", unit: "fused", fused: true, calls: 10, p50_ms: 1.2,
      failures: 0, fusedWith: ["prep", "classifier", "top1"] });
    expect(new Set(Object.values(statuses).map((s) => s.colour)).size).toBe(1);
  });

  it("keeps units apart: a model unit is not fused, two fused segments differ in colour", () => {
    const statuses = nodeStatuses({ units: [
      { name: "seg-0", kind: "fused", nodes: ["a", "b"], state: "loaded", calls: 1, failures: 0, p50_ms: null },
      { name: "clf", kind: "model", nodes: ["clf"], state: "cold", calls: 0, failures: 0, p50_ms: null },
      { name: "seg-1", kind: "fused", nodes: ["c", "d"], state: "failed", calls: 2, failures: 2, p50_ms: 3 },
    ], nodes: { clf: { unit: "clf", state: "loading", fused: false } } });
    expect(statuses.clf).toMatchObject({ fused: false, colour: null, state: "loading" });
    expect(statuses.a.colour).not.toBe(statuses.c.colour);
    expect(statuses.d).toMatchObject({ state: "failed", failures: 2 });
  });

  it("marks a fused group of ops (an ensemble's or orchestrator's segment) like a fused graph", () => {
    const statuses = nodeStatuses({ units: [
      { name: "prep+flat", kind: "segment", nodes: ["prep", "flat"], state: "loaded", calls: 1, failures: 0 },
      { name: "top", kind: "segment", nodes: ["top"], state: "loaded", calls: 1, failures: 0 },
      { name: "ensemble", kind: "ensemble", nodes: [], state: "loaded", calls: 1, failures: 0 },
    ] });
    expect(statuses.prep).toMatchObject({ fused: true, fusedWith: ["prep", "flat"] });
    expect(statuses.top).toMatchObject({ fused: false, colour: null });
  });

  it("is empty without an answer", () => {
    expect(nodeStatuses(null)).toEqual({});
  });
});

describe("statusesFromDeployment", () => {
  const nodes = [{ id: "in", type: "input" }, { id: "clf", type: "model" }, { id: "out", type: "output" }];
  it.each([["ready", "loaded"], ["pending", "loading"], ["cold", "cold"], ["failed", "failed"]])(
    "a %s deployment's nodes are %s", (state, nodeState) => {
      expect(statusesFromDeployment({ state }, nodes)).toEqual({ clf: expect.objectContaining({ state: nodeState, calls: null }) });
    });
  it("says nothing of an undeployed one", () => {
    expect(statusesFromDeployment({ state: "undeployed" }, nodes)).toEqual({});
  });
});

describe("callLatencies", () => {
  it("is the change in success time over the change in calls, per unit", () => {
    const rows = callLatencies(fusedAnswer(10, 13_000_000), fusedAnswer(11, 14_500_000));
    expect(rows).toEqual([{ unit: "fused", kind: "fused", nodes: ["prep", "classifier", "top1"], calls: 1, ms: 1.5 }]);
    expect(latenciesSeen(rows)).toBe(true);
  });

  it("averages over calls that ran in between, and has none for a unit that did not run", () => {
    const before = { units: [{ name: "a", kind: "model", nodes: ["a"], calls: 4, success_ns: 4e6 },
      { name: "b", kind: "model", nodes: ["b"], calls: 1, success_ns: 1e6 }] };
    const after = { units: [{ name: "a", kind: "model", nodes: ["a"], calls: 6, success_ns: 10e6 },
      { name: "b", kind: "model", nodes: ["b"], calls: 1, success_ns: 1e6 },
      { name: "c", kind: "model", nodes: ["c"], calls: 1, success_ns: 2e6 }] };
    expect(callLatencies(before, after).map((r) => [r.unit, r.calls, r.ms])).toEqual([["a", 2, 3], ["b", 0, null], ["c", 1, 2]]);
  });

  it("has not seen a call Triton has not counted yet", () => {
    expect(latenciesSeen(callLatencies(fusedAnswer(10, 1), fusedAnswer(10, 1)))).toBe(false);
  });
});

describe("formatting", () => {
  it.each([[null, "–"], [0.1234, "0.12 ms"], [12.345, "12.3 ms"], [1234.5, "1235 ms"]])("%s ms reads %s", (ms, text) => {
    expect(formatMs(ms)).toBe(text);
  });
  it("writes a node's statistics, or nothing before there are any", () => {
    expect(statsText({ calls: 10, p50_ms: 1.2, failures: 0 })).toBe("10 calls · p50 1.20 ms · 0 failed");
    expect(statsText({ calls: 1, p50_ms: null, failures: 1 })).toBe("1 call · p50 – · 1 failed");
    expect(statsText({ calls: null })).toBeNull();
  });
});

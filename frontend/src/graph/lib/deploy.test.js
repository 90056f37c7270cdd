import { describe, expect, it } from "vitest";
import { deploymentName, graphDeployments, withEvent } from "./deploy.js";

describe("deploymentName", () => {
  it.each([["digits-pipeline", "digits-pipeline"], ["Digits Pipeline v2", "digits-pipeline-v2"], ["--", "graph"],
    ["a".repeat(70), "a".repeat(63)]])("%s -> %s", (name, slug) => {
    expect(deploymentName(name)).toBe(slug);
  });
});

describe("graphDeployments", () => {
  const versions = [{ id: 7, number: 2 }, { id: 5, number: 1 }];
  it("keeps this graph's live deployments, newest first", () => {
    const list = [{ id: 1, graph_version: 5, state: "ready" }, { id: 2, graph_version: null, model_version: 3, state: "ready" },
      { id: 3, graph_version: 9, state: "ready" }, { id: 4, graph_version: 7, state: "cold" },
      { id: 6, graph_version: 7, state: "undeployed" }];
    expect(graphDeployments(list, versions).map((d) => d.id)).toEqual([4, 1]);
    expect(graphDeployments(null, versions)).toEqual([]);
  });
});

describe("withEvent", () => {
  it("applies an event to its deployment only", () => {
    const deployment = { id: 4, name: "g", state: "loading", executor: "fused" };
    expect(withEvent(deployment, { id: 4, state: "ready", error: "" })).toEqual({ ...deployment, state: "ready", error: "" });
    expect(withEvent(deployment, { id: 5, state: "failed" })).toBe(deployment);
  });
});

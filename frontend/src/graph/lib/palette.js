// What the palette offers and the node each entry drops onto the canvas.
import { freeNodeId } from "./ids.js";
import { switchEntry } from "./ports.js";

/** Param values a new node starts with: the required params that have a default. */
export function startingParams(schema) {
  return Object.fromEntries(Object.entries(schema ?? {})
    .filter(([, param]) => param.required && param.default !== undefined && param.default !== null)
    .map(([name, param]) => [name, param.default]));
}

const signature = (tensors) => tensors.map((t) => `${t.name}: ${t.datatype}`).join(", ");

/** Palette entries in groups: graph inputs and outputs, control flow, built-in ops, models. */
export function paletteGroups(ops, models) {
  const switchDoc = switchEntry({ switchEntry: ops.find((op) => op.kind === "switch") }).doc;
  const entry = (key, label, detail, doc, payload) => ({ key, label, detail, doc, payload,
    search: `${label} ${detail} ${doc}`.toLowerCase() });
  const modelEntries = models.flatMap((model) => [...model.versions].sort((a, b) => b.version - a.version)
    .map((v) => entry(`model:${v.id}`, `${model.name} v${v.version}`,
      `${signature(v.inputs)} → ${signature(v.outputs)}`, model.description ?? "", { kind: "model", model_version: v.id })));
  return [
    { title: "Graph", entries: [
      entry("input", "Input", "the tensors a caller sends", "Graph inputs: name, datatype and shape per tensor", { kind: "input" }),
      entry("output", "Output", "what the graph returns", "Graph outputs: each edge into it is one", { kind: "output" }),
    ] },
    { title: "Control", entries: [
      entry("switch", "Switch", "then / else per request", switchDoc, { kind: "switch" }),
    ] },
    { title: "Ops", entries: ops.filter((op) => (op.kind ?? "op") === "op").map((op) => entry(`op:${op.op}`, op.op,
      `${op.inputs.join(", ")} → ${op.outputs.join(", ")}`, op.doc ?? "", { kind: "op", op: op.op })) },
    { title: "Models", entries: modelEntries },
  ];
}

/** A new node for a palette payload, at `position`, with an id free among `taken`. */
export function nodeFromPalette(payload, { position, taken, catalogue }) {
  const make = (base, type, data) => ({ id: freeNodeId(base, taken), type, position, data });
  switch (payload.kind) {
    case "input":
      return make("in", "input", { tensors: [{ name: "input", datatype: "FP32", shape: [-1, 4] }] });
    case "output":
      return make("out", "output", {});
    case "switch":
      return make("switch", "switch", { params: { ...startingParams(switchEntry(catalogue).params), op: "lt", value: 0.5 } });
    case "op":
      return make(payload.op, "op", { op: payload.op, params: startingParams(catalogue.ops.get(payload.op)?.params) });
    case "model": {
      const version = catalogue.versions.get(Number(payload.model_version));
      return make(version?.model_name ?? "model", "model", { model_version: Number(payload.model_version) });
    }
    default:
      throw new Error(`Unknown palette entry ${payload.kind}`);
  }
}

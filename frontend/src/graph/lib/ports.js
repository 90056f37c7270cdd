// Which ports each node has, and the types the editor knows for them before (or between)
// answers from the backend validator, which stays the source of truth.

export const DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
  "FP16", "FP32", "FP64", "BYTES"];

/** The target handle of an output node that names a new graph output after what is dropped on it. */
export const NEW_OUTPUT = "__new_output__";

/** A switch's ports and params, until the op catalogue (its entry of kind "switch") says them. */
export const SWITCH = {
  op: "switch",
  doc: "Routes x to `then` or `else` per request, by testing `when` against a value.",
  inputs: ["x", "when"],
  outputs: ["then", "else"],
  params: {
    op: { type: "str", required: true, default: "lt", help: "How `when` is compared with the value",
      choices: ["lt", "le", "gt", "ge", "eq", "ne"] },
    value: { type: "float", required: true, default: null, help: "The number `when` is compared with" },
    reduce: { type: "str", required: false, default: "any", help: "Over the rows of `when`: any or all must pass",
      choices: ["any", "all"] },
  },
};

/**
 * @typedef {{ops: Map<string, object>, switchEntry?: object, versions: Map<number, object>}} Catalogue
 *   ops: op name -> catalogue entry {op, kind, doc, inputs, outputs, params, accepts, variadic?};
 *   switchEntry: the catalogue's entry of kind "switch";
 *   versions: model version id -> {id, model_name, version, inputs, outputs, has_batch_dim}
 */

export const switchEntry = (catalogue) => catalogue.switchEntry ?? SWITCH;

/** An op's input ports for its params: a variadic op (concat) has prefix0 .. prefix{n-1}. */
export function opInputs(entry, params) {
  if (!entry.variadic) return entry.inputs;
  const { prefix, count_param: countParam } = entry.variadic;
  const declared = params?.[countParam];
  const count = Number.isInteger(declared) && declared >= 2 && declared <= 32 ? declared
    : entry.params?.[countParam]?.default ?? entry.inputs.length;
  return Array.from({ length: count }, (_, i) => `${prefix}${i}`);
}

function unique(names) {
  return [...new Set(names)];
}

/** The ports a node declares, from its own data or the catalogue; `known` is false when the
 * catalogue does not know its op or model version (yet). */
export function declaredPorts(node, catalogue) {
  const data = node.data ?? {};
  switch (node.type) {
    case "input":
      return { inputs: [], outputs: (data.tensors ?? []).map((t) => t.name), known: true };
    case "output":
      return { inputs: [], outputs: [], known: true };
    case "switch": {
      const entry = switchEntry(catalogue);
      return { inputs: entry.inputs, outputs: entry.outputs, known: true };
    }
    case "model": {
      const version = catalogue.versions.get(Number(data.model_version));
      return version
        ? { inputs: version.inputs.map((t) => t.name), outputs: version.outputs.map((t) => t.name), known: true }
        : { inputs: [], outputs: [], known: false };
    }
    case "op": {
      const entry = catalogue.ops.get(data.op);
      return entry ? { inputs: opInputs(entry, data.params), outputs: entry.outputs, known: true }
        : { inputs: [], outputs: [], known: false };
    }
    default:
      return { inputs: [], outputs: [], known: false };
  }
}

/**
 * Every node's handles: what it declares, then any port an edge names that it does not
 * declare (so an edge never loses its end while the catalogue loads, and a wrong port stays
 * visible for the validator's message). An output node's inputs are named by its edges.
 * @returns {Record<string, {inputs: string[], outputs: string[], known: boolean}>}
 */
export function portsByNode(nodes, edges, catalogue) {
  const result = {};
  for (const node of nodes) result[node.id] = { ...declaredPorts(node, catalogue) };
  for (const edge of edges) {
    if (result[edge.source]) result[edge.source].outputs = unique([...result[edge.source].outputs, edge.sourceHandle]);
    if (result[edge.target]) result[edge.target].inputs = unique([...result[edge.target].inputs, edge.targetHandle]);
  }
  return result;
}

/** "<node>.<port>" -> the datatypes an op's (or a switch's) input port takes, where the catalogue limits them. */
export function portAccepts(nodes, catalogue) {
  const accepts = {};
  for (const node of nodes) {
    const entry = node.type === "op" ? catalogue.ops.get(node.data?.op) : node.type === "switch" ? switchEntry(catalogue) : null;
    if (!entry?.accepts) continue;
    const ports = node.type === "op" ? opInputs(entry, node.data?.params) : entry.inputs;
    for (const port of ports) {
      // A variadic op's ports beyond the declared ones take what its first port takes.
      const datatypes = entry.accepts[port] ?? (entry.variadic ? entry.accepts[entry.inputs[0]] : undefined);
      if (datatypes && datatypes.length < DATATYPES.length) accepts[`${node.id}.${port}`] = datatypes;
    }
  }
  return accepts;
}

/** A free name for a new output of `outputNode`, after the port that feeds it. */
export function newOutputName(base, outputNodeId, edges) {
  const taken = new Set(edges.filter((e) => e.target === outputNodeId).map((e) => e.targetHandle));
  let name = base;
  for (let n = 2; taken.has(name); n += 1) name = `${base}_${n}`;
  return name;
}

function signatureType(tensor, { batchFirst }) {
  return {
    datatype: tensor.datatype,
    shape: (tensor.shape ?? []).map((dim, index) => (dim === -1 && batchFirst && index === 0 ? "batch" : dim)),
  };
}

/**
 * Types the editor can tell on its own: a graph input's tensors (the spec says them) and a
 * model's ports (its signature says them). "<node>.<port>" -> {datatype, shape}; -1 is an
 * unknown dim, a string a symbolic one.
 */
export function localPortTypes(nodes, catalogue) {
  const types = {};
  for (const node of nodes) {
    if (node.type === "input") {
      for (const tensor of node.data?.tensors ?? []) {
        if (tensor?.name) types[`${node.id}.${tensor.name}`] = signatureType(tensor, { batchFirst: true });
      }
    } else if (node.type === "model") {
      const version = catalogue.versions.get(Number(node.data?.model_version));
      if (!version) continue;
      const batchFirst = Boolean(version.has_batch_dim);
      for (const t of version.inputs) types[`${node.id}.${t.name}`] = signatureType(t, { batchFirst });
      for (const t of version.outputs) types[`${node.id}.${t.name}`] = signatureType(t, { batchFirst });
    }
  }
  return types;
}

/**
 * The types to check connections with: the last validator answer, except for graph
 * inputs, whose types the spec states (an edit there is newer than any answer).
 */
export function mergedPortTypes(nodes, catalogue, validated) {
  const local = localPortTypes(nodes, catalogue);
  const inputIds = new Set(nodes.filter((n) => n.type === "input").map((n) => n.id));
  const stated = Object.fromEntries(Object.entries(local).filter(([ref]) => inputIds.has(ref.split(".")[0])));
  return { ...local, ...(validated ?? {}), ...stated };
}

/** "FP32 [batch, 64]"; unknown dims print as "?". */
export function formatType(type) {
  if (!type) return "";
  const dims = (type.shape ?? []).map((d) => (d === -1 || d === null || d === undefined ? "?" : String(d)));
  return `${type.datatype ?? "?"} [${dims.join(", ")}]`;
}

const DTYPE_COLOURS = {
  BOOL: "#64748b",
  UINT8: "#f59e0b", UINT16: "#d97706", UINT32: "#b45309", UINT64: "#92400e",
  INT8: "#34d399", INT16: "#10b981", INT32: "#059669", INT64: "#047857",
  FP16: "#60a5fa", FP32: "#2563eb", FP64: "#1e40af",
  BYTES: "#db2777",
};
export const UNKNOWN_COLOUR = "#cbd5e1";

export function dtypeColour(datatype) {
  return DTYPE_COLOURS[datatype] ?? UNKNOWN_COLOUR;
}

/** "-1, 8, n" -> [-1, 8, "n"]; throws with a message for anything else. */
export function parseShape(text) {
  const parts = String(text).split(",").map((p) => p.trim()).filter((p) => p !== "");
  return parts.map((part) => {
    if (/^-?\d+$/.test(part)) {
      const dim = Number(part);
      if (dim === -1 || dim > 0) return dim;
      throw new Error(`A dimension is -1 (free) or a positive size, not ${part}.`);
    }
    if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(part)) return part;
    throw new Error(`"${part}" is neither a size nor a dimension name.`);
  });
}

export function shapeText(shape) {
  return (shape ?? []).join(", ");
}

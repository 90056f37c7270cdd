// The "Try it" panel's pure parts: a KServe v2 request generated from a graph version's
// input signature, the request text parsed back, and the gateway's answer made readable.

const NUMERIC = new Set(["UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
  "FP16", "FP32", "FP64", "BF16"]);
const SHOWN_VALUES = 64;
// Past this many values a generated input is zeros written once per row: the text stays editable.
export const MAX_GENERATED_VALUES = 16384;

/** A signature's shape with every variable dimension (-1, the batch first) set to 1. */
export const concreteShape = (shape) => (shape ?? []).map((dim) => (Number.isInteger(dim) && dim > 0 ? dim : 1));

export const valueCount = (shape) => shape.reduce((product, dim) => product * dim, 1);

/** `count` values of `datatype` in a small repeating pattern (0..16, the digits' pixel range). */
export function sampleData(datatype, count) {
  if (NUMERIC.has(datatype)) return Array.from({ length: count }, (_, i) => i % 17);
  if (datatype === "BOOL") return Array.from({ length: count }, (_, i) => i % 2 === 0);
  if (datatype === "BYTES") return Array.from({ length: count }, () => "example");
  throw new Error(`No sample for datatype ${datatype}.`);
}

/** A request with one tensor per graph input, batch 1. */
export function defaultRequest(inputs) {
  return {
    inputs: (inputs ?? []).map(({ name, datatype, shape }) => {
      const concrete = concreteShape(shape);
      const count = valueCount(concrete);
      const data = count > MAX_GENERATED_VALUES ? new Array(count).fill(datatype === "BYTES" ? "" : 0)
        : sampleData(datatype, count);
      return { name, datatype, shape: concrete, data };
    }),
  };
}

/** The request as the panel shows it: one line per tensor rather than one per value. */
export function requestText(request) {
  const tensors = request.inputs.map((tensor) => `    ${JSON.stringify(tensor)}`);
  return `{\n  "inputs": [\n${tensors.join(",\n")}\n  ]\n}`;
}

/** The pasted or edited text as a request body; throws an Error saying what is wrong. */
export function parseRequest(text) {
  let value;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new Error(`Not JSON: ${error.message}`);
  }
  const request = Array.isArray(value) ? { inputs: value } : value;
  if (!request || typeof request !== "object" || !Array.isArray(request.inputs) || !request.inputs.length) {
    throw new Error('Give {"inputs": [...]}: one tensor per graph input (KServe v2).');
  }
  request.inputs.forEach((tensor, index) => {
    const where = typeof tensor?.name === "string" && tensor.name ? `Input ${tensor.name}` : `Input ${index + 1}`;
    if (typeof tensor?.name !== "string" || !tensor.name) throw new Error(`${where} has no name.`);
    if (typeof tensor.datatype !== "string") throw new Error(`${where} has no datatype.`);
    if (!Array.isArray(tensor.shape) || !tensor.shape.every((dim) => Number.isInteger(dim) && dim >= 0)) {
      throw new Error(`${where}: shape must be a list of whole numbers.`);
    }
    if (!Array.isArray(tensor.data)) throw new Error(`${where} has no data list.`);
    const expected = valueCount(tensor.shape);
    const given = tensor.data.flat(Infinity).length;
    if (given !== expected) throw new Error(`${where}: shape ${JSON.stringify(tensor.shape)} needs ${expected} values, not ${given}.`);
  });
  return request;
}

const formatValue = (value) => (typeof value === "number" && !Number.isInteger(value) ? Number(value.toPrecision(6)) : value);

/** The answer's outputs: name, datatype, shape, and their values as text (the first 64). */
export function outputsOf(answer) {
  return (answer?.outputs ?? []).map(({ name, datatype, shape, data }) => {
    const values = Array.isArray(data) ? data.flat(Infinity) : [];
    const shown = values.slice(0, SHOWN_VALUES).map(formatValue);
    const more = values.length - shown.length;
    return { name, datatype, shape: shape ?? [], values: shown, text: JSON.stringify(shown) + (more > 0 ? ` … ${more} more` : "") };
  });
}

/** What the gateway said when it refused: KServe's {"error": "<message>"}. */
export function gatewayMessage(status, body) {
  if (body && typeof body.error === "string") return body.error;
  if (body?.error?.message) return body.error.message;
  return status ? `The gateway answered ${status}.` : "The gateway could not be reached.";
}

// The edge rules the backend validator applies, checked while a connection is dragged, with
// the types the validator last reported. Where a type is unknown the edge is allowed and the
// validator, which runs after every change, decides.
import { NEW_OUTPUT, formatType } from "./ports.js";

const isUnknown = (dim) => dim === -1 || dim === null || dim === undefined;
const isFixed = (dim) => typeof dim === "number" && dim > 0;

/**
 * Why a tensor of type `from` cannot feed a port of type `to`, or null when it can:
 * datatypes equal, ranks equal, fixed dims equal; a symbolic dim meets a fixed one or another
 * symbolic one (the validator binds it, once per name per graph).
 */
export function typeMismatch(from, to) {
  if (!from || !to) return null;
  if (from.datatype && to.datatype && from.datatype !== to.datatype) {
    return `datatype ${from.datatype} cannot feed ${to.datatype}`;
  }
  if (!Array.isArray(from.shape) || !Array.isArray(to.shape)) return null;
  if (from.shape.length !== to.shape.length) {
    return `rank ${from.shape.length} ${formatType(from)} cannot feed rank ${to.shape.length} ${formatType(to)}`;
  }
  for (let i = 0; i < from.shape.length; i += 1) {
    const a = from.shape[i];
    const b = to.shape[i];
    if (isUnknown(a) || isUnknown(b)) continue;
    if (isFixed(a) && isFixed(b) && a !== b) {
      return `dimension ${i} is ${a} but ${b} is expected (${formatType(from)} → ${formatType(to)})`;
    }
  }
  return null;
}

function reaches(edges, from, to) {
  const next = new Map();
  for (const edge of edges) {
    if (!next.has(edge.source)) next.set(edge.source, []);
    next.get(edge.source).push(edge.target);
  }
  const seen = new Set();
  const stack = [from];
  while (stack.length) {
    const node = stack.pop();
    if (node === to) return true;
    if (seen.has(node)) continue;
    seen.add(node);
    stack.push(...(next.get(node) ?? []));
  }
  return false;
}

/**
 * Why `connection` ({source, sourceHandle, target, targetHandle}) cannot be added to
 * `edges`, or null when it can. `types`: "<node>.<port>" -> {datatype, shape};
 * `accepts`: "<node>.<port>" -> the datatypes an op's input port takes.
 */
export function connectionProblem(connection, { edges, types = {}, accepts = {} }) {
  const { source, sourceHandle, target, targetHandle } = connection;
  if (!source || !target || !sourceHandle || !targetHandle) return "Connect an output port to an input port.";
  if (source === target) return `${source} cannot feed itself.`;
  if (targetHandle !== NEW_OUTPUT) {
    const taken = edges.find((e) => e.target === target && e.targetHandle === targetHandle);
    if (taken) return `${target}.${targetHandle} already takes ${taken.source}.${taken.sourceHandle}: one edge per input port.`;
  }
  if (reaches(edges, target, source)) return `${source} → ${target} would close a cycle.`;
  if (targetHandle === NEW_OUTPUT) return null;
  const from = types[`${source}.${sourceHandle}`];
  const allowed = accepts[`${target}.${targetHandle}`];
  if (from?.datatype && allowed && !allowed.includes(from.datatype)) {
    return `${target}.${targetHandle} takes ${allowed.join(", ")}, not ${from.datatype}: add a cast op before it.`;
  }
  const mismatch = typeMismatch(from, types[`${target}.${targetHandle}`]);
  return mismatch ? `${source}.${sourceHandle} → ${target}.${targetHandle}: ${mismatch}.` : null;
}

export function isValidConnection(connection, context) {
  return connectionProblem(connection, context) === null;
}

// Node ids as the spec allows them: 1-64 characters, [A-Za-z][A-Za-z0-9_-]*, unique.

export const NODE_ID_PATTERN = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;

/** `base` made a valid id ("2-class model" -> "n2-class-model"), then made unique in `taken`. */
export function freeNodeId(base, taken) {
  let stem = String(base || "node").replace(/[^A-Za-z0-9_-]+/g, "-").replace(/^-+|-+$/g, "") || "node";
  if (!/^[A-Za-z]/.test(stem)) stem = `n${stem}`;
  stem = stem.slice(0, 56);
  const used = taken instanceof Set ? taken : new Set(taken);
  if (!used.has(stem)) return stem;
  for (let n = 2; ; n += 1) {
    const candidate = `${stem}-${n}`;
    if (!used.has(candidate)) return candidate;
  }
}

/** Why `id` cannot be a node's new id, or null. */
export function nodeIdProblem(id, taken) {
  if (!NODE_ID_PATTERN.test(id)) return "Use 1-64 letters, digits, - or _, starting with a letter.";
  if (taken.has(id)) return `Another node is called ${id}.`;
  return null;
}

// Op params as the side panel edits them: which control each schema type gets, and typed
// text read back as the value the validator expects.

/** How a param of the op catalogue is edited, by its schema's type. */
export function fieldKind(schema) {
  if (Array.isArray(schema?.choices) && schema.choices.length) return "choice";
  const type = String(schema?.type ?? "").toLowerCase();
  if (type === "bool" || type === "boolean") return "bool";
  if (type === "int" || type === "integer") return "int";
  if (type === "float" || type === "number" || type === "double") return "number";
  if (type === "datatype" || type === "dtype") return "datatype";
  if (type === "str" || type === "string") return "text";
  return "json";
}

/** Text typed into a param field -> its value; undefined removes the param (its default applies). */
export function parseParam(kind, text) {
  const trimmed = String(text).trim();
  if (trimmed === "") return undefined;
  if (kind === "int") {
    if (!/^-?\d+$/.test(trimmed)) throw new Error("A whole number.");
    return Number(trimmed);
  }
  if (kind === "number") {
    const value = Number(trimmed);
    if (!Number.isFinite(value)) throw new Error("A number.");
    return value;
  }
  if (kind === "json") {
    try {
      return JSON.parse(trimmed);
    } catch {
      throw new Error('JSON, e.g. [1, 2] or ["a", "b"].');
    }
  }
  return trimmed;
}

// What every node component reads besides its own data: its ports, their types, the
// validator's issues, whether the editor is read-only, and (while two versions are compared)
// what became of each node: id -> {status, changes} (lib/diff.js), or null; and, when the graph
// is deployed, each node's live status: id -> NodeStatus (lib/status.js), or null.
import { createContext, useContext } from "react";
import { NO_ISSUES } from "./lib/issues.js";

export const EditorContext = createContext({
  ports: {},
  types: {},
  issues: NO_ISSUES,
  catalogue: { ops: new Map(), versions: new Map() },
  readOnly: true,
  diff: null,
  live: null,
});

export const useEditorContext = () => useContext(EditorContext);

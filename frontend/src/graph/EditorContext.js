// What every node component reads besides its own data: its ports, their types, the
// validator's issues, and whether the editor is read-only.
import { createContext, useContext } from "react";
import { NO_ISSUES } from "./lib/issues.js";

export const EditorContext = createContext({
  ports: {},
  types: {},
  issues: NO_ISSUES,
  catalogue: { ops: new Map(), versions: new Map() },
  readOnly: true,
});

export const useEditorContext = () => useContext(EditorContext);

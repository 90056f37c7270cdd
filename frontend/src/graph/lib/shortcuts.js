// The editor's keyboard shortcuts: what the help overlay lists and which key does what.

/** The editor's keyboard shortcuts; `keys` is what the help overlay prints. */
export const SHORTCUTS = [
  { keys: "Ctrl+Z", action: "undo", label: "Undo" },
  { keys: "Ctrl+Shift+Z / Ctrl+Y", action: "redo", label: "Redo" },
  { keys: "Ctrl+C", action: "copy", label: "Copy the selected nodes" },
  { keys: "Ctrl+X", action: "cut", label: "Cut the selected nodes" },
  { keys: "Ctrl+V", action: "paste", label: "Paste" },
  { keys: "Ctrl+A", action: "selectAll", label: "Select everything" },
  { keys: "Delete / Backspace", action: "delete", label: "Delete the selection" },
  { keys: "L", action: "layout", label: "Auto-layout, left to right" },
  { keys: "F", action: "fit", label: "Fit the graph in view" },
  { keys: "Ctrl+S", action: "save", label: "Save as a new version" },
  { keys: "?", action: "help", label: "Show or hide this help" },
  { keys: "Escape", action: "escape", label: "Close a dialog or the diff, clear the selection" },
  { keys: "Shift+drag", action: null, label: "Select with a box" },
  { keys: "Ctrl+click", action: null, label: "Add to the selection" },
];

export function shortcutAction(event) {
  const mod = event.ctrlKey || event.metaKey;
  const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
  if (mod && key === "z") return event.shiftKey ? "redo" : "undo";
  if (mod && key === "y") return "redo";
  if (mod && key === "c") return "copy";
  if (mod && key === "x") return "cut";
  if (mod && key === "v") return "paste";
  if (mod && key === "a") return "selectAll";
  if (mod && key === "s") return "save";
  if (mod || event.altKey) return null;
  if (key === "Delete" || key === "Backspace") return "delete";
  if (key === "?") return "help";
  if (key === "Escape") return "escape";
  if (key === "l") return "layout";
  if (key === "f") return "fit";
  return null;
}

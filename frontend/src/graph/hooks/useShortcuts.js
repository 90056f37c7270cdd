import { useEffect, useRef } from "react";
import { shortcutAction } from "../lib/shortcuts.js";

const typing = (target) => target instanceof HTMLElement
  && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));

/** Calls `handlers[action]` for a shortcut pressed outside a form field; Escape always. */
export function useShortcuts(handlers) {
  const ref = useRef(handlers);
  ref.current = handlers;
  useEffect(() => {
    function onKeyDown(event) {
      const action = shortcutAction(event);
      if (!action || (typing(event.target) && action !== "escape" && action !== "save")) return;
      const handler = ref.current[action];
      if (!handler) return;
      event.preventDefault();
      handler(event);
    }
    window.addEventListener("keydown", onKeyDown);
    return () => window.removeEventListener("keydown", onKeyDown);
  }, []);
}

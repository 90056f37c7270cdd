// Undo and redo over snapshots of the document: a pure value, one step per committed edit.

export const HISTORY_LIMIT = 100;

/** @template T @param {T} present @returns {{past: T[], present: T, future: T[]}} */
export function historyInit(present) {
  return { past: [], present, future: [] };
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

/** `next` becomes the present; an unchanged snapshot records nothing, and redo is lost. */
export function historyPush(history, next, limit = HISTORY_LIMIT) {
  if (same(history.present, next)) return history;
  return { past: [...history.past, history.present].slice(-limit), present: next, future: [] };
}

export function historyUndo(history) {
  if (!history.past.length) return history;
  return {
    past: history.past.slice(0, -1),
    present: history.past[history.past.length - 1],
    future: [history.present, ...history.future],
  };
}

export function historyRedo(history) {
  if (!history.future.length) return history;
  return { past: [...history.past, history.present], present: history.future[0], future: history.future.slice(1) };
}

export const canUndo = (history) => history.past.length > 0;
export const canRedo = (history) => history.future.length > 0;

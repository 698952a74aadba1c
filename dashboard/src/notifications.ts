// The unread-notification count shown on the bell: polled, and refreshed at once when
// a screen reports a change (marked read, a decision that notifies).

import { useEffect, useState } from "preact/hooks";

import { api } from "./api";

const POLL_MS = 20_000;
const listeners = new Set<() => void>();

/** Tells the bell to count again now. */
export function notificationsChanged() {
  listeners.forEach((l) => l());
}

/** The number of unread notifications (null until known), and the last error. */
export function useUnreadCount(): { count: number | null; error: unknown } {
  const [count, setCount] = useState<number | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    let live = true;
    const load = () =>
      api
        .notifications(true)
        .then((list) => {
          if (!live) return;
          setCount(list.length);
          setError(null);
        })
        .catch((e) => live && setError(e));
    load();
    const timer = window.setInterval(load, POLL_MS);
    listeners.add(load);
    return () => {
      live = false;
      window.clearInterval(timer);
      listeners.delete(load);
    };
  }, []);
  return { count, error };
}

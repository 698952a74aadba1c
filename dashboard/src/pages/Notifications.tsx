// Notifications (everyone): transfers received, requests decided, requests to decide…
// newest first, with "mark all read" (the bell in the sidebar counts the unread ones).

import { useCallback, useEffect, useState } from "preact/hooks";

import { api, type Notification } from "../api";
import { ErrorBanner, Loading } from "../components/ui";
import { formatTime } from "../format";
import { notificationsChanged } from "../notifications";
import type { ScreenProps } from "../screens";

export function Notifications(_props: ScreenProps) {
  const [list, setList] = useState<Notification[] | null>(null);
  const [unreadOnly, setUnreadOnly] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  const load = useCallback(() => {
    api
      .notifications(unreadOnly)
      .then((l) => {
        setList(l);
        setError(null);
      })
      .catch(setError);
  }, [unreadOnly]);
  useEffect(load, [load]);

  const markAll = async () => {
    setBusy(true);
    setError(null);
    try {
      await api.markRead();
      notificationsChanged();
      load();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  const markOne = async (n: Notification) => {
    try {
      await api.markRead([n.id]);
      notificationsChanged();
      load();
    } catch (e) {
      setError(e);
    }
  };

  const unread = list?.filter((n) => !n.read).length ?? 0;
  return (
    <div class="page" data-testid="page-notifications">
      <header class="page-head">
        <h1>Notifications</h1>
        <div class="row">
          <label class="check">
            <input type="checkbox" checked={unreadOnly} onChange={(e) => setUnreadOnly((e.target as HTMLInputElement).checked)} data-testid="unread-only" />
            Unread only
          </label>
          <button type="button" class="primary" onClick={markAll} disabled={busy || unread === 0} data-testid="mark-all-read">
            Mark all read
          </button>
        </div>
      </header>
      <ErrorBanner error={error} />
      {!list && !error && <Loading />}
      {list && (
        <div class="card">
          {list.length === 0 && <p class="muted">{unreadOnly ? "No unread notifications." : "No notifications yet."}</p>}
          <ul class="notifications" data-testid="notification-list">
            {list.map((n) => (
              <li key={n.id} class={n.read ? "read" : "unread"} data-testid={`notification-${n.id}`}>
                <div>
                  <span class="badge">{n.kind.replace(/_/g, " ")}</span> <span class="message">{n.message}</span>
                  <div class="hint">{formatTime(n.created_at)} UTC</div>
                </div>
                {!n.read && (
                  <button type="button" class="small" onClick={() => markOne(n)} data-testid="mark-read">
                    Mark read
                  </button>
                )}
              </li>
            ))}
          </ul>
        </div>
      )}
    </div>
  );
}

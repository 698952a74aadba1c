// Small shared pieces: error banner, cards, dialogs, confirmations, form fields, the
// key shown once.

import type { ComponentChildren } from "preact";
import { useState } from "preact/hooks";

import { ApiError } from "../api";

/** An error the user must see (never swallowed). */
export function ErrorBanner({ error }: { error: unknown }) {
  if (!error) return null;
  const message =
    error instanceof ApiError
      ? `${error.message}${error.status ? ` (HTTP ${error.status})` : ""}`
      : error instanceof Error
        ? error.message
        : String(error);
  return (
    <div class="banner error" role="alert">
      {message}
    </div>
  );
}

export function Stat({ label, value, hint, testId }: { label: string; value: string; hint?: string; testId?: string }) {
  return (
    <div class="card stat" data-testid={testId}>
      <div class="stat-label">{label}</div>
      <div class="stat-value">{value}</div>
      {hint && <div class="stat-hint">{hint}</div>}
    </div>
  );
}

export function Panel({ title, children, actions, testId }: { title: string; children: ComponentChildren; actions?: ComponentChildren; testId?: string }) {
  return (
    <section class="card panel" data-testid={testId}>
      <header class="panel-head">
        <h2>{title}</h2>
        {actions}
      </header>
      {children}
    </section>
  );
}

export function Dialog({ title, onClose, children }: { title: string; onClose: () => void; children: ComponentChildren }) {
  return (
    <div class="backdrop" onClick={(e) => e.target === e.currentTarget && onClose()}>
      <div class="dialog card" role="dialog" aria-modal="true" aria-label={title}>
        <header class="panel-head">
          <h2>{title}</h2>
          <button type="button" class="ghost" aria-label="Close" onClick={onClose}>
            ✕
          </button>
        </header>
        {children}
      </div>
    </div>
  );
}

/** A freshly issued API key: shown this once, with a copy button. */
export function KeyOnce({ apiKey, who, onDone }: { apiKey: string; who: string; onDone: () => void }) {
  const [copied, setCopied] = useState<"no" | "yes" | "failed">("no");
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(apiKey);
      setCopied("yes");
    } catch {
      setCopied("failed");
    }
  };
  return (
    <Dialog title="API key — shown once" onClose={onDone}>
      <p>
        This is the API key of <strong>{who}</strong>. Copy it now and give it to them: it cannot be shown again
        (only replaced by rotating the key).
      </p>
      <div class="key-row">
        <code class="api-key" data-testid="new-api-key">
          {apiKey}
        </code>
        <button type="button" onClick={copy} data-testid="copy-key">
          {copied === "yes" ? "Copied" : "Copy"}
        </button>
      </div>
      {copied === "failed" && <p class="hint">The browser refused the clipboard: select the key and copy it by hand.</p>}
      <div class="actions">
        <button type="button" class="primary" onClick={onDone}>
          I have saved the key
        </button>
      </div>
    </Dialog>
  );
}

export function Loading() {
  return <p class="muted">Loading…</p>;
}

/** Asks before an action; the action's error is shown in the dialog. */
export function Confirm({ title, message, action, danger, onCancel, onConfirm }: { title: string; message: string; action: string; danger?: boolean; onCancel: () => void; onConfirm: () => Promise<void> }) {
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  return (
    <Dialog title={title} onClose={onCancel}>
      <p>{message}</p>
      <ErrorBanner error={error} />
      <div class="actions">
        <button type="button" onClick={onCancel}>
          Cancel
        </button>
        <button
          type="button"
          class={danger ? "danger" : "primary"}
          disabled={busy}
          data-testid="confirm"
          onClick={async () => {
            setBusy(true);
            try {
              await onConfirm();
            } catch (e) {
              setError(e);
            } finally {
              setBusy(false);
            }
          }}
        >
          {action}
        </button>
      </div>
    </Dialog>
  );
}

/** A form field's message (from the form's own checks or the server). */
export function FieldError({ message, testId }: { message?: string; testId: string }) {
  if (!message) return null;
  return (
    <span class="field-error" role="alert" data-testid={testId}>
      {message}
    </span>
  );
}

/** Approve or deny something, with an optional note for the requester. */
export function DecisionDialog({
  title,
  approve,
  summary,
  onCancel,
  onDecide,
}: {
  title: string;
  approve: boolean;
  summary: ComponentChildren;
  onCancel: () => void;
  onDecide: (note: string | undefined) => Promise<void>;
}) {
  const [note, setNote] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const tooLong = note.trim().length > 500;
  const submit = async (e: Event) => {
    e.preventDefault();
    if (tooLong) return;
    setBusy(true);
    setError(null);
    try {
      await onDecide(note.trim() || undefined);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Dialog title={title} onClose={onCancel}>
      <form class="form" onSubmit={submit} noValidate data-testid="decision-form">
        <div>{summary}</div>
        <label>
          Note for the requester (optional)
          <textarea name="note" rows={3} value={note} onInput={(e) => setNote((e.target as HTMLTextAreaElement).value)} aria-invalid={tooLong} />
          <FieldError message={tooLong ? "At most 500 characters." : undefined} testId="error-note" />
        </label>
        <ErrorBanner error={error} />
        <div class="actions">
          <button type="button" onClick={onCancel}>
            Cancel
          </button>
          <button type="submit" class={approve ? "primary" : "danger"} disabled={busy} data-testid="decision-submit">
            {busy ? "Saving…" : approve ? "Approve" : "Deny"}
          </button>
        </div>
      </form>
    </Dialog>
  );
}

/** A status word as a coloured badge. */
export function StatusBadge({ status }: { status: string }) {
  const label = status.replace(/_/g, " ");
  return <span class={`badge status-${status}`}>{label.charAt(0).toUpperCase() + label.slice(1)}</span>;
}

/** A used/size bar with its numbers. */
export function UsageBar({ used, size, testId, wide }: { used: number; size: number; testId?: string; wide?: boolean }) {
  const pct = size > 0 ? Math.min(100, (used / size) * 100) : 0;
  return (
    <div class={`meter ${wide ? "wide" : "small"}`} title={`${pct.toFixed(0)}% used`} role="meter" aria-valuemin={0} aria-valuemax={100} aria-valuenow={Math.round(pct)} data-testid={testId}>
      <div class={pct >= 90 ? "high" : ""} style={{ width: `${pct}%` }} />
    </div>
  );
}

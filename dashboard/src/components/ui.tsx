// Small shared pieces: error banner, cards, dialogs, the key shown once.

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

export function Panel({ title, children, actions }: { title: string; children: ComponentChildren; actions?: ComponentChildren }) {
  return (
    <section class="card panel">
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

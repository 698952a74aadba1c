import { useState } from "preact/hooks";

import { api, type SessionUser } from "../api";
import { ErrorBanner } from "../components/ui";
import type { Theme } from "../theme";

interface Props {
  notice?: string;
  theme: Theme;
  onToggleTheme: () => void;
  onLoggedIn: (user: SessionUser) => void;
}

/** Log-in with an API key; the answer sets an HttpOnly session cookie. */
export function Login({ notice, theme, onToggleTheme, onLoggedIn }: Props) {
  const [key, setKey] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    const trimmed = key.trim();
    if (!trimmed.startsWith("tp-") || trimmed.length < 10) {
      setError(new Error("An Alfred API key starts with tp- (for example tp-AbC…). Check the key and try again."));
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const { user } = await api.login(trimmed);
      setKey("");
      onLoggedIn(user);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <div class="center">
      <form class="card narrow login" onSubmit={submit} data-testid="login-form">
        <div class="brand">
          <img src={`${import.meta.env.BASE_URL}favicon.svg`} alt="" width={32} height={32} />
          <h1>Alfred</h1>
        </div>
        <p class="muted">AI credit governance. Log in with your API key.</p>
        {notice && <div class="banner info">{notice}</div>}
        <label>
          API key
          <input
            type="password"
            name="api_key"
            autocomplete="off"
            placeholder="tp-…"
            value={key}
            onInput={(e) => setKey((e.target as HTMLInputElement).value)}
            data-testid="api-key-input"
            required
          />
        </label>
        <ErrorBanner error={error} />
        <button type="submit" class="primary" disabled={busy} data-testid="login-submit">
          {busy ? "Logging in…" : "Log in"}
        </button>
        <button type="button" class="ghost" onClick={onToggleTheme} data-testid="theme-toggle">
          {theme === "dark" ? "☀ Light mode" : "☾ Dark mode"}
        </button>
      </form>
    </div>
  );
}

// The shell: session check, log-in, sidebar and the current screen.

import { useCallback, useEffect, useState } from "preact/hooks";

import { api, onUnauthorized, type SessionUser } from "./api";
import { ErrorBanner } from "./components/ui";
import { Login } from "./pages/Login";
import { currentPath, linkProps, navigate, usePath } from "./router";
import { findScreen, homePath, SCREENS } from "./screens";
import { useTheme } from "./theme";

type SessionState =
  | { kind: "checking" }
  | { kind: "anonymous"; notice?: string }
  | { kind: "signed-in"; user: SessionUser }
  | { kind: "failed"; error: unknown };

export function App() {
  const [session, setSession] = useState<SessionState>({ kind: "checking" });
  const [theme, toggleTheme] = useTheme();
  const path = usePath();

  const check = useCallback(() => {
    setSession({ kind: "checking" });
    api
      .session()
      .then((user) => setSession({ kind: "signed-in", user }))
      .catch((error) =>
        setSession(error?.status === 401 ? { kind: "anonymous" } : { kind: "failed", error }),
      );
  }, []);

  useEffect(check, [check]);
  useEffect(
    () =>
      onUnauthorized(() =>
        setSession({ kind: "anonymous", notice: "Your session has ended (expired or the key was revoked). Please log in again." }),
      ),
    [],
  );

  if (session.kind === "checking") return <div class="center muted">Loading…</div>;
  if (session.kind === "failed")
    return (
      <div class="center">
        <div class="card narrow">
          <h1>Alfred</h1>
          <ErrorBanner error={session.error} />
          <button type="button" onClick={check}>
            Retry
          </button>
        </div>
      </div>
    );
  if (session.kind === "anonymous")
    return (
      <Login
        notice={session.notice}
        theme={theme}
        onToggleTheme={toggleTheme}
        onLoggedIn={(user) => {
          setSession({ kind: "signed-in", user });
          if (currentPath() === "/login" || currentPath() === "/") navigate(homePath(user), true);
        }}
      />
    );

  const user = session.user;
  const logout = async () => {
    try {
      await api.logout();
    } finally {
      setSession({ kind: "anonymous" });
      navigate("/", true);
    }
  };
  const effectivePath = path === "/" && !user.is_admin ? "/me" : path;
  const screen = findScreen(effectivePath);
  const allowed = screen && (!screen.adminOnly || user.is_admin);
  const visible = SCREENS.filter((s) => !s.adminOnly || user.is_admin);

  return (
    <div class="layout">
      <aside class="sidebar">
        <div class="brand">
          <img src={`${import.meta.env.BASE_URL}favicon.svg`} alt="" width={28} height={28} />
          <span>Alfred</span>
        </div>
        <nav aria-label="Main">
          {visible.map((s) => (
            <a key={s.path} {...linkProps(s.path)} class={screen?.path === s.path ? "active" : ""} data-testid={`nav-${s.path.slice(1) || "overview"}`}>
              {s.label}
            </a>
          ))}
        </nav>
        <div class="sidebar-foot">
          <div class="who" data-testid="who">
            <strong>{user.name}</strong>
            <span>{user.email}</span>
            <span class="badge">{user.is_admin ? "Admin" : "User"}</span>
          </div>
          <button type="button" class="ghost" onClick={toggleTheme} data-testid="theme-toggle" aria-pressed={theme === "dark"}>
            {theme === "dark" ? "☀ Light mode" : "☾ Dark mode"}
          </button>
          <button type="button" class="ghost" onClick={logout} data-testid="logout">
            Log out
          </button>
        </div>
      </aside>
      <main class="content">
        {!screen && (
          <div class="card" data-testid="not-found">
            <h1>Page not found</h1>
            <p>
              <a {...linkProps(homePath(user))}>Back to the dashboard</a>
            </p>
          </div>
        )}
        {screen && !allowed && (
          <div class="card" data-testid="forbidden">
            <h1>Admins only</h1>
            <p>
              {screen.label} is available to administrators. Your account ({user.email}) is not an admin account.
            </p>
            <p>
              <a {...linkProps(homePath(user))}>Go to my usage</a>
            </p>
          </div>
        )}
        {screen && allowed && <screen.component user={user} theme={theme} />}
      </main>
    </div>
  );
}

// The shell: session check, log-in, sidebar and the current screen.

import { useCallback, useEffect, useState } from "preact/hooks";

import { api, onUnauthorized, type Profile } from "./api";
import { ErrorBanner } from "./components/ui";
import { useUnreadCount } from "./notifications";
import { Login } from "./pages/Login";
import { currentPath, linkProps, navigate, usePath } from "./router";
import { accessLabel, allows, findScreen, homePath, SCREENS } from "./screens";
import { type Theme, useTheme } from "./theme";

type SessionState =
  | { kind: "checking" }
  | { kind: "anonymous"; notice?: string }
  | { kind: "signed-in"; user: Profile }
  | { kind: "failed"; error: unknown };

export function App() {
  const [session, setSession] = useState<SessionState>({ kind: "checking" });
  const [theme, toggleTheme] = useTheme();
  const path = usePath();

  // The session says who is signed in; the profile adds the roles (team admin) that
  // decide which screens they see.
  const check = useCallback(() => {
    setSession({ kind: "checking" });
    api
      .session()
      .then(() => api.profile())
      .then((user) => setSession({ kind: "signed-in", user }))
      .catch((error) =>
        setSession(error?.status === 401 ? { kind: "anonymous" } : { kind: "failed", error }),
      );
  }, []);

  useEffect(check, [check]);
  // Roles change (an admin appoints a team admin): refresh them on every navigation.
  const signedIn = session.kind === "signed-in";
  useEffect(() => {
    if (!signedIn) return;
    api
      .profile()
      .then((user) => setSession((s) => (s.kind === "signed-in" ? { kind: "signed-in", user } : s)))
      .catch(() => {
        // A 401 is handled by onUnauthorized; anything else keeps the known profile.
      });
  }, [path, signedIn]);
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
          if (currentPath() === "/login" || currentPath() === "/") navigate(homePath(user), true);
          check();
        }}
      />
    );

  return <Shell user={session.user} path={path} theme={theme} onToggleTheme={toggleTheme} onLoggedOut={() => setSession({ kind: "anonymous" })} />;
}

function Shell({ user, path, theme, onToggleTheme, onLoggedOut }: { user: Profile; path: string; theme: Theme; onToggleTheme: () => void; onLoggedOut: () => void }) {
  const unread = useUnreadCount();
  const logout = async () => {
    try {
      await api.logout();
    } finally {
      onLoggedOut();
      navigate("/", true);
    }
  };
  const effectivePath = path === "/" && !user.is_admin ? "/me" : path;
  const found = findScreen(effectivePath);
  const screen = found?.screen;
  const allowed = screen && allows(screen.access, user);
  const visible = SCREENS.filter((s) => allows(s.access, user));
  const role = user.is_admin ? "Admin" : user.is_team_admin ? "Team admin" : "User";

  return (
    <div class="layout">
      <aside class="sidebar">
        <div class="brand">
          <img src={`${import.meta.env.BASE_URL}favicon.svg`} alt="" width={28} height={28} />
          <span>Alfred</span>
          <a
            {...linkProps("/notifications")}
            class="bell"
            data-testid="bell"
            title={unread.error ? "Notifications could not be loaded" : `${unread.count ?? 0} unread notifications`}
            aria-label={`Notifications: ${unread.count ?? 0} unread`}
          >
            <svg viewBox="0 0 24 24" width="20" height="20" aria-hidden="true" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round">
              <path d="M18 8a6 6 0 0 0-12 0c0 7-3 9-3 9h18s-3-2-3-9" />
              <path d="M13.73 21a2 2 0 0 1-3.46 0" />
            </svg>
            {!!unread.count && (
              <span class="bell-count" data-testid="bell-count">
                {unread.count >= 100 ? "99+" : unread.count}
              </span>
            )}
            {!!unread.error && <span class="bell-count error" title="Notifications could not be loaded">!</span>}
          </a>
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
            <span class="badge">{role}</span>
          </div>
          <button type="button" class="ghost" onClick={onToggleTheme} data-testid="theme-toggle" aria-pressed={theme === "dark"}>
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
            <h1>{screen.access === "admins" ? "Admins only" : "Admins and team admins only"}</h1>
            <p>
              {screen.label} is available to {accessLabel[screen.access]}. Your account ({user.email}) is {role === "User" ? "a user account" : `a ${role.toLowerCase()} account`}.
            </p>
            <p>
              <a {...linkProps(homePath(user))}>Go to my usage</a>
            </p>
          </div>
        )}
        {screen && allowed && <screen.component key={screen.path} user={user} theme={theme} subpath={found.subpath} />}
      </main>
    </div>
  );
}

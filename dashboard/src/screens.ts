// The dashboard's screens and who may see them. The sidebar and the router both read
// this table, so a new screen (teams, credit reallocation, approvals — once the quota
// engine serves them) is one entry here plus its page component.

import type { FunctionComponent } from "preact";

import type { SessionUser } from "./api";
import { MyUsage } from "./pages/MyUsage";
import { Overview } from "./pages/Overview";
import { UserGuide } from "./pages/UserGuide";
import { Users } from "./pages/Users";
import type { Theme } from "./theme";

export interface ScreenProps {
  user: SessionUser;
  theme: Theme;
}

export interface Screen {
  path: string;
  /** Sidebar label (and page title). */
  label: string;
  /** Only admins see it in the sidebar; others reaching it get a refusal. */
  adminOnly: boolean;
  component: FunctionComponent<ScreenProps>;
}

export const SCREENS: Screen[] = [
  { path: "/", label: "Overview", adminOnly: true, component: Overview },
  { path: "/users", label: "Manage Users", adminOnly: true, component: Users },
  { path: "/me", label: "My Usage", adminOnly: false, component: MyUsage },
  { path: "/guide", label: "User Guide", adminOnly: false, component: UserGuide },
];

/** Where a user lands: admins on the overview, everyone else on their own usage. */
export const homePath = (user: SessionUser) => (user.is_admin ? "/" : "/me");

export function findScreen(path: string): Screen | undefined {
  const clean = path.length > 1 ? path.replace(/\/+$/, "") : path;
  return SCREENS.find((s) => s.path === clean);
}

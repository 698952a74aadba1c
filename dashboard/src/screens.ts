// The dashboard's screens and who may see them. The sidebar and the router both read
// this table, so a new screen is one entry here plus its page component.

import type { FunctionComponent } from "preact";

import type { Profile } from "./api";
import { Approvals } from "./pages/Approvals";
import { MyUsage } from "./pages/MyUsage";
import { Notifications } from "./pages/Notifications";
import { Overview } from "./pages/Overview";
import { QuotaRequests } from "./pages/QuotaRequests";
import { Teams } from "./pages/Teams";
import { Transfers } from "./pages/Transfers";
import { UserGuide } from "./pages/UserGuide";
import { Users } from "./pages/Users";
import type { Theme } from "./theme";

/** Who may open a screen: everyone, admins and team admins (approvers), or admins. */
export type Access = "everyone" | "approvers" | "admins";

export interface ScreenProps {
  user: Profile;
  theme: Theme;
  /** The rest of the path below the screen's own (`/teams/7` → `7`), or "". */
  subpath: string;
}

export interface Screen {
  path: string;
  /** Sidebar label (and page title). */
  label: string;
  access: Access;
  component: FunctionComponent<ScreenProps>;
}

export const SCREENS: Screen[] = [
  { path: "/", label: "Overview", access: "admins", component: Overview },
  { path: "/users", label: "Manage Users", access: "admins", component: Users },
  { path: "/teams", label: "Teams", access: "approvers", component: Teams },
  { path: "/approvals", label: "Approvals", access: "approvers", component: Approvals },
  { path: "/me", label: "My Usage", access: "everyone", component: MyUsage },
  { path: "/transfers", label: "Credit Reallocation", access: "everyone", component: Transfers },
  { path: "/requests", label: "Request Quota", access: "everyone", component: QuotaRequests },
  { path: "/notifications", label: "Notifications", access: "everyone", component: Notifications },
  { path: "/guide", label: "User Guide", access: "everyone", component: UserGuide },
];

/** Whether `user` may open a screen with this access. The API enforces the same rules
 * (403); this only keeps the navigation honest. */
export function allows(access: Access, user: Profile): boolean {
  if (access === "everyone") return true;
  if (access === "approvers") return user.is_admin || user.is_team_admin;
  return user.is_admin;
}

export const accessLabel: Record<Access, string> = {
  everyone: "everyone",
  approvers: "administrators and team admins",
  admins: "administrators",
};

/** Where a user lands: admins on the overview, everyone else on their own usage. */
export const homePath = (user: { is_admin: boolean }) => (user.is_admin ? "/" : "/me");

/** The screen serving `path` (its own path or one below it) and the rest of the path. */
export function findScreen(path: string): { screen: Screen; subpath: string } | undefined {
  const clean = path.length > 1 ? path.replace(/\/+$/, "") : path;
  for (const screen of SCREENS) {
    if (clean === screen.path) return { screen, subpath: "" };
    if (screen.path !== "/" && clean.startsWith(`${screen.path}/`)) return { screen, subpath: clean.slice(screen.path.length + 1) };
  }
  return undefined;
}

// The control plane's HTTP API, as the dashboard uses it. Every call goes to the same
// origin (Envoy at :8000 routes /v1/auth, /v1/admin and /v1/users to the control plane)
// and carries the HttpOnly session cookie; the API key itself is only ever sent once,
// to log in.

/** A failed call: the status and the server's message (and the offending field). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code?: string,
    readonly field?: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

type Listener = () => void;
const unauthorizedListeners = new Set<Listener>();

/** Called whenever the API answers 401 (session expired or revoked). */
export function onUnauthorized(listener: Listener): () => void {
  unauthorizedListeners.add(listener);
  return () => unauthorizedListeners.delete(listener);
}

async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  const { status, text } = await send(method, path, body);
  if (status === 204) return undefined as T;
  try {
    return (text ? JSON.parse(text) : undefined) as T;
  } catch {
    throw new ApiError(status, `The server answered ${status} with something that is not JSON.`);
  }
}

/** A call whose answer is text (the CSV export). */
async function requestText(method: string, path: string): Promise<string> {
  return (await send(method, path)).text;
}

/** Sends a call; a non-2xx answer becomes an ApiError with the server's message. */
async function send(method: string, path: string, body?: unknown): Promise<{ status: number; text: string }> {
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      credentials: "same-origin",
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, `The server cannot be reached (${e instanceof Error ? e.message : String(e)}).`);
  }
  const text = await response.text();
  if (!response.ok) {
    let json: unknown = undefined;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      // Not JSON (e.g. a proxy's error page): reported below with the status.
    }
    const detail = (json as { error?: { message?: string; code?: string; field?: string } } | undefined)?.error;
    const error = new ApiError(
      response.status,
      detail?.message ?? `Request failed: ${response.status} ${response.statusText}`,
      detail?.code,
      detail?.field,
    );
    if (response.status === 401 && path !== "/v1/auth/login") {
      unauthorizedListeners.forEach((l) => l());
    }
    throw error;
  }
  return { status: response.status, text };
}

export type UserStatus = "active" | "on_vacation" | "suspended";

export interface SessionUser {
  id: number;
  name: string;
  email: string;
  is_admin: boolean;
  status: UserStatus;
}

export interface User extends SessionUser {
  personal_quota: number;
  overdraft_enabled: boolean;
  created_at: string;
  updated_at: string;
  used_tokens: number;
  held_tokens: number;
  available_quota: number;
  team_pool_available: number;
  overdraft_used: number;
  debt: number;
}

/** A created user (or a rotated key): the key is in this answer only. */
export interface CreatedUser extends SessionUser {
  personal_quota: number;
  created_at: string;
  api_key: string;
}

/** `GET /v1/users/me`: the caller with their teams and roles. */
export interface Profile extends SessionUser {
  is_team_admin: boolean;
  overdraft_enabled: boolean;
  created_at: string;
  teams: { id: number; name: string; is_team_admin: boolean }[];
}

export interface PoolShare {
  team_id: number;
  pool_balance: number;
  pool_size: number;
  active_members: number;
  member_cap: number;
  daily_cap: number;
  drawn_this_period: number;
  drawn_today: number;
  available: number;
}

export interface Quota {
  personal_quota: number;
  used_tokens: number;
  available_quota: number;
  team_pool_available: number;
  held_tokens: number;
  /** Personal credit a transfer may send now (not held by a lease). */
  transferable: number;
  overdraft_used: number;
  overdraft_available: number;
  debt: number;
  team_pools: PoolShare[];
  period_start: string;
  period_end: string | null;
}

export interface Member {
  user_id: number;
  email: string;
  name: string;
  status: UserStatus;
  is_admin: boolean;
  joined_at: string;
  drawn_this_period: number;
}

export interface Team {
  id: number;
  name: string;
  description: string;
  common_pool: number;
  created_at: string;
  updated_at: string;
  pool_balance: number;
  pool_size: number;
  pool_used: number;
  active_members: number;
  member_count: number;
  /** Only in `GET /v1/admin/teams/{id}` and answers to changes. */
  members?: Member[];
}

export interface NewTeam {
  name: string;
  description: string;
  common_pool: number;
}

export type TransferStatus = "completed" | "pending" | "denied" | "expired";

export interface Transfer {
  id: number;
  sender_id: number;
  sender_email: string;
  recipient_id: number;
  recipient_email: string;
  amount: number;
  reason: string;
  status: TransferStatus;
  created_at: string;
  expires_at: string | null;
  decided_at: string | null;
  decided_by: number | null;
  decision_note: string | null;
}

/** Filters of the transfer history (`GET /v1/admin/transfers`). */
export interface TransferFilter {
  from?: string;
  to?: string;
  user_id?: number;
  min_amount?: number;
  max_amount?: number;
  status?: TransferStatus;
  limit?: number;
}

export type RequestStatus = "pending" | "approved" | "denied" | "expired";

export interface QuotaRequest {
  id: number;
  user_id: number;
  amount: number;
  reason: string;
  status: RequestStatus;
  created_at: string;
  expires_at: string;
  decided_at: string | null;
  decided_by: number | null;
  decision_note: string | null;
}

export interface Notification {
  id: number;
  kind: string;
  message: string;
  data: unknown;
  created_at: string;
  read: boolean;
}

export interface UsageRow {
  key: string | null;
  name?: string;
  email?: string;
  requests: number;
  input_tokens: number;
  output_tokens: number;
  total_tokens: number;
  cost_usd: number;
  unpriced_requests: number;
  successful_requests: number;
  failed_requests: number;
  estimated_requests: number;
  cached_tokens: number;
  failed_tokens: number;
  estimated_tokens: number;
}

export interface UsageReport {
  from: string;
  to: string;
  group_by: GroupBy;
  rows: UsageRow[];
}

export interface Summary {
  from: string;
  to: string;
  users: number;
  active_users: number;
  requests: number;
  input_tokens: number;
  output_tokens: number;
  total_tokens: number;
  cost_usd: number;
  unpriced_requests: number;
}

export type GroupBy = "day" | "model" | "user" | "project";

export interface DateRange {
  from: string;
  to: string;
}

export interface NewUser {
  email: string;
  name: string;
  personal_quota: number;
  is_admin: boolean;
}

export type UserChanges = Partial<Pick<User, "name" | "email" | "personal_quota" | "status" | "is_admin" | "overdraft_enabled">>;

function query(params: Record<string, string | number | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== "") q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : "";
}

/** Whose analytics: the organisation (admins) or the caller. */
export type Audience = "org" | "me";

const analyticsBase = (audience: Audience) =>
  audience === "org" ? "/v1/admin/analytics" : "/v1/users/me/analytics";

export const api = {
  login: (apiKey: string) =>
    request<{ user: SessionUser; expires_at: string }>("POST", "/v1/auth/login", { api_key: apiKey }),
  logout: () => request<void>("POST", "/v1/auth/logout"),
  session: () => request<SessionUser>("GET", "/v1/auth/session"),

  myQuota: () => request<Quota>("GET", "/v1/users/me/quota"),

  listUsers: () => request<User[]>("GET", "/v1/admin/users"),
  createUser: (user: NewUser) => request<CreatedUser>("POST", "/v1/admin/users", user),
  updateUser: (id: number, changes: UserChanges) => request<User>("PUT", `/v1/admin/users/${id}`, changes),
  deleteUser: (id: number) => request<{ id: number; deleted: boolean }>("DELETE", `/v1/admin/users/${id}`),
  rotateKey: (id: number) => request<CreatedUser>("POST", `/v1/admin/users/${id}/rotate-key`),

  profile: () => request<Profile>("GET", "/v1/users/me"),
  startVacation: () => request<Quota>("POST", "/v1/users/me/vacation"),
  endVacation: () => request<Quota>("DELETE", "/v1/users/me/vacation"),

  listTeams: () => request<Team[]>("GET", "/v1/admin/teams"),
  getTeam: (id: number) => request<Team>("GET", `/v1/admin/teams/${id}`),
  createTeam: (team: NewTeam) => request<Team>("POST", "/v1/admin/teams", team),
  updateTeam: (id: number, changes: Partial<NewTeam>) => request<Team>("PUT", `/v1/admin/teams/${id}`, changes),
  deleteTeam: (id: number) => request<{ id: number; deleted: boolean }>("DELETE", `/v1/admin/teams/${id}`),
  /** Adds a member, or changes a member's team-admin flag. */
  setMember: (teamId: number, userId: number, isAdmin: boolean) =>
    request<Team>("POST", `/v1/admin/teams/${teamId}/members/${userId}${query({ is_admin: String(isAdmin) })}`),
  removeMember: (teamId: number, userId: number) => request<Team>("DELETE", `/v1/admin/teams/${teamId}/members/${userId}`),

  transfer: (t: { recipient_email: string; amount: number; reason: string }) =>
    request<Transfer>("POST", "/v1/users/me/transfer", t),
  myTransfers: () => request<Transfer[]>("GET", "/v1/users/me/transfers"),
  transfers: (f: TransferFilter) => request<Transfer[]>("GET", `/v1/admin/transfers${query({ ...f })}`),
  /** The filtered history as the server's CSV (`format=csv`). */
  transfersCsv: (f: TransferFilter) => requestText("GET", `/v1/admin/transfers${query({ ...f, format: "csv" })}`),
  decideTransfer: (id: number, approve: boolean, note?: string) =>
    request<Transfer>("POST", `/v1/admin/transfers/${id}/${approve ? "approve" : "deny"}`, note ? { note } : {}),

  requestQuota: (r: { amount: number; reason: string }) => request<QuotaRequest>("POST", "/v1/users/me/quota-requests", r),
  myQuotaRequests: () => request<QuotaRequest[]>("GET", "/v1/users/me/quota-requests"),
  quotaRequests: (status?: RequestStatus) => request<QuotaRequest[]>("GET", `/v1/admin/quota-requests${query({ status })}`),
  decideQuotaRequest: (id: number, approve: boolean, note?: string) =>
    request<QuotaRequest>("POST", `/v1/admin/quota-requests/${id}/${approve ? "approve" : "deny"}`, note ? { note } : {}),

  notifications: (unread: boolean) =>
    request<Notification[]>("GET", `/v1/users/me/notifications${query({ unread: unread ? "true" : undefined, limit: 100 })}`),
  markRead: (ids?: number[]) => request<{ marked: number }>("POST", "/v1/users/me/notifications/read", ids ? { ids } : {}),

  summary: (audience: Audience, range: DateRange) =>
    request<Summary>("GET", `${analyticsBase(audience)}/summary${query({ ...range })}`),
  usage: (audience: Audience, groupBy: GroupBy, range: DateRange, limit?: number) =>
    request<UsageReport>("GET", `${analyticsBase(audience)}/usage${query({ group_by: groupBy, ...range, limit })}`),
};

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
  if (response.status === 204) return undefined as T;
  const text = await response.text();
  let json: unknown = undefined;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    // Not JSON (e.g. a proxy's error page): reported below with the status.
  }
  if (!response.ok) {
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
  return json as T;
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
  created_at: string;
  updated_at: string;
  used_tokens: number;
  held_tokens: number;
  available_quota: number;
}

/** A created user (or a rotated key): the key is in this answer only. */
export interface CreatedUser extends SessionUser {
  personal_quota: number;
  created_at: string;
  api_key: string;
}

export interface Quota {
  personal_quota: number;
  used_tokens: number;
  available_quota: number;
  team_pool_available: number;
  held_tokens?: number;
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

export type UserChanges = Partial<Pick<User, "name" | "email" | "personal_quota" | "status" | "is_admin">>;

function query(params: Record<string, string | number | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) q.set(k, String(v));
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

  summary: (audience: Audience, range: DateRange) =>
    request<Summary>("GET", `${analyticsBase(audience)}/summary${query({ ...range })}`),
  usage: (audience: Audience, groupBy: GroupBy, range: DateRange, limit?: number) =>
    request<UsageReport>("GET", `${analyticsBase(audience)}/usage${query({ group_by: groupBy, ...range, limit })}`),
};

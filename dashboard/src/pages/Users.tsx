// User management (admins): list with quota and usage; create (key shown once), edit
// (name, email, quota, status — vacation, suspended —, admin flag, critical overdraft),
// quick status change in the row, rotate key, delete.

import { useCallback, useEffect, useState } from "preact/hooks";

import { ApiError, api, type CreatedUser, type User, type UserChanges, type UserStatus } from "../api";
import { Confirm, Dialog, ErrorBanner, KeyOnce, Loading } from "../components/ui";
import { formatInt, statusLabel } from "../format";
import type { ScreenProps } from "../screens";

interface FormValues {
  name: string;
  email: string;
  quota: string;
  status: UserStatus;
  isAdmin: boolean;
  overdraft: boolean;
}

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

/** The form's problems by field; empty when it can be sent. */
function validate(v: FormValues): Partial<Record<keyof FormValues, string>> {
  const problems: Partial<Record<keyof FormValues, string>> = {};
  if (!v.name.trim()) problems.name = "Enter a name.";
  else if (v.name.trim().length > 200) problems.name = "At most 200 characters.";
  if (!EMAIL.test(v.email.trim())) problems.email = "Enter a valid email address (name@company.com).";
  if (!/^\d+$/.test(v.quota.trim())) problems.quota = "Enter a whole number of tokens (0 or more).";
  else if (Number(v.quota) > Number.MAX_SAFE_INTEGER) problems.quota = "That number is too large.";
  return problems;
}

function UserForm({
  title,
  initial,
  showStatus,
  onCancel,
  onSubmit,
}: {
  title: string;
  initial: FormValues;
  showStatus: boolean;
  onCancel: () => void;
  onSubmit: (v: FormValues) => Promise<void>;
}) {
  const [values, setValues] = useState(initial);
  const [problems, setProblems] = useState<ReturnType<typeof validate>>({});
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const set = <K extends keyof FormValues>(k: K, v: FormValues[K]) => setValues((old) => ({ ...old, [k]: v }));

  const submit = async (e: Event) => {
    e.preventDefault();
    const found = validate(values);
    setProblems(found);
    if (Object.keys(found).length) return;
    setBusy(true);
    setError(null);
    try {
      await onSubmit(values);
    } catch (err) {
      // A field the server names is shown at that field, the rest above the buttons.
      if (err instanceof ApiError && err.field && ["name", "email", "personal_quota", "status", "is_admin", "overdraft_enabled"].includes(err.field)) {
        const field = err.field === "personal_quota" ? "quota" : err.field === "is_admin" ? "isAdmin" : err.field === "overdraft_enabled" ? "overdraft" : (err.field as keyof FormValues);
        setProblems({ [field]: err.message });
      }
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  const fieldError = (k: keyof FormValues) =>
    problems[k] && (
      <span class="field-error" role="alert" data-testid={`error-${k}`}>
        {problems[k]}
      </span>
    );

  return (
    <Dialog title={title} onClose={onCancel}>
      <form onSubmit={submit} class="form" noValidate data-testid="user-form">
        <label>
          Name
          <input name="name" value={values.name} onInput={(e) => set("name", (e.target as HTMLInputElement).value)} aria-invalid={!!problems.name} />
          {fieldError("name")}
        </label>
        <label>
          Email
          <input name="email" type="email" value={values.email} onInput={(e) => set("email", (e.target as HTMLInputElement).value)} aria-invalid={!!problems.email} />
          {fieldError("email")}
        </label>
        <label>
          Personal quota (tokens per period)
          <input name="quota" inputMode="numeric" value={values.quota} onInput={(e) => set("quota", (e.target as HTMLInputElement).value)} aria-invalid={!!problems.quota} />
          {fieldError("quota")}
        </label>
        {showStatus && (
          <label>
            Status
            <select name="status" value={values.status} onChange={(e) => set("status", (e.target as HTMLSelectElement).value as UserStatus)}>
              <option value="active">Active</option>
              <option value="on_vacation">On vacation (shares quota with the team)</option>
              <option value="suspended">Suspended (cannot make requests)</option>
            </select>
          </label>
        )}
        {showStatus && (
          <label class="check">
            <input name="overdraft_enabled" type="checkbox" checked={values.overdraft} onChange={(e) => set("overdraft", (e.target as HTMLInputElement).checked)} />
            Critical overdraft (critical-priority requests may overdraw the quota, up to the configured limit)
          </label>
        )}
        <label class="check">
          <input name="is_admin" type="checkbox" checked={values.isAdmin} onChange={(e) => set("isAdmin", (e.target as HTMLInputElement).checked)} />
          Administrator (may manage users and see organisation analytics)
        </label>
        <ErrorBanner error={error} />
        <div class="actions">
          <button type="button" onClick={onCancel}>
            Cancel
          </button>
          <button type="submit" class="primary" disabled={busy} data-testid="user-form-submit">
            {busy ? "Saving…" : "Save"}
          </button>
        </div>
      </form>
    </Dialog>
  );
}

type Modal =
  | { kind: "none" }
  | { kind: "create" }
  | { kind: "edit"; user: User }
  | { kind: "rotate"; user: User }
  | { kind: "delete"; user: User }
  | { kind: "key"; created: CreatedUser };

export function Users({ user: me }: ScreenProps) {
  const [users, setUsers] = useState<User[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [modal, setModal] = useState<Modal>({ kind: "none" });
  const [filter, setFilter] = useState("");
  const close = () => setModal({ kind: "none" });

  const load = useCallback(() => {
    api
      .listUsers()
      .then((list) => {
        setUsers(list);
        setError(null);
      })
      .catch(setError);
  }, []);
  useEffect(load, [load]);

  const create = async (v: FormValues) => {
    const created = await api.createUser({ name: v.name.trim(), email: v.email.trim(), personal_quota: Number(v.quota), is_admin: v.isAdmin });
    setModal({ kind: "key", created });
    load();
  };
  const edit = (u: User) => async (v: FormValues) => {
    const changes: UserChanges = {};
    if (v.name.trim() !== u.name) changes.name = v.name.trim();
    if (v.email.trim().toLowerCase() !== u.email) changes.email = v.email.trim();
    if (Number(v.quota) !== u.personal_quota) changes.personal_quota = Number(v.quota);
    if (v.status !== u.status) changes.status = v.status;
    if (v.isAdmin !== u.is_admin) changes.is_admin = v.isAdmin;
    if (v.overdraft !== u.overdraft_enabled) changes.overdraft_enabled = v.overdraft;
    if (Object.keys(changes).length) await api.updateUser(u.id, changes);
    close();
    load();
  };

  // The status select in a row: vacation releases the user's unused quota to their
  // team pools, active brings back what was not used, suspended refuses every request.
  const setStatus = async (u: User, status: UserStatus) => {
    setError(null);
    try {
      await api.updateUser(u.id, { status });
      load();
    } catch (e) {
      setError(e);
      // The select shows the chosen value; put the stored one back.
      setUsers((list) => (list ? [...list] : list));
    }
  };

  const needle = filter.trim().toLowerCase();
  const shown = (users ?? []).filter((u) => !needle || u.name.toLowerCase().includes(needle) || u.email.includes(needle));

  return (
    <div class="page" data-testid="page-users">
      <header class="page-head">
        <h1>Manage Users</h1>
        <div class="row">
          <input class="search" placeholder="Filter by name or email" value={filter} onInput={(e) => setFilter((e.target as HTMLInputElement).value)} aria-label="Filter users" />
          <button type="button" class="primary" onClick={() => setModal({ kind: "create" })} data-testid="add-user">
            Add User
          </button>
        </div>
      </header>
      <ErrorBanner error={error} />
      {!users && !error && <Loading />}
      {users && (
        <div class="card">
          <table class="table" data-testid="users-table">
            <thead>
              <tr>
                <th>Name</th>
                <th>Email</th>
                <th>Status</th>
                <th>Role</th>
                <th>Overdraft</th>
                <th class="num">Quota</th>
                <th class="num">Used</th>
                <th class="num">Available</th>
                <th>Usage</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {shown.map((u) => {
                const pct = u.personal_quota > 0 ? Math.min(100, (u.used_tokens / u.personal_quota) * 100) : 0;
                return (
                  <tr key={u.id} data-testid={`user-row-${u.email}`}>
                    <td>{u.name}</td>
                    <td>{u.email}</td>
                    <td>
                      <select
                        class={`status-select status-${u.status}`}
                        value={u.status}
                        aria-label={`Status of ${u.email}`}
                        data-testid="status-select"
                        disabled={u.id === me.id}
                        title={u.id === me.id ? "Change your own status from My Usage" : undefined}
                        onChange={(e) => setStatus(u, (e.target as HTMLSelectElement).value as UserStatus)}
                      >
                        {Object.entries(statusLabel).map(([value, label]) => (
                          <option key={value} value={value}>
                            {label}
                          </option>
                        ))}
                      </select>
                    </td>
                    <td>{u.is_admin ? <span class="badge">Admin</span> : "User"}</td>
                    <td data-testid="overdraft">{u.overdraft_enabled ? <span class="badge">On</span> : <span class="muted">Off</span>}</td>
                    <td class="num">{formatInt(u.personal_quota)}</td>
                    <td class="num" data-testid="used">{formatInt(u.used_tokens)}</td>
                    <td class="num">{formatInt(u.available_quota)}</td>
                    <td>
                      <div class="meter small" title={`${pct.toFixed(0)}% used`}>
                        <div style={{ width: `${pct}%` }} />
                      </div>
                    </td>
                    <td class="row-actions">
                      <button type="button" class="small" onClick={() => setModal({ kind: "edit", user: u })} data-testid="edit">
                        Edit
                      </button>
                      <button type="button" class="small" onClick={() => setModal({ kind: "rotate", user: u })} data-testid="rotate">
                        Rotate key
                      </button>
                      <button type="button" class="small danger" disabled={u.id === me.id} title={u.id === me.id ? "You cannot delete your own account" : undefined} onClick={() => setModal({ kind: "delete", user: u })} data-testid="delete">
                        Delete
                      </button>
                    </td>
                  </tr>
                );
              })}
              {shown.length === 0 && (
                <tr>
                  <td colSpan={10} class="muted">
                    No users match.
                  </td>
                </tr>
              )}
            </tbody>
          </table>
        </div>
      )}

      {modal.kind === "create" && (
        <UserForm title="Add User" initial={{ name: "", email: "", quota: "1000", status: "active", isAdmin: false, overdraft: false }} showStatus={false} onCancel={close} onSubmit={create} />
      )}
      {modal.kind === "edit" && (
        <UserForm
          title={`Edit ${modal.user.name}`}
          initial={{ name: modal.user.name, email: modal.user.email, quota: String(modal.user.personal_quota), status: modal.user.status, isAdmin: modal.user.is_admin, overdraft: modal.user.overdraft_enabled }}
          showStatus
          onCancel={close}
          onSubmit={edit(modal.user)}
        />
      )}
      {modal.kind === "rotate" && (
        <Confirm
          title="Rotate API key"
          message={`${modal.user.name}'s current key stops working at once (and their dashboard sessions end). A new key is shown once.`}
          action="Rotate key"
          onCancel={close}
          onConfirm={async () => {
            const created = await api.rotateKey(modal.user.id);
            setModal({ kind: "key", created });
          }}
        />
      )}
      {modal.kind === "delete" && (
        <Confirm
          title="Delete user"
          message={`Delete ${modal.user.name} (${modal.user.email})? Their keys are revoked at once; their usage history is kept.`}
          action="Delete"
          danger
          onCancel={close}
          onConfirm={async () => {
            await api.deleteUser(modal.user.id);
            close();
            load();
          }}
        />
      )}
      {modal.kind === "key" && <KeyOnce apiKey={modal.created.api_key} who={`${modal.created.name} <${modal.created.email}>`} onDone={close} />}
    </div>
  );
}

// Teams (admins: every team; team admins: their own). The list shows each pool's use
// this period; a team's page (`/teams/{id}`) lists its members with what they drew
// from the pool. Admins create, edit and delete teams, add members and appoint team
// admins; team admins remove their non-admin members (adding is for admins only: a
// team admin who could add anyone could then approve that person's requests).

import { useCallback, useEffect, useState } from "preact/hooks";

import { ApiError, api, type Member, type Team, type User } from "../api";
import { Confirm, Dialog, ErrorBanner, FieldError, Loading, Panel, Stat, StatusBadge, UsageBar } from "../components/ui";
import { formatInt } from "../format";
import { linkProps, navigate } from "../router";
import type { ScreenProps } from "../screens";

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

interface TeamValues {
  name: string;
  description: string;
  pool: string;
}

type TeamProblems = Partial<Record<keyof TeamValues, string>>;

function validateTeam(v: TeamValues): TeamProblems {
  const problems: TeamProblems = {};
  if (!v.name.trim()) problems.name = "Enter a team name.";
  else if (v.name.trim().length > 200) problems.name = "At most 200 characters.";
  if (v.description.length > 2000) problems.description = "At most 2,000 characters.";
  if (!/^\d+$/.test(v.pool.trim())) problems.pool = "Enter the pool as a whole number of tokens (0 or more).";
  else if (Number(v.pool) > Number.MAX_SAFE_INTEGER) problems.pool = "That number is too large.";
  return problems;
}

/** The server's field names → the form's. */
const TEAM_FIELDS: Record<string, keyof TeamValues> = { name: "name", description: "description", common_pool: "pool" };

function TeamForm({ title, initial, onCancel, onSubmit }: { title: string; initial: TeamValues; onCancel: () => void; onSubmit: (v: TeamValues) => Promise<void> }) {
  const [values, setValues] = useState(initial);
  const [problems, setProblems] = useState<TeamProblems>({});
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const set = (k: keyof TeamValues, v: string) => setValues((old) => ({ ...old, [k]: v }));

  const submit = async (e: Event) => {
    e.preventDefault();
    const found = validateTeam(values);
    setProblems(found);
    if (Object.keys(found).length) return;
    setBusy(true);
    setError(null);
    try {
      await onSubmit(values);
    } catch (err) {
      if (err instanceof ApiError && err.field && TEAM_FIELDS[err.field]) setProblems({ [TEAM_FIELDS[err.field]]: err.message });
      // A taken name is a 409 (older servers name no field): it belongs at the name.
      else if (err instanceof ApiError && err.code === "team_name_taken") setProblems({ name: err.message });
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <Dialog title={title} onClose={onCancel}>
      <form class="form" onSubmit={submit} noValidate data-testid="team-form">
        <label>
          Name
          <input name="name" value={values.name} onInput={(e) => set("name", (e.target as HTMLInputElement).value)} aria-invalid={!!problems.name} />
          <FieldError message={problems.name} testId="error-team-name" />
        </label>
        <label>
          Description
          <textarea name="description" rows={2} value={values.description} onInput={(e) => set("description", (e.target as HTMLTextAreaElement).value)} aria-invalid={!!problems.description} />
          <FieldError message={problems.description} testId="error-team-description" />
        </label>
        <label>
          Pool (tokens per period, shared by the active members)
          <input name="pool" inputMode="numeric" value={values.pool} onInput={(e) => set("pool", (e.target as HTMLInputElement).value)} aria-invalid={!!problems.pool} />
          <FieldError message={problems.pool} testId="error-team-pool" />
        </label>
        <ErrorBanner error={error} />
        <div class="actions">
          <button type="button" onClick={onCancel}>
            Cancel
          </button>
          <button type="submit" class="primary" disabled={busy} data-testid="team-form-submit">
            {busy ? "Saving…" : "Save"}
          </button>
        </div>
      </form>
    </Dialog>
  );
}

export function Teams(props: ScreenProps) {
  if (props.subpath) {
    const id = Number(props.subpath);
    if (!Number.isSafeInteger(id) || id <= 0)
      return (
        <div class="card" data-testid="not-found">
          <h1>Team not found</h1>
          <a {...linkProps("/teams")}>All teams</a>
        </div>
      );
    return <TeamDetail {...props} teamId={id} />;
  }
  return <TeamList {...props} />;
}

function TeamList({ user }: ScreenProps) {
  const [teams, setTeams] = useState<Team[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [creating, setCreating] = useState(false);

  const load = useCallback(() => {
    api
      .listTeams()
      .then((list) => {
        setTeams(list);
        setError(null);
      })
      .catch(setError);
  }, []);
  useEffect(load, [load]);

  const create = async (v: TeamValues) => {
    const team = await api.createTeam({ name: v.name.trim(), description: v.description.trim(), common_pool: Number(v.pool) });
    setCreating(false);
    navigate(`/teams/${team.id}`);
  };

  return (
    <div class="page" data-testid="page-teams">
      <header class="page-head">
        <h1>Teams</h1>
        {user.is_admin && (
          <button type="button" class="primary" onClick={() => setCreating(true)} data-testid="add-team">
            Add Team
          </button>
        )}
      </header>
      {!user.is_admin && <p class="hint">The teams you administer.</p>}
      <ErrorBanner error={error} />
      {!teams && !error && <Loading />}
      {teams && (
        <div class="card">
          <table class="table" data-testid="teams-table">
            <thead>
              <tr>
                <th>Team</th>
                <th class="num">Members</th>
                <th class="num">Pool per period</th>
                <th class="num">Used / size this period</th>
                <th>Pool usage</th>
              </tr>
            </thead>
            <tbody>
              {teams.map((t) => (
                <tr key={t.id} data-testid={`team-row-${t.name}`}>
                  <td>
                    <a {...linkProps(`/teams/${t.id}`)} data-testid="open-team">
                      {t.name}
                    </a>
                    {t.description && <div class="hint">{t.description}</div>}
                  </td>
                  <td class="num" data-testid="members">
                    {formatInt(t.member_count)} <span class="muted">({formatInt(t.active_members)} active)</span>
                  </td>
                  <td class="num">{formatInt(t.common_pool)}</td>
                  <td class="num" data-testid="pool-used">
                    {formatInt(t.pool_used)} / {formatInt(t.pool_size)}
                  </td>
                  <td>
                    <UsageBar used={t.pool_used} size={t.pool_size} />
                  </td>
                </tr>
              ))}
              {teams.length === 0 && (
                <tr>
                  <td colSpan={5} class="muted">
                    No teams yet.
                  </td>
                </tr>
              )}
            </tbody>
          </table>
        </div>
      )}
      {creating && <TeamForm title="Add Team" initial={{ name: "", description: "", pool: "10000" }} onCancel={() => setCreating(false)} onSubmit={create} />}
    </div>
  );
}

type Modal = { kind: "none" } | { kind: "edit" } | { kind: "delete" } | { kind: "remove"; member: Member };

function TeamDetail({ user, teamId }: ScreenProps & { teamId: number }) {
  const [team, setTeam] = useState<Team | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [actionError, setActionError] = useState<unknown>(null);
  const [modal, setModal] = useState<Modal>({ kind: "none" });
  const close = () => setModal({ kind: "none" });

  const load = useCallback(() => {
    api
      .getTeam(teamId)
      .then((t) => {
        setTeam(t);
        setError(null);
      })
      .catch(setError);
  }, [teamId]);
  useEffect(load, [load]);

  const toggleAdmin = async (m: Member) => {
    setActionError(null);
    try {
      setTeam(await api.setMember(teamId, m.user_id, !m.is_admin));
    } catch (e) {
      setActionError(e);
    }
  };

  if (error)
    return (
      <div class="page" data-testid="page-team">
        <a {...linkProps("/teams")}>← All teams</a>
        <ErrorBanner error={error} />
      </div>
    );
  if (!team) return <Loading />;
  const members = team.members ?? [];

  return (
    <div class="page" data-testid="page-team">
      <a {...linkProps("/teams")}>← All teams</a>
      <header class="page-head">
        <div>
          <h1 data-testid="team-name">{team.name}</h1>
          {team.description && <p class="hint">{team.description}</p>}
        </div>
        {user.is_admin && (
          <div class="row">
            <button type="button" onClick={() => setModal({ kind: "edit" })} data-testid="edit-team">
              Edit team / pool
            </button>
            <button type="button" class="danger" onClick={() => setModal({ kind: "delete" })} data-testid="delete-team">
              Delete team
            </button>
          </div>
        )}
      </header>
      <div class="stats">
        <Stat label="Pool per period" value={formatInt(team.common_pool)} hint="allocated each period" testId="team-pool" />
        <Stat label="Pool size this period" value={formatInt(team.pool_size)} hint="allocation plus credit released by members on vacation" testId="team-pool-size" />
        <Stat label="Used" value={formatInt(team.pool_used)} hint={`${formatInt(team.pool_balance)} left`} testId="team-pool-used" />
        <Stat label="Members" value={formatInt(team.member_count)} hint={`${formatInt(team.active_members)} active share the pool`} testId="team-members" />
      </div>
      <UsageBar used={team.pool_used} size={team.pool_size} testId="team-pool-bar" wide />

      <Panel title="Members" testId="members-panel">
        <ErrorBanner error={actionError} />
        <table class="table" data-testid="members-table">
          <thead>
            <tr>
              <th>Name</th>
              <th>Email</th>
              <th>Status</th>
              <th>Role</th>
              <th class="num">Drawn from pool this period</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {members.map((m) => {
              // Team admins may remove only non-admin members; admins anyone.
              const mayRemove = user.is_admin || !m.is_admin;
              return (
                <tr key={m.user_id} data-testid={`member-row-${m.email}`}>
                  <td>{m.name}</td>
                  <td>{m.email}</td>
                  <td>
                    <StatusBadge status={m.status} />
                  </td>
                  <td>{m.is_admin ? <span class="badge" data-testid="team-admin-badge">Team admin</span> : "Member"}</td>
                  <td class="num" data-testid="drawn">
                    {formatInt(m.drawn_this_period)}
                  </td>
                  <td class="row-actions">
                    {user.is_admin && (
                      <button type="button" class="small" onClick={() => toggleAdmin(m)} data-testid="toggle-team-admin">
                        {m.is_admin ? "Remove team admin" : "Make team admin"}
                      </button>
                    )}
                    {mayRemove && (
                      <button type="button" class="small danger" onClick={() => setModal({ kind: "remove", member: m })} data-testid="remove-member">
                        Remove
                      </button>
                    )}
                  </td>
                </tr>
              );
            })}
            {members.length === 0 && (
              <tr>
                <td colSpan={6} class="muted">
                  No members yet.
                </td>
              </tr>
            )}
          </tbody>
        </table>
        {user.is_admin && <AddMember team={team} onAdded={setTeam} />}
      </Panel>

      {modal.kind === "edit" && (
        <TeamForm
          title={`Edit ${team.name}`}
          initial={{ name: team.name, description: team.description, pool: String(team.common_pool) }}
          onCancel={close}
          onSubmit={async (v) => {
            const changes: Partial<{ name: string; description: string; common_pool: number }> = {};
            if (v.name.trim() !== team.name) changes.name = v.name.trim();
            if (v.description.trim() !== team.description) changes.description = v.description.trim();
            if (Number(v.pool) !== team.common_pool) changes.common_pool = Number(v.pool);
            if (Object.keys(changes).length) setTeam(await api.updateTeam(team.id, changes));
            close();
          }}
        />
      )}
      {modal.kind === "delete" && (
        <Confirm
          title="Delete team"
          message={`Delete ${team.name}? Its ${team.member_count} members leave the team and its pool is closed; their personal quotas are not touched.`}
          action="Delete team"
          danger
          onCancel={close}
          onConfirm={async () => {
            await api.deleteTeam(team.id);
            close();
            navigate("/teams");
          }}
        />
      )}
      {modal.kind === "remove" && (
        <Confirm
          title="Remove member"
          message={`Remove ${modal.member.name} (${modal.member.email}) from ${team.name}? They stop drawing from its pool.`}
          action="Remove"
          danger
          onCancel={close}
          onConfirm={async () => {
            setTeam(await api.removeMember(team.id, modal.member.user_id));
            close();
          }}
        />
      )}
    </div>
  );
}

/** Adds a member (admins): a user picked by email from the users list. */
function AddMember({ team, onAdded }: { team: Team; onAdded: (t: Team) => void }) {
  const [users, setUsers] = useState<User[] | null>(null);
  const [email, setEmail] = useState("");
  const [asAdmin, setAsAdmin] = useState(false);
  const [problem, setProblem] = useState<string | undefined>();
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    api.listUsers().then(setUsers).catch(setError);
  }, []);

  const memberIds = new Set((team.members ?? []).map((m) => m.user_id));
  const candidates = (users ?? []).filter((u) => !memberIds.has(u.id));

  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    const raw = email.trim().toLowerCase();
    if (!EMAIL.test(raw)) return setProblem("Pick a user's email from the list.");
    const found = (users ?? []).find((u) => u.email === raw);
    if (!found) return setProblem(`No user has the email ${raw}.`);
    if (memberIds.has(found.id)) return setProblem(`${found.email} is already a member.`);
    setProblem(undefined);
    setBusy(true);
    try {
      onAdded(await api.setMember(team.id, found.id, asAdmin));
      setEmail("");
      setAsAdmin(false);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form class="form inline-form" onSubmit={submit} noValidate data-testid="add-member-form">
      <h3>Add a member</h3>
      <div class="row wrap">
        <label class="grow">
          User (email)
          <input name="member" list="member-candidates" inputMode="email" placeholder="name@company.com" value={email} onInput={(e) => setEmail((e.target as HTMLInputElement).value)} aria-invalid={!!problem} />
          <datalist id="member-candidates">
            {candidates.map((u) => (
              <option key={u.id} value={u.email}>
                {u.name}
              </option>
            ))}
          </datalist>
          <FieldError message={problem} testId="error-member" />
        </label>
        <label class="check">
          <input type="checkbox" name="member_is_admin" checked={asAdmin} onChange={(e) => setAsAdmin((e.target as HTMLInputElement).checked)} />
          Team admin
        </label>
        <button type="submit" class="primary" disabled={busy} data-testid="add-member">
          {busy ? "Adding…" : "Add member"}
        </button>
      </div>
      <ErrorBanner error={error} />
    </form>
  );
}

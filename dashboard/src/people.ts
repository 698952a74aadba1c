// The people an approver deals with, by id: every user for admins (the users list),
// the members of their teams for team admins (who may not list users). Used to show
// names in the approvals inbox and to filter the transfer history by user.

import { api, type Profile } from "./api";

export interface Person {
  id: number;
  name: string;
  email: string;
}

export async function loadPeople(user: Profile): Promise<Map<number, Person>> {
  const people = new Map<number, Person>();
  if (user.is_admin) {
    for (const u of await api.listUsers()) people.set(u.id, { id: u.id, name: u.name, email: u.email });
  } else if (user.is_team_admin) {
    const teams = await api.listTeams();
    const details = await Promise.all(teams.map((t) => api.getTeam(t.id)));
    for (const t of details) for (const m of t.members ?? []) people.set(m.user_id, { id: m.user_id, name: m.name, email: m.email });
  }
  people.set(user.id, { id: user.id, name: user.name, email: user.email });
  return people;
}

/** "Name <email>", or "user #id" when the person is not known here. */
export function personLabel(people: Map<number, Person> | null, id: number): string {
  const p = people?.get(id);
  return p ? `${p.name} <${p.email}>` : `user #${id}`;
}

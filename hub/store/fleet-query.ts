// The fleet as the console pages through it: filters and counts in the
// database, a page of full rows at a time, so 10,000 agents cost one light
// scan (ids and presence columns) and one read of the page's rows. SQL is the
// common subset of sqlite and PostgreSQL; text matching lowercases both sides
// (PostgreSQL's LIKE is case-sensitive, sqlite's is not).
//
// Whether an agent is connected is not in the database on one replica (its
// socket is, in memory), so the caller passes `connected` and the state
// filter and counts are applied to the light scan.
import { inList, type Db, type Param } from './db.js';
import { AGENT_SELECT, toAgent, type AgentRecord, type AgentRow, type TenantScope } from './fleet.js';

export const AGENT_STATES = ['connected', 'offline', 'revoked'] as const;
export type AgentState = (typeof AGENT_STATES)[number];

export interface AgentFilter {
  /** The tenants the caller may see (null: all). */
  scope: TenantScope;
  tenant?: string;
  /** `key` (has the label) or `key=value`. */
  label?: { key: string; value: string | null };
  state?: AgentState;
  /** Runs (reported) a release of this stack. */
  stack?: string;
  /** Agent version, exactly. */
  version?: string;
  /** Part of the name, id or host facts, any case. */
  text?: string;
}

export interface AgentPage {
  /** Agents matching every filter. */
  total: number;
  /** Of the agents matching every filter but the state: how many are in each state. */
  counts: Record<AgentState, number> & { all: number };
  agents: AgentRecord[];
}

/** A light row: enough to tell the state. */
export interface PresenceRow {
  id: string;
  replica: string | null;
  leaseUntil: number | null;
}

/** `%text%` for LIKE, with LIKE's own wildcards taken literally (ESCAPE '\'). */
export function likeContaining(text: string): string {
  return `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

export class FleetQuery {
  constructor(private readonly db: Db) {}

  async page(f: AgentFilter, connected: (a: PresenceRow) => boolean, offset: number, limit: number): Promise<AgentPage> {
    const where: string[] = ['1 = 1'];
    const params: Param[] = [];
    if (f.scope !== null) {
      where.push(`t.name IN ${inList(f.scope.length)}`);
      params.push(...f.scope);
    }
    if (f.tenant !== undefined) {
      where.push('t.name = ?');
      params.push(f.tenant);
    }
    if (f.label) {
      // Labels are stored as JSON.stringify writes them: "key":"value", no spaces.
      where.push("a.labels LIKE ? ESCAPE '\\'");
      params.push(likeContaining(f.label.value === null ? `${JSON.stringify(f.label.key)}:` : `${JSON.stringify(f.label.key)}:${JSON.stringify(f.label.value)}`));
    }
    if (f.stack !== undefined) {
      where.push("a.status LIKE ? ESCAPE '\\'");
      params.push(likeContaining(`"stack":${JSON.stringify(f.stack)}`));
    }
    if (f.version !== undefined) {
      where.push('a.agent_version = ?');
      params.push(f.version);
    }
    if (f.text) {
      where.push("(lower(a.name) LIKE ? ESCAPE '\\' OR lower(a.id) LIKE ? ESCAPE '\\' OR lower(a.facts) LIKE ? ESCAPE '\\')");
      const p = likeContaining(f.text.toLowerCase());
      params.push(p, p, p);
    }
    const light = await this.db.values<[string, string | null, number | string | null, number | string | null]>(
      `SELECT a.id, a.replica, rp.lease_until, a.revoked_at FROM agents a JOIN tenants t ON t.id = a.tenant_id LEFT JOIN hub_replicas rp ON rp.id = a.replica WHERE ${where.join(' AND ')} ORDER BY t.name, a.name, a.id`,
      params,
    );
    const counts = { all: light.length, connected: 0, offline: 0, revoked: 0 };
    const picked: string[] = [];
    for (const [id, replica, leaseUntil, revokedAt] of light) {
      const state: AgentState = revokedAt !== null ? 'revoked' : connected({ id, replica, leaseUntil: leaseUntil === null ? null : Number(leaseUntil) }) ? 'connected' : 'offline';
      counts[state]++;
      if (f.state === undefined || f.state === state) picked.push(id);
    }
    const ids = picked.slice(offset, offset + limit);
    const rows = ids.length ? await this.db.all<AgentRow>(`${AGENT_SELECT} WHERE a.id IN ${inList(ids.length)}`, ids) : [];
    const byId = new Map(rows.map((r) => [r.id, toAgent(r)]));
    return { total: picked.length, counts, agents: ids.map((id) => byId.get(id)).filter((a): a is AgentRecord => a !== undefined) };
  }

  /** What each live agent of a tenant last reported running (the stacks page). */
  async statuses(tenant: string): Promise<{ id: string; name: string; status: unknown; statusAt: number | null }[]> {
    const rows = await this.db.all<{ id: string; name: string; status: string; status_at: number | string | null }>(
      'SELECT a.id, a.name, a.status, a.status_at FROM agents a JOIN tenants t ON t.id = a.tenant_id WHERE t.name = ? AND a.revoked_at IS NULL AND a.status IS NOT NULL ORDER BY a.name, a.id',
      [tenant],
    );
    return rows.map((r) => ({ id: r.id, name: r.name, status: JSON.parse(r.status) as unknown, statusAt: r.status_at === null ? null : Number(r.status_at) }));
  }

  /** Distinct agent versions among the scope's agents (the fleet filter's choices). */
  async versions(scope: TenantScope): Promise<string[]> {
    const s = scope === null ? { sql: '', params: [] as string[] } : { sql: ` AND t.name IN ${inList(scope.length)}`, params: [...scope] };
    const rows = await this.db.all<{ v: string }>(
      `SELECT DISTINCT a.agent_version AS v FROM agents a JOIN tenants t ON t.id = a.tenant_id WHERE a.agent_version IS NOT NULL${s.sql} ORDER BY a.agent_version`,
      s.params,
    );
    return rows.map((r) => r.v);
  }
}

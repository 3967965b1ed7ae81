// From the API's views to what a page shows: pure functions, so templates
// only lay out what is decided here (state words, health, what runs).
import type { ReleaseStatus, ServiceStatus } from '../../shared/protocol.js';
import type { agentView } from '../http/views.js';

export type AgentView = Awaited<ReturnType<typeof agentView>>;
export type Health = 'healthy' | 'unhealthy' | 'applying' | 'unknown';

export interface Running {
  releases: ReleaseStatus[];
  services: ServiceStatus[];
  reportedAt: string | null;
}

export function runningOf(v: AgentView): Running | null {
  const r = v.running as (Partial<Running> & { reportedAt?: string | null }) | null;
  if (!r) return null;
  return { releases: r.releases ?? [], services: r.services ?? [], reportedAt: r.reportedAt ?? null };
}

/** One word for what an agent's last report says about what it runs. */
export function healthOf(r: Running | null): Health {
  if (!r || (!r.releases.length && !r.services.length)) return 'unknown';
  if (r.releases.some((x) => x.state === 'failed' || x.state === 'rolled-back') || r.services.some((s) => s.health === 'unhealthy' || s.status === 'exited' || s.status === 'dead' || s.status === 'restarting')) return 'unhealthy';
  if (r.releases.some((x) => x.state === 'applying') || r.services.some((s) => s.health === 'starting' || s.status === 'created')) return 'applying';
  return 'healthy';
}

export type AgentState = 'connected' | 'offline' | 'revoked';

export function stateOf(v: AgentView): AgentState {
  return v.status === 'revoked' ? 'revoked' : v.status === 'connected' ? 'connected' : 'offline';
}

interface Facts {
  host?: { hostname?: string; platform?: string; release?: string; arch?: string; cpus?: number; memoryBytes?: number };
  engine?: { version?: string; os?: string; containersRunning?: number; containers?: number } | { error?: { code?: string; message?: string } };
}

export interface AgentRow {
  id: string;
  name: string;
  tenant: string;
  state: AgentState;
  /** Since when it is offline (its last contact), or connected. */
  since: string | null;
  version: string | null;
  host: string | null;
  os: string | null;
  docker: string | null;
  labels: [string, string][];
  runs: { stack: string; version: string; state: ReleaseStatus['state'] }[];
  health: Health;
  alarms: number;
}

export function agentRow(v: AgentView): AgentRow {
  const f = (v.facts ?? {}) as Facts;
  const engine = f.engine && 'version' in f.engine ? f.engine : null;
  const engineError = f.engine && 'error' in f.engine ? f.engine.error : null;
  const r = runningOf(v);
  const state = stateOf(v);
  return {
    id: v.id,
    name: v.name,
    tenant: v.tenant,
    state,
    since: state === 'connected' ? v.connectedAt : state === 'revoked' ? v.revokedAt : v.lastSeenAt,
    version: v.agentVersion,
    host: f.host?.hostname ?? null,
    os: f.host ? [f.host.platform, f.host.release, f.host.arch].filter(Boolean).join(' ') : null,
    docker: engine?.version ? `Docker ${engine.version}` : engineError ? `engine: ${engineError.code ?? 'error'}` : null,
    labels: Object.entries(v.labels).sort(([a], [b]) => a.localeCompare(b)),
    runs: (r?.releases ?? []).map((x) => ({ stack: x.stack, version: x.runningVersion ?? x.version, state: x.state })),
    health: healthOf(r),
    alarms: Array.isArray(v.alarms) ? v.alarms.length : 0,
  };
}

/** Labels typed as "env=prod zone=dmz" (set) and "old other" (remove). */
export function parseLabelEdit(set: string, remove: string): { set: Record<string, string>; remove: string[] } {
  const out: Record<string, string> = {};
  for (const w of set.split(/[\s,]+/).filter(Boolean)) {
    const eq = w.indexOf('=');
    out[eq < 0 ? w : w.slice(0, eq)] = eq < 0 ? '' : w.slice(eq + 1);
  }
  return { set: out, remove: remove.split(/[\s,]+/).filter(Boolean) };
}

export interface AuditRow {
  index: number;
  at: string;
  action: string;
  outcome: string;
  actor: string;
  target: string | null;
  details: string;
  surface: string;
}

/** An audit entry as the pages list it: who by name where the personal value is still kept. */
export function auditRow(e: { index: number; at: number | string; action: string; outcome: string; surface: string; actor: { kind: string; id: string | null }; target: { type: string; id: string } | null; details: Record<string, unknown> }, personal: Record<string, string | null> | undefined): AuditRow {
  const name = personal?.operator ?? null;
  return {
    index: e.index,
    at: new Date(Number(e.at)).toISOString(),
    action: e.action,
    outcome: e.outcome,
    actor: name ?? (e.actor.id ? `${e.actor.kind} ${e.actor.id}` : e.actor.kind),
    target: e.target ? `${e.target.type} ${e.target.id}` : null,
    details: Object.entries(e.details)
      .map(([k, v]) => `${k}=${v === null ? 'null' : String(v)}`)
      .join(' '),
    surface: e.surface,
  };
}

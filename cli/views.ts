// What the hub API returns (only the fields the CLI reads), and how each
// resource is shown to a person. --json bypasses these and prints the API's
// JSON as it came.
import { ago, keyValues, labelList, table, when } from './format.js';
import { holdText } from '../shared/operation.js';

export interface TenantView {
  id: string;
  name: string;
  createdAt: string;
  agents?: number;
}

export interface EnrollmentTokenView {
  id: string;
  token: string;
  tenant: string;
  expiresAt: string;
}

export interface AgentView {
  id: string;
  tenant: string;
  name: string;
  status: string;
  labels: Record<string, string>;
  fingerprint: string;
  enrolledAt: string;
  revokedAt: string | null;
  lastSeenAt: string | null;
  connectedAt: string | null;
  remote: string | null;
  agentVersion: string | null;
  /** Its versions and latest self-upgrade, as it last reported them. */
  versions?: { installed: string; running: string; previous: string | null; pending: string | null; upgrade: { version: string; state: string; code: string | null; message: string | null; since: string } | null } | null;
  /** What the agent said in its hello: host and Docker engine facts. */
  facts?: { host?: { hostname?: string; cpus?: number; memoryBytes?: number }; engine?: { version?: string; containersRunning?: number; containers?: number; error?: { code?: string } } } | null;
  lastDirective?: { seq: number; status: string; code: string | null } | null;
  /** Security alarms the agent raised and its institution has not acknowledged. */
  alarms?: { at: string; code: string; message: string; kind?: string }[];
  running?: {
    releases: { stack: string; version: string; state: string; code?: string; runningVersion: string | null }[];
    services: { stack: string; service: string; replica: number; release: string; status: string; health: string; restarts: number }[];
    /** Services an operator stopped or scaled (remote operations). */
    holds?: { stack: string; service: string; state: string; replicas?: number; release: string; since: string; operation: string }[];
    reportedAt: string | null;
  } | null;
}

export function tenantTable(tenants: readonly TenantView[], now: number): string {
  return table(
    ['NAME', 'AGENTS', 'CREATED'],
    tenants.map((t) => [t.name, String(t.agents ?? 0), ago(t.createdAt, now)]),
  );
}

/** The Docker engine an agent reported: `Docker 20.10.24, 3/5 running`, or why it could not be read. */
export function dockerFacts(a: AgentView): string {
  const e = a.facts?.engine;
  if (!e) return '-';
  if (e.error) return `unreachable (${e.error.code ?? 'error'})`;
  return `Docker ${e.version ?? '?'}, ${e.containersRunning ?? 0}/${e.containers ?? 0} running`;
}

/** The agent's version: installed (committed), and an upgrade under way or the one that did not stay. */
export function versionText(a: AgentView): string {
  const v = a.versions;
  if (!v) return a.agentVersion ?? '-';
  const u = v.upgrade;
  if (v.running !== v.installed) return `${v.installed} (${v.running} on trial)`;
  if (u && u.version !== v.installed && ['installing', 'trial', 'reverted', 'failed'].includes(u.state)) return `${v.installed} (${u.version} ${u.state})`;
  return v.installed;
}

export function agentTable(agents: readonly AgentView[], now: number): string {
  return table(
    ['ID', 'TENANT', 'NAME', 'STATUS', 'LAST SEEN', 'VERSION', 'DOCKER', 'LABELS'],
    agents.map((a) => [a.id, a.tenant, a.name, a.status, ago(a.lastSeenAt, now), versionText(a), dockerFacts(a), labelList(a.labels)]),
  );
}

export function agentDetail(a: AgentView, now: number): string {
  return keyValues([
    ['id', a.id],
    ['name', a.name],
    ['tenant', a.tenant],
    ['status', a.status],
    ['labels', labelList(a.labels)],
    ['fingerprint', a.fingerprint],
    ['enrolled', when(a.enrolledAt, now)],
    ['last seen', when(a.lastSeenAt, now)],
    ['connected', when(a.connectedAt, now)],
    ['remote', a.remote ?? '-'],
    ['version', versionText(a)],
    ...(a.versions ? ([['previous', a.versions.previous ?? '-'], ['pending', a.versions.pending ?? '-']] as const) : []),
    ...(a.versions?.upgrade ? ([['upgrade', `${a.versions.upgrade.version} ${a.versions.upgrade.state} ${a.versions.upgrade.since}${a.versions.upgrade.code ? ` ${a.versions.upgrade.code}: ${a.versions.upgrade.message ?? ''}` : ''}`]] as const) : []),
    ['docker', dockerFacts(a)],
    ['host', a.facts?.host ? `${a.facts.host.hostname ?? '?'}, ${a.facts.host.cpus ?? '?'} CPUs, ${Math.round((a.facts.host.memoryBytes ?? 0) / 1048576)} MiB` : '-'],
    ['revoked', when(a.revokedAt, now)],
    ...(a.alarms ?? []).map((x) => ['ALARM', `${x.at} ${x.code}${x.kind ? ` (${x.kind})` : ''}: ${x.message}`] as const),
    ['directive', a.lastDirective ? `seq ${a.lastDirective.seq} ${a.lastDirective.status}${a.lastDirective.code ? ` (${a.lastDirective.code})` : ''}` : '-'],
    ...(a.running?.releases ?? []).map((r) => ['release', `${r.stack}@${r.version} ${r.state}${r.code ? ` (${r.code})` : ''}${r.runningVersion && r.runningVersion !== r.version ? `, running ${r.runningVersion}` : ''}`] as const),
    ...(a.running?.services ?? []).map((c) => ['service', `${c.stack}/${c.service}#${c.replica} ${c.release} ${c.status}${c.health !== 'none' ? `/${c.health}` : ''}${c.restarts ? `, ${c.restarts} restarts` : ''}`] as const),
    ...(a.running?.holds ?? []).map((h) => ['held', holdText(h)] as const),
  ]);
}

// `ferry-agent status`: the installed (committed), previous and pending
// versions, and how the latest upgrade went, from launch.json.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { LAUNCH_FILE, readLaunch, type Outcome } from './launch-state.js';

export const DEFAULT_ROOT = '/opt/ferry-agent';

export interface VersionsStatus {
  root: string;
  installed: string;
  previous: string | null;
  pending: { version: string; stage: 'ready' | 'trial'; since: string } | null;
  last: (Omit<Outcome, 'at'> & { at: string }) | null;
}

/** Null when the agent is not installed in versioned directories (no launch.json). */
export function describeVersions(root: string | undefined): VersionsStatus | null {
  const dir = root ?? (existsSync(join(DEFAULT_ROOT, LAUNCH_FILE)) ? DEFAULT_ROOT : undefined);
  if (!dir) return null;
  const s = readLaunch(dir);
  if (!s) return null;
  const last = s.history[s.history.length - 1];
  return {
    root: dir,
    installed: s.current,
    previous: s.previous,
    pending: s.pending ? { version: s.pending.version, stage: s.pending.stage, since: new Date(s.pending.startedAt ?? s.pending.requestedAt).toISOString() } : null,
    last: last ? { ...last, at: new Date(last.at).toISOString() } : null,
  };
}

export function formatVersions(v: VersionsStatus | null): string {
  if (!v) return 'installed    not in versioned directories (no launch.json): self-upgrade is off\n';
  const rows = [
    `installed    ${v.installed} (${v.root})`,
    `previous     ${v.previous ?? '-'}`,
    `pending      ${v.pending ? `${v.pending.version} (${v.pending.stage === 'trial' ? 'on trial' : 'ready to start'} since ${v.pending.since})` : '-'}`,
  ];
  if (v.last) rows.push(`last upgrade ${v.last.version}: ${v.last.outcome} ${v.last.at}${v.last.code ? ` ${v.last.code}: ${v.last.reason ?? ''}` : ''}`);
  return rows.join('\n') + '\n';
}

// The agent's persisted trust state and desired state (trust.json), and its
// local log of refused directives, roots and audit checkpoints
// (refusals.jsonl). Both are written with fsync before the agent
// acknowledges anything, so an accepted directive survives a crash and a
// refusal is on record even if the hub never hears. Refusals that are
// security alarms (conflicting directives, an audit log that does not extend
// what this agent witnessed) stay active until the institution acknowledges
// them (alarms-acknowledged.jsonl).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FerryError } from '../shared/errors.js';
import type { Envelope } from '../shared/dsse.js';
import { appendSynced, writeFileAtomic } from '../shared/files.js';
import { EMPTY_STATE, type TrustState } from './verify.js';

export const TRUST_FILE = 'trust.json';
export const REFUSALS_FILE = 'refusals.jsonl';
export const ALARMS_ACK_FILE = 'alarms-acknowledged.jsonl';
/** Refusals that are security alarms: the hub signed conflicting state, or presented a rewritten audit log. */
export const ALARM_CODES: ReadonlySet<string> = new Set(['FERRY_E_DIRECTIVE_FORK', 'FERRY_E_AUDIT_INCONSISTENT']);

export interface Desired {
  directive: Envelope;
  releases: Envelope[];
  seq: number;
  acceptedAt: string;
  /** The agent bundle statement the directive names (the ferry-agent version this agent should run). */
  bundle?: Envelope;
}

export interface Persisted {
  format: 1;
  state: TrustState;
  desired: Desired | null;
}

export function loadTrust(dir: string): Persisted {
  let text: string;
  try {
    text = readFileSync(join(dir, TRUST_FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { format: 1, state: EMPTY_STATE, desired: null };
    throw new FerryError('FERRY_E_STATE_CORRUPT', `${TRUST_FILE}: ${(err as Error).message}`);
  }
  try {
    const p = JSON.parse(text) as Persisted;
    if (p.format !== 1 || !p.state || !Array.isArray(p.state.roots)) throw new Error('unknown format');
    return p;
  } catch (err) {
    throw new FerryError('FERRY_E_STATE_CORRUPT', `${join(dir, TRUST_FILE)}: ${(err as Error).message}`);
  }
}

export function saveTrust(dir: string, p: Persisted): void {
  writeFileAtomic(join(dir, TRUST_FILE), JSON.stringify(p) + '\n', 0o600);
}

export interface Refusal {
  at: string;
  /** What was refused (absent in records of earlier versions: a directive, or a root when seq is null). */
  kind?: 'directive' | 'roots' | 'checkpoint' | 'operation';
  seq: number | null;
  digest: string | null;
  code: string;
  message: string;
  /** A security alarm, not a plain refusal (see ALARM_CODES). */
  alarm?: true;
}

/** Appends a refusal (marked as an alarm when its code is one), fsynced; returns the record. */
export function appendRefusal(dir: string, r: Omit<Refusal, 'alarm'>): Refusal {
  const rec: Refusal = ALARM_CODES.has(r.code) ? { ...r, alarm: true } : r;
  appendSynced(join(dir, REFUSALS_FILE), JSON.stringify(rec) + '\n');
  return rec;
}


function readLines<T>(file: string): T[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return text.split('\n').flatMap((l) => {
    if (!l) return [];
    try {
      return [JSON.parse(l) as T];
    } catch {
      return []; // a torn last line after a crash
    }
  });
}

export function readRefusals(dir: string, limit = 20): Refusal[] {
  return readLines<Refusal>(join(dir, REFUSALS_FILE)).slice(-limit);
}

export interface Alarm extends Refusal {
  alarm: true;
  /** The institution acknowledged it (`ferry-agent audit --acknowledge`). */
  acknowledged: boolean;
}

/** Every alarm on record, oldest first, each saying whether it was acknowledged. */
export function readAlarms(dir: string): Alarm[] {
  const { records, acked } = alarmRecords(dir);
  return records.map((r, i) => ({ ...r, alarm: true as const, acknowledged: i < acked }));
}

/** The alarm records as written, and how many of the first ones are acknowledged. */
function alarmRecords(dir: string): { records: Refusal[]; acked: number } {
  const records = readLines<Refusal>(join(dir, REFUSALS_FILE)).filter((r) => r.alarm || ALARM_CODES.has(r.code));
  // An acknowledgement names the last alarm it covers (the record itself, not a time: clocks move).
  const keys = records.map((r) => JSON.stringify(r));
  let acked = 0;
  for (const a of readLines<{ last: string }>(join(dir, ALARMS_ACK_FILE))) acked = Math.max(acked, keys.lastIndexOf(a.last) + 1);
  return { records, acked };
}

/** Records that the institution has seen every alarm so far; returns how many that acknowledged. */
export function acknowledgeAlarms(dir: string, now: number): number {
  const { records, acked } = alarmRecords(dir);
  const last = records[records.length - 1];
  if (!last || acked === records.length) return 0;
  appendSynced(join(dir, ALARMS_ACK_FILE), JSON.stringify({ at: new Date(now).toISOString(), count: records.length - acked, last: JSON.stringify(last) }) + '\n');
  return records.length - acked;
}

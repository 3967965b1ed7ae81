// The agent's persisted trust state and desired state (trust.json), and its
// local log of refused directives (refusals.jsonl). Both are written with
// fsync before the agent acknowledges anything, so an accepted directive
// survives a crash and a refusal is on record even if the hub never hears.
import { appendFileSync, closeSync, fsyncSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FerryError } from '../shared/errors.js';
import type { Envelope } from '../shared/dsse.js';
import { writeFileAtomic } from '../shared/files.js';
import { EMPTY_STATE, type TrustState } from './verify.js';

export const TRUST_FILE = 'trust.json';
export const REFUSALS_FILE = 'refusals.jsonl';

export interface Desired {
  directive: Envelope;
  releases: Envelope[];
  seq: number;
  acceptedAt: string;
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
  seq: number | null;
  digest: string | null;
  code: string;
  message: string;
}

export function appendRefusal(dir: string, r: Refusal): void {
  const file = join(dir, REFUSALS_FILE);
  appendFileSync(file, JSON.stringify(r) + '\n', { mode: 0o600 });
  const fd = openSync(file, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export function readRefusals(dir: string, limit = 20): Refusal[] {
  try {
    const lines = readFileSync(join(dir, REFUSALS_FILE), 'utf8').trim().split('\n').filter(Boolean);
    return lines.slice(-limit).map((l) => JSON.parse(l) as Refusal);
  } catch {
    return [];
  }
}

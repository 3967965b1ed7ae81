// What the check runner keeps across restarts (checks.json in the state
// directory): each check's state, and the transitions the hub has not yet
// acknowledged, numbered per agent. Written (atomically) on every transition
// and every acknowledgement, never per probe: a check that passes all day
// writes nothing.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FerryError } from '../../shared/errors.js';
import { writeFileAtomic } from '../../shared/files.js';
import type { CheckTransition } from '../../shared/protocol.js';
import type { CheckMemory } from './machine.js';

export const CHECKS_FILE = 'checks.json';
/** Unacknowledged transitions kept at most (an agent offline for days with flapping checks): the oldest go first. */
export const MAX_OUTBOX = 5000;

interface Persisted {
  format: 1;
  /** The number the next transition gets. */
  next: number;
  states: Record<string, Pick<CheckMemory, 'state' | 'since' | 'error'>>;
  outbox: CheckTransition[];
}

export class CheckBook {
  private p: Persisted;
  /** Transitions dropped because the outbox was full (a log line says so). */
  dropped = 0;

  constructor(private readonly dir: string) {
    this.p = load(dir);
  }

  state(key: string): Pick<CheckMemory, 'state' | 'since' | 'error'> | undefined {
    return this.p.states[key];
  }

  get outbox(): readonly CheckTransition[] {
    return this.p.outbox;
  }

  /** Records a transition (and the state it leads to) durably; returns it numbered. */
  record(key: string, t: Omit<CheckTransition, 'n'>, m: Pick<CheckMemory, 'state' | 'since' | 'error'>): CheckTransition {
    const numbered = { n: this.p.next++, ...t };
    this.p.outbox.push(numbered);
    if (this.p.outbox.length > MAX_OUTBOX) {
      this.dropped += this.p.outbox.length - MAX_OUTBOX;
      this.p.outbox.splice(0, this.p.outbox.length - MAX_OUTBOX);
    }
    this.p.states[key] = { state: m.state, since: m.since, ...(m.error !== undefined && { error: m.error }) };
    this.save();
    return numbered;
  }

  /** Forgets checks no release declares any more (their transitions stay until acknowledged). */
  retain(keys: ReadonlySet<string>): void {
    const gone = Object.keys(this.p.states).filter((k) => !keys.has(k));
    if (!gone.length) return;
    for (const k of gone) delete this.p.states[k];
    this.save();
  }

  /** The hub stored everything up to `upTo`. */
  acknowledge(upTo: number): void {
    const before = this.p.outbox.length;
    this.p.outbox = this.p.outbox.filter((t) => t.n > upTo);
    if (this.p.outbox.length !== before) this.save();
  }

  private save(): void {
    writeFileAtomic(join(this.dir, CHECKS_FILE), JSON.stringify(this.p) + '\n', 0o600);
  }
}

function load(dir: string): Persisted {
  try {
    const p = JSON.parse(readFileSync(join(dir, CHECKS_FILE), 'utf8')) as Persisted;
    if (p.format !== 1 || !Number.isSafeInteger(p.next) || !Array.isArray(p.outbox)) throw new Error('not a checks file of format 1');
    return p;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { format: 1, next: 1, states: {}, outbox: [] };
    throw new FerryError('FERRY_E_STATE_CORRUPT', `${CHECKS_FILE}: ${(err as Error).message}`);
  }
}

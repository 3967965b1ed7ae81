// What the check runner keeps across restarts (checks.json in the state
// directory): each check's state, and the transitions the hub has not yet
// acknowledged, numbered per agent. Written (atomically) before transitions
// are sent, once for all those of a moment, and on acknowledgements; never
// per probe: a check that passes all day writes nothing.
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
  private dirty = false;

  constructor(private readonly dir: string) {
    this.p = load(dir);
  }

  state(key: string): Pick<CheckMemory, 'state' | 'since' | 'error'> | undefined {
    return this.p.states[key];
  }

  get outbox(): readonly CheckTransition[] {
    return this.p.outbox;
  }

  /**
   * Records a transition (and the state it leads to); returns it numbered.
   * Durable at the next `persist`, which the runner calls before anything is
   * sent: one write for every transition of a moment (1,000 checks starting
   * are one fsync, not 1,000 on the event loop). A crash before it loses only
   * transitions never sent; the states they led to are observed again.
   */
  record(key: string, t: Omit<CheckTransition, 'n'>, m: Pick<CheckMemory, 'state' | 'since' | 'error'>): CheckTransition {
    const numbered = { n: this.p.next++, ...t };
    this.p.outbox.push(numbered);
    if (this.p.outbox.length > MAX_OUTBOX) {
      this.dropped += this.p.outbox.length - MAX_OUTBOX;
      this.p.outbox.splice(0, this.p.outbox.length - MAX_OUTBOX);
    }
    this.p.states[key] = { state: m.state, since: m.since, ...(m.error !== undefined && { error: m.error }) };
    this.dirty = true;
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

  /** Writes what was recorded since the last write (nothing when nothing was). */
  persist(): void {
    if (this.dirty) this.save();
  }

  private save(): void {
    this.dirty = false;
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

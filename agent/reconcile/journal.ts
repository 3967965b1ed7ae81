// The reconciler's journal: an append-only JSON-lines file, fsynced per
// record, so that after a crash (kill -9, power loss) the agent knows an
// apply was under way, which target it was converging to, and how far it got.
// Steps themselves are idempotent against observed state; the journal is
// what lets an interrupted apply resume (or roll back) rather than be
// forgotten, and what the agent reports afterwards.
import { closeSync, fsyncSync, openSync, readFileSync, writeSync, statSync, renameSync } from 'node:fs';
import { join } from 'node:path';

export const JOURNAL_FILE = 'journal.jsonl';
const MAX_BYTES = 4 * 1024 * 1024;

export type JournalRecord =
  | { event: 'apply-start'; seq: number; targets: { stack: string; version: string; digest: string }[] }
  | { event: 'step'; kind: string; what: string }
  | { event: 'step-done'; kind: string; what: string }
  | { event: 'applied'; seq: number }
  | { event: 'failed'; seq: number; code: string; message: string }
  | { event: 'rolled-back'; seq: number; stacks: string[] }
  | { event: 'drift-repaired'; what: string[] }
  | { event: 'job-done'; stack: string; service: string; run: string; state: string };

export class Journal {
  private fd: number;

  constructor(private readonly dir: string) {
    this.fd = openSync(join(dir, JOURNAL_FILE), 'a', 0o600);
  }

  write(r: JournalRecord): void {
    writeSync(this.fd, JSON.stringify({ at: new Date().toISOString(), ...r }) + '\n');
    fsyncSync(this.fd);
    this.rotateIfLarge();
  }

  close(): void {
    closeSync(this.fd);
  }

  /** The apply that was started but neither applied nor failed (an interrupted one), if any. */
  static interrupted(dir: string): { seq: number } | null {
    let text = '';
    try {
      text = readFileSync(join(dir, JOURNAL_FILE), 'utf8');
    } catch {
      return null;
    }
    let open: { seq: number } | null = null;
    for (const line of text.split('\n')) {
      if (!line) continue;
      let r: JournalRecord;
      try {
        r = JSON.parse(line) as JournalRecord;
      } catch {
        continue; // a torn last line after a crash
      }
      if (r.event === 'apply-start') open = { seq: r.seq };
      else if ((r.event === 'applied' || r.event === 'failed') && open?.seq === r.seq) open = null;
    }
    return open;
  }

  private rotateIfLarge(): void {
    const file = join(this.dir, JOURNAL_FILE);
    if (statSync(file).size < MAX_BYTES) return;
    closeSync(this.fd);
    renameSync(file, `${file}.1`);
    this.fd = openSync(file, 'a', 0o600);
  }
}

// Fault injection for test/integration/reconcile-faults.test.ts, loaded into
// an agent process only by the test: `node --import <this file>
// dist/agent/main.js run ...` (see CRASH_HOOK_ARGS). The agent itself has no
// hook and reads no variable for it, so an installed agent cannot have it
// switched on: its systemd unit runs node with fixed flags (agent/node-flags.ts)
// and no code of this file.
//
// With FERRY_TEST_CRASH_AT=<kind> the process SIGKILLs itself right before
// the first step of that kind runs (just after its journal record is
// fsynced); with <kind>:after, right after it ran (before it is journaled as
// done). It hooks the journal, which the executor writes around every step.
// With relay-chunk:<n>, right after the n-th upload chunk of this process is
// acknowledged and its offset stored (test/integration/relay-agent.test.ts):
// it hooks the relay's book of upload sessions. With upgrade:<step>, the
// launcher or agent process reaching that step of a self-upgrade kills
// itself (agent/upgrade/launch-state.ts upgradeSteps: downloaded, unpacked,
// pending, backup-copied, backed-up, trial-marked, healthy, committed,
// restore-emptied); it hooks the copy of launch-state.js next to the
// process's own main file, since installed versions run their own copies.
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Journal, type JournalRecord } from '../../agent/reconcile/journal.js';
import { UploadBook } from '../../agent/relay/transfer.js';
import type { UploadState } from '../../agent/relay/registry.js';

/** Node arguments that load this hook into a process. */
export const CRASH_HOOK_ARGS: readonly string[] = ['--import', fileURLToPath(import.meta.url)];

const at = process.env.FERRY_TEST_CRASH_AT;
const chunk = /^relay-chunk:(\d+)$/.exec(at ?? '');
const step = /^upgrade:([a-z-]+)$/.exec(at ?? '');
const main = process.argv[1] ?? '';
if (step) {
  const rel = main.endsWith('/launcher.js') ? './launch-state.js' : main.endsWith('/agent/main.js') ? './upgrade/launch-state.js' : null;
  if (rel) {
    const m = (await import(new URL(rel, pathToFileURL(main)).href)) as { upgradeSteps: { reached: (s: string) => void } };
    m.upgradeSteps.reached = (s: string) => {
      if (s === step[1]) process.kill(process.pid, 'SIGKILL');
    };
  }
} else if (chunk && process.argv.some((a) => a.endsWith('/agent/main.js'))) {
  const set = UploadBook.prototype.set;
  const last = new Map<string, number>();
  let stored = 0;
  UploadBook.prototype.set = async function (this: UploadBook, key: string, s: UploadState): Promise<void> {
    await set.call(this, key, s);
    const before = last.get(key);
    last.set(key, s.offset);
    // a chunk acknowledged (the offset moved on), not a session started or resumed
    if (before !== undefined && s.offset > before && ++stored === Number(chunk[1])) process.kill(process.pid, 'SIGKILL');
  };
} else if (at && process.argv.some((a) => a.endsWith('/agent/main.js'))) {
  const [kind, when] = at.split(':') as [string, string | undefined];
  const write = Journal.prototype.write;
  Journal.prototype.write = function (this: Journal, r: JournalRecord): void {
    if (when === 'after' && r.event === 'step-done' && r.kind === kind) process.kill(process.pid, 'SIGKILL');
    write.call(this, r);
    if (when === undefined && r.event === 'step' && r.kind === kind) process.kill(process.pid, 'SIGKILL');
  };
}

// Skipping a test that cannot run on this machine. Under CI (CI=true, as
// `.ci/run` sets it) the environment is provided, so a test that would skip
// is a failure, not a silent pass. Elsewhere the skip is loud: the reason goes
// to stderr, besides the runner's `# SKIP` line.
import type { TestContext } from 'node:test';

/** True when running under CI (CI set, and not "0" or "false"). */
export function underCi(env: NodeJS.ProcessEnv = process.env): boolean {
  const v = (env.CI ?? '').trim().toLowerCase();
  return v !== '' && v !== '0' && v !== 'false';
}

/** Skips `t` saying why; under CI throws instead, failing the test. */
export function skipOrFail(t: TestContext, why: string): void {
  if (underCi()) throw new Error(`this test would be skipped, which CI does not allow: ${why}`);
  process.stderr.write(`\n*** SKIPPED: ${t.name}\n***   because ${why}\n`);
  t.skip(why);
}

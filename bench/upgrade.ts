// bench/upgrade: how long an agent is disconnected from its hub during a
// successful self-upgrade (old version stops, the launcher backs the state
// up, the new version starts on trial and connects), against the peer: a
// plain process restart of the same agent under the same launcher (what
// `systemctl restart ferry-agent` does: stop, start). Also the time to
// revert a version that crashes at start (disconnect to the previous version
// connected again). Real processes: an in-process hub, the agent enrolled
// with it, installed in versioned directories and run by the launcher;
// bundles built from this checkout, uploaded, signed 2 of 3, rolled out.
// Disconnection is measured by the hub's gateway (its 'disconnected' and
// 'connected' events for the agent). See bench/README.md.
//
//   npm run bench:upgrade [-- --runs 10 --reverts 3]
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { parseArgs } from 'node:util';
import { fmt, quantile, secs, table } from './lib/report.js';
import { wholeNumber } from './lib/args.js';
import { BASE, RM, TENANT, bundle, publishBundle, rollOut, rolloutState, upgradeHost, upgradeHub, waitVersions } from '../test/helpers/upgrade.js';
import { waitFor } from '../test/helpers/tmp.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '10' }, reverts: { type: 'string', default: '3' } } });
const RUNS = wholeNumber(values, 'runs');
const REVERTS = wholeNumber(values, 'reverts');

/** The test helpers clean up through a test context; here, at the end of the run. */
const cleanups: (() => unknown)[] = [];
const ctx = { after: (fn: () => unknown) => cleanups.unshift(fn), skip: () => undefined, diagnostic: () => undefined, name: 'bench' } as unknown as TestContext;

try {
  const th = await upgradeHub(ctx);
  const h = await upgradeHost(ctx, th, { windowMs: 60_000 });
  const gw = th.hub.gateway;

  /** Disconnected time of the agent while `act` runs: from its first disconnect to the next connect. */
  async function outage(act: () => Promise<void>): Promise<number> {
    let down = 0;
    let up = 0;
    const off = (id: string) => void (id === h.id && !down && (down = performance.now()));
    const on = (id: string) => void (id === h.id && down && !up && (up = performance.now()));
    gw.on('disconnected', off);
    gw.on('connected', on);
    try {
      await act();
      await waitFor('the agent to connect again', () => up > 0, 120_000, 10);
      return up - down;
    } finally {
      gw.off('disconnected', off);
      gw.off('connected', on);
    }
  }

  const versions = Array.from({ length: RUNS }, (_, i) => `1.0.${i}`);
  // (versions above the last good one)
  const crashing = Array.from({ length: REVERTS }, (_, i) => `2.0.${i}`);
  process.stderr.write(`building and publishing ${RUNS + REVERTS} bundles...\n`);
  for (const v of versions) await publishBundle(th, bundle(v), [TENANT], RM.slice(0, 2));
  for (const v of crashing) await publishBundle(th, bundle(v, 'crash'), [TENANT], RM.slice(0, 2));

  const restart: number[] = [];
  const upgrade: number[] = [];
  const revert: number[] = [];
  let installed = BASE;
  for (let i = 0; i < RUNS; i++) {
    // the peer, on the version now installed
    restart.push(await outage(() => h.sup.restart()));
    await waitVersions(th, h.id, { installed });
    // an upgrade to the next version
    const v = versions[i]!;
    let ro = '';
    upgrade.push(await outage(async () => void (ro = await rollOut(th, v, `id=${h.id}`, { bakeMs: 0 }))));
    await waitVersions(th, h.id, { installed: v, state: 'committed', upgrade: v });
    await rolloutState(th, ro, 'succeeded');
    installed = v;
    process.stderr.write(`run ${i + 1}/${RUNS}: restart ${secs(restart.at(-1)!)}, upgrade ${secs(upgrade.at(-1)!)}\n`);
  }
  for (const v of crashing) {
    let ro = '';
    try {
      revert.push(await outage(async () => void (ro = await rollOut(th, v, `id=${h.id}`))));
      await waitVersions(th, h.id, { installed, state: 'reverted', upgrade: v });
      await rolloutState(th, ro, 'paused');
      await th.api('POST', `/v1/rollouts/${ro}/abort`);
      process.stderr.write(`revert of ${v}: ${secs(revert.at(-1)!)}\n`);
    } catch (err) {
      // say so and still print what was measured
      process.stderr.write(`revert of ${v} not measured: ${(err as Error).message}\n${h.sup.output().slice(-2000)}\n`);
      break;
    }
  }

  const med = (x: number[]) => quantile(x, 0.5);
  const rows = [
    ['disconnected from the hub', 'median', 'min', 'max', 'vs restart'],
    [`process restart (peer: systemctl restart), n=${restart.length}`, secs(med(restart)), secs(Math.min(...restart)), secs(Math.max(...restart)), '1.00x'],
    [`successful self-upgrade, n=${upgrade.length}`, secs(med(upgrade)), secs(Math.min(...upgrade)), secs(Math.max(...upgrade)), `${fmt(med(upgrade) / med(restart), 2)}x`],
    [`revert of a crashing version, n=${revert.length}`, secs(med(revert)), secs(Math.min(...revert)), secs(Math.max(...revert)), `${fmt(med(revert) / med(restart), 2)}x`],
  ];
  process.stdout.write(`${table(rows)}\n`);
  const out = join(process.cwd(), 'bench', 'out');
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, `upgrade-${Date.now()}.json`), JSON.stringify({ restart, upgrade, revert }, null, 1));
} finally {
  for (const fn of cleanups) await fn();
}

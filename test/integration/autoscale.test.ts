// Bounded autoscaling on the real engine with a real agent process: a
// service burning CPU is scaled up — to the bank's policy cap, below the
// release's signed max — and back down to its min after the cooldown once it
// idles; never past either bound; each change reaches the hub (event stream,
// audit log).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildTestImage, dockerOk, requireDocker } from '../helpers/docker.js';
import { fleet, type FleetAgent } from '../helpers/fleet.js';
import { run } from '../helpers/proc.js';
import { service } from '../helpers/signing.js';
import { waitFor } from '../helpers/tmp.js';

test('a CPU-burning service scales up to the bank cap (below its signed max) and back to min after the cooldown, never past the bounds', { timeout: 240_000 }, async (t) => {
  if (!(await requireDocker(t))) return;
  const f = await fleet(t, { policy: 'autoscale:\n  maxReplicas: 2\n', agentConfig: () => 'autoscale:\n  intervalMs: 500\n' });
  const [a] = f.agents as [FleetAgent];
  // Burns a core while /ctl/burn exists (a volume every replica shares), idles otherwise.
  const img = await buildTestImage('ferry-test/autoscale-burn', 'v1', {
    push: true,
    cmd: ['sh', '-c', 'trap "exit 0" TERM; while :; do if [ -f /ctl/burn ]; then i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; else sleep 0.3; fi; done'],
  });
  const autoscale = { min: 1, max: 3, cpuPercent: 20, upCooldownMs: 1000, downCooldownMs: 3000 };
  await f.publish('calc', '1.0.0', { burn: service(img.ref!, { autoscale, volumes: [{ type: 'volume', source: 'ctl', target: '/ctl', readOnly: false }], stopGracePeriodMs: 1000 }) }, { volumes: { ctl: {} } });
  await f.deploy(a, 'calc', '1.0.0');
  await f.waitRelease(a, 'calc', '1.0.0', 'applied');

  const replicas = async () => (await dockerOk(['ps', '-q', '--filter', `label=ferry.agent=${a.id}`, '--filter', 'label=ferry.service=burn'])).split('\n').filter(Boolean);
  let most = 0;
  let watching = true;
  const watcher = (async () => {
    while (watching) {
      most = Math.max(most, (await replicas()).length);
      await new Promise((r) => setTimeout(r, 150));
    }
  })();
  t.after(async () => {
    watching = false;
    await watcher;
  });
  assert.equal((await replicas()).length, 1);

  const [first] = await replicas();
  await dockerOk(['exec', first!, 'touch', '/ctl/burn']);
  await waitFor('scaled up to the cap', async () => ((await replicas()).length === 2) || null, 90_000, 200);
  await dockerOk(['exec', first!, 'rm', '/ctl/burn']);
  await waitFor('scaled back down to min', async () => ((await replicas()).length === 1) || null, 90_000, 200);
  watching = false;
  await watcher;
  assert.equal(most, 2, 'never above the bank cap of 2 (the release allows 3)');

  const env = { FERRY_HUB: f.th.url, FERRY_TOKEN: f.th.adminToken, XDG_CONFIG_HOME: a.stateDir };
  const ev = await run('ferry', ['events', '--since', '0', '--kind', 'scale', '--limit', '2', '--json'], { env });
  assert.equal(ev.code, 0, ev.stderr);
  const changes = ev.stdout.trim().split('\n').map((l) => JSON.parse(l) as { stack: string; service: string; from: number; to: number; reason: string; agentId: string });
  assert.deepEqual(changes.map((c) => `${c.stack}/${c.service} ${c.from}->${c.to}`), ['calc/burn 1->2', 'calc/burn 2->1']);
  assert.match(changes[0]!.reason, /^cpu \d+% > 20% target$/);
  assert.match(changes[1]!.reason, /^cpu \d+% < 20% target$/);
  assert.ok(changes.every((c) => c.agentId === a.id));
  const audit = (await f.th.api('GET', '/v1/audit/bank-r/entries')).body.entries as { action: string; details?: { to?: number } }[];
  assert.deepEqual(audit.filter((e) => e.action === 'service.autoscale').map((e) => e.details?.to), [2, 1]);
});

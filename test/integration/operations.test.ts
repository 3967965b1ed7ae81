// Remote operations on the real engine, between real processes: a hub, an
// agent process with the bank's policy, and the ferry CLI. Restart, stop (and
// it stays stopped across drift passes and an agent restart), start, scale
// up and down, a new release ending the holds; everything audited.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requireRegistry } from '../helpers/docker.js';
import { fleet, type FleetAgent } from '../helpers/fleet.js';
import { chattyImage, cli, containers } from '../helpers/operations.js';
import { service } from '../helpers/signing.js';
import { run } from '../helpers/proc.js';
import { waitFor } from '../helpers/tmp.js';

const drifts = (out: string) => out.split('\n').filter((l) => l.includes('"drift pass"')).length;

test('restart (rolling), stop that stays stopped across drift passes and an agent restart, start, scale up and down, a new release ends the holds; all audited', async (t) => {
  if (!(await requireRegistry(t))) return;
  const f = await fleet(t, { logLevel: 'debug', driftIntervalMs: 1000, policy: 'operations:\n  deny: [exec]\n' });
  const [a] = f.agents as [FleetAgent];
  const ferry = cli(f, a);
  const img = await chattyImage();
  await f.publish('ops', '1.0.0', { api: service(img, { replicas: 2, stopGracePeriodMs: 1000 }), worker: service(img, { stopGracePeriodMs: 1000 }) });
  await f.deploy(a, 'ops', '1.0.0');
  await f.waitRelease(a, 'ops', '1.0.0', 'applied');

  // restart: both replicas, one after the other, the same containers started again
  const before = await containers(a.id, 'ops', 'api');
  const r = await ferry(['service', 'restart', 'ops/api', '--agent', a.id, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const restarted = JSON.parse(r.stdout);
  assert.equal(restarted.status, 'ok');
  assert.equal(restarted.result.containers.length, 2);
  const after = await containers(a.id, 'ops', 'api');
  assert.deepEqual(after.map((c) => c.id), before.map((c) => c.id), 'the same containers');
  for (const [i, c] of after.entries()) {
    assert.equal(c.state, 'running');
    assert.ok(c.startedAt > before[i]!.startedAt, `replica ${i} was started again`);
  }
  assert.ok(after[1]!.startedAt > after[0]!.startedAt, 'rolling: replica 1 after replica 0');

  // stop: stays stopped through drift passes and an agent restart
  const stop = await ferry(['service', 'stop', 'ops/worker', '--agent', a.id]);
  assert.equal(stop.code, 0, stop.stderr);
  assert.match(stop.stdout, /stop ferry_\S+_ops_worker_0_\S+ \(stopped by an operator\)/);
  assert.match(stop.stdout, /held: stopped until started, scaled back or a new release of ops/);
  assert.equal((await containers(a.id, 'ops', 'worker'))[0]!.state, 'exited');
  const shown = await waitFor('the hold in the agent view', async () => {
    const v = (await f.th.api('GET', `/v1/agents/${a.id}`)).body;
    return v.running?.holds?.find((h: { service: string }) => h.service === 'worker');
  });
  assert.equal(shown.state, 'stopped');
  assert.equal(shown.release, '1.0.0');
  const show = await ferry(['agent', 'show', a.id]);
  assert.match(show.stdout, /held\s+ops\/worker stopped by an operator \(op_\S+, since \S+; until started or a release other than 1\.0\.0\)/);
  const mark = a.daemon.output().length;
  await waitFor('two drift passes after the stop', () => drifts(a.daemon.output().slice(mark)) >= 2, 20_000);
  assert.equal((await containers(a.id, 'ops', 'worker'))[0]!.state, 'exited', 'not repaired as drift');
  await a.daemon.stop();
  a.start();
  await waitFor('agent reconnected', async () => (await f.th.api('GET', `/v1/agents/${a.id}`)).body.status === 'connected', 15_000);
  await a.daemon.waitFor(/"drift pass"/, 20_000);
  assert.equal((await containers(a.id, 'ops', 'worker'))[0]!.state, 'exited', 'still stopped after the agent restarted');
  const status = await run('agent', ['status', '--state-dir', a.stateDir, '--config', a.configFile]);
  assert.match(status.stdout, /held\s+ops\/worker stopped by an operator/);

  // start: running again, the hold gone
  const start = await ferry(['service', 'start', 'ops/worker', '--agent', a.id, '--json']);
  assert.equal(start.code, 0, start.stderr);
  assert.equal(JSON.parse(start.stdout).result.hold, null);
  assert.equal((await containers(a.id, 'ops', 'worker'))[0]!.state, 'running');

  // scale up and down; the release's own count ends the hold
  const up = await ferry(['service', 'scale', 'ops/api', '--replicas', '3', '--agent', a.id, '--json']);
  assert.equal(up.code, 0, up.stderr);
  assert.deepEqual(JSON.parse(up.stdout).result.hold.replicas, 3);
  assert.deepEqual((await containers(a.id, 'ops', 'api')).map((c) => [c.replica, c.state]), [[0, 'running'], [1, 'running'], [2, 'running']]);
  const down = await ferry(['service', 'scale', 'ops/api', '--replicas', '1', '--agent', a.id]);
  assert.equal(down.code, 0, down.stderr);
  assert.deepEqual((await containers(a.id, 'ops', 'api')).map((c) => [c.replica, c.state]), [[0, 'running']]);
  const mark2 = a.daemon.output().length;
  await waitFor('a drift pass after the scale', () => drifts(a.daemon.output().slice(mark2)) >= 2, 20_000);
  assert.equal((await containers(a.id, 'ops', 'api')).length, 1, 'the scale is not repaired as drift');

  // a new release of the stack ends the holds: the worker stopped again runs, api has its 2 replicas
  assert.equal((await ferry(['service', 'stop', 'ops/worker', '--agent', a.id])).code, 0);
  await f.publish('ops', '1.0.1', { api: service(img, { replicas: 2, stopGracePeriodMs: 1000 }), worker: service(img, { stopGracePeriodMs: 1000, environment: { V: '2' } }) });
  await f.deploy(a, 'ops', '1.0.1');
  await f.waitRelease(a, 'ops', '1.0.1', 'applied');
  assert.deepEqual((await containers(a.id, 'ops', 'api')).map((c) => c.state), ['running', 'running']);
  assert.deepEqual((await containers(a.id, 'ops', 'worker')).map((c) => c.state), ['running']);
  const v = (await f.th.api('GET', `/v1/agents/${a.id}`)).body;
  assert.deepEqual(v.running.holds ?? [], []);

  // a kind the bank's policy denies: refused on the agent with its code, exit 3
  const denied = await ferry(['exec', 'ops/api', '--agent', a.id, '--', 'anything']);
  assert.equal(denied.code, 3, denied.stderr);
  assert.match(denied.stderr, /FERRY_E_POLICY_OPERATION: .*exec on ops\/api: denied by operations.deny/);

  // the audit log: each request with who and from where, each answer with what the agent did
  const entries = (await f.th.api('GET', '/v1/audit/bank-r/entries?limit=500')).body.entries as { action: string; surface: string; outcome: string; actor: { kind: string }; details: Record<string, unknown> }[];
  const requests = entries.filter((e) => e.action === 'operation.request');
  const results = entries.filter((e) => e.action === 'operation.result');
  assert.deepEqual(requests.map((e) => e.details.kind), ['restart', 'stop', 'start', 'scale', 'scale', 'stop', 'exec']);
  assert.ok(requests.every((e) => e.surface === 'cli' && e.actor.kind === 'operator'));
  assert.deepEqual(results.map((e) => [e.details.kind, e.outcome]), [['restart', 'ok'], ['stop', 'ok'], ['start', 'ok'], ['scale', 'ok'], ['scale', 'ok'], ['stop', 'ok'], ['exec', 'refused']]);
  assert.ok(results.every((e) => e.surface === 'agent' && typeof e.details.durationMs === 'number'));
  assert.equal(results.at(-1)!.details.code, 'FERRY_E_POLICY_OPERATION');
});

test('on a selector: the plan shown and confirmed (--yes off a terminal), waves one after the other, an unreachable agent in the canary wave skips the rest', async (t) => {
  if (!(await requireRegistry(t))) return;
  const f = await fleet(t, { agents: 2 });
  const [a0, a1] = f.agents as [FleetAgent, FleetAgent];
  const ferry = cli(f, a0);
  const img = await chattyImage();
  await f.publish('ops', '1.0.0', { api: service(img, { stopGracePeriodMs: 1000 }) });
  for (const a of [a0, a1]) await f.deploy(a, 'ops', '1.0.0');
  for (const a of [a0, a1]) await f.waitRelease(a, 'ops', '1.0.0', 'applied');
  const started = async () => Promise.all([a0, a1].map(async (a) => (await containers(a.id, 'ops', 'api'))[0]!.startedAt));
  const before = await started();

  // not confirmed: nothing done
  const asked = await ferry(['service', 'restart', 'ops/api', '--to', 'tenant=bank-r', '--waves', '1,100%']);
  assert.equal(asked.code, 5, asked.stderr);
  assert.match(asked.stderr, /restart ops\/api on 2 agents in 2 wave\(s\) \(cumulative 1, 2\):/);
  for (const a of [a0, a1]) assert.match(asked.stderr, new RegExp(`  ${a.id}  bank-r  host-\\d`));
  assert.match(asked.stderr, /plan sha256:[0-9a-f]{64}/);
  assert.match(asked.stderr, /FERRY_E_CONFIRM_REQUIRED: .*not a terminal: read the plan above and run again with --yes/);
  assert.deepEqual(await started(), before, 'nothing restarted');
  // the API without the plan's hash
  const bare = await f.th.api('POST', '/v1/operations', { kind: 'restart', stack: 'ops', service: 'api', selector: 'tenant=bank-r' });
  assert.equal(bare.status, 409);
  assert.equal(bare.body.error.code, 'FERRY_E_CONFIRM_REQUIRED');

  // confirmed: host-0 in the first wave, host-1 in the second, both restarted
  const yes = await ferry(['service', 'restart', 'ops/api', '--to', 'tenant=bank-r', '--waves', '1,100%', '--yes', '--json']);
  assert.equal(yes.code, 0, yes.stderr);
  const r = JSON.parse(yes.stdout) as { state: string; batch: string; waves: { agents: { agent: string; operation: { status: string; batch: string; finishedAt: string } | null }[] }[] };
  assert.equal(r.state, 'done');
  assert.deepEqual(r.waves.map((w) => w.agents.map((x) => [x.agent, x.operation?.status, x.operation?.batch])), [[[a0.id, 'ok', r.batch]], [[a1.id, 'ok', r.batch]]]);
  const after = await started();
  assert.ok(after[0]! > before[0]! && after[1]! > before[1]!, 'both restarted');
  assert.ok(after[1]! > r.waves[0]!.agents[0]!.operation!.finishedAt.replace('Z', ''), 'the second wave after the first finished');

  // host-0 (the canary) unreachable: its wave fails, the next is skipped, host-1 untouched
  await a0.daemon.stop();
  await waitFor('host-0 seen offline', async () => (await f.th.api('GET', `/v1/agents/${a0.id}`)).body.status !== 'connected', 20_000);
  const stopped = await ferry(['service', 'restart', 'ops/api', '--to', 'tenant=bank-r', '--waves', '1,100%', '--yes']);
  assert.notEqual(stopped.code, 0);
  assert.match(stopped.stdout, new RegExp(`wave 1  restart ops/api on ${a0.id}: skipped \\(FERRY_E_AGENT_OFFLINE: `));
  assert.match(stopped.stdout, new RegExp(`wave 2  restart ops/api on ${a1.id}: skipped \\(an earlier wave failed\\)`));
  assert.match(stopped.stderr, /opb_[0-9a-f]+: stopped/);
  assert.equal((await started())[1], after[1], 'host-1 not restarted');
});

// Rollouts end to end on an in-process hub with simulated agents speaking the
// real protocol: waves, bake gating, canary failure, threshold rollback,
// offline agents and closed maintenance windows, the CLI and the audit log;
// every test on both store backends.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import type { HubMessage } from '../../shared/protocol.js';
import { dbPath, startHub } from '../helpers/hub.js';
import { backends, type Backend } from '../helpers/postgres.js';
import { run } from '../helpers/proc.js';
import { apiClient, seqsIncreasing, simAgents, simRelease, type Api, type SimAgent } from '../helpers/sim-agents.js';
import { waitFor } from '../helpers/tmp.js';
import type { TransitionEvent } from '../../hub/rollouts/scheduler.js';

async function setup(t: TestContext, backend: Backend, n: number, opts: { tenants?: string[]; labels?: (i: number) => Record<string, string> } = {}) {
  const th = await startHub(t, { backend, rolloutTickMs: 50, checkpointMs: 3_600_000 });
  const api = apiClient(() => th.url, th.adminToken);
  const events: TransitionEvent[] = [];
  th.hub.rollouts.events.on('transition', (e: TransitionEvent) => events.push(e));
  const tenants = opts.tenants ?? ['bank-a'];
  const agents: SimAgent[] = [];
  for (const [i, tenant] of tenants.entries()) {
    const share = Math.ceil(n / tenants.length);
    const count = Math.min(share, n - agents.length);
    agents.push(...(await simAgents(api, () => th.url, tenant, count, { labels: opts.labels, namePrefix: `h${i}` })));
  }
  t.after(() => agents.forEach((a) => a.stop()));
  await simRelease(api, 'payments', '1.0.0');
  await simRelease(api, 'payments', '2.0.0');
  await waitFor('agents connected', () => agents.every((a) => a.connected), 20_000);
  return { th, api, agents, events };
}

async function rollout(api: Api, body: Record<string, unknown>) {
  const r = await api('POST', '/v1/rollouts', { stack: 'payments', version: '2.0.0', selector: '*', ...body });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body as { id: string };
}

async function until(api: Api, id: string, states: string[], timeoutMs = 30_000) {
  return waitFor(`${id} in ${states.join('|')}`, async () => {
    const v = (await api('GET', `/v1/rollouts/${id}`)).body;
    return states.includes(v.state) ? v : null;
  }, timeoutMs, 50);
}

/** Puts every agent on payments@1.0.0 with a one-wave rollout. */
async function baseline(api: Api, agents: SimAgent[]) {
  const r = await rollout(api, { version: '1.0.0', waves: '100%' });
  await until(api, r.id, ['succeeded']);
  assert.ok(agents.every((a) => a.running.get('payments') === '1.0.0'));
}

for (const b of await backends()) {
for (const n of [1, 7, 100]) {
  test(`[${b}] waves 1,10%,50%,100% on ${n} simulated agents, each gated on the last one's bake`, async (t) => {
    const { api, agents, events } = await setup(t, b, n, { tenants: n > 1 ? ['bank-a', 'bank-b'] : ['bank-a'] });
    await baseline(api, agents);
    const r = await rollout(api, { waves: '1,10%,50%,100%', bakeMs: 150 });
    const v = await until(api, r.id, ['succeeded', 'paused', 'failed'], 60_000);
    assert.equal(v.state, 'succeeded');
    const expected = n === 1 ? [1] : n === 7 ? [1, 4, 7] : [1, 10, 50, 100];
    assert.deepEqual(v.waveList.map((w: { reach: number }) => w.reach), expected);
    assert.equal(v.done, n);
    assert.ok(agents.every((a) => a.running.get('payments') === '2.0.0'));
    assert.ok(agents.every(seqsIncreasing));
    // gating: every directive of wave k+1 comes after every target of wave k is done
    const mine = events.filter((e) => e.rollout === r.id);
    const posOf = new Map<string, number>(v.targets.map((x: { agent: string; position: number }) => [x.agent, x.position]));
    for (let w = 1; w < expected.length; w++) {
      const firstIssue = mine.findIndex((e) => e.kind === 'directive' && posOf.get(e.agentId!)! >= expected[w - 1]!);
      const lastDone = mine.reduce((acc, e, i) => (e.kind === 'target' && e.to === 'done' && posOf.get(e.agentId!)! < expected[w - 1]! ? i : acc), -1);
      assert.ok(firstIssue > lastDone, `wave ${w + 1} started before wave ${w} baked`);
    }
    // one rollout directive per agent
    assert.equal(mine.filter((e) => e.kind === 'directive').length, n);
  });
}

test(`[${b}] a wave wider than a chunk goes out chunk by chunk, each directive committed before it is sent; a pause between chunks stops the rest`, async (t) => {
  const { th, api, agents, events } = await setup(t, b, 30);
  await baseline(api, agents);
  th.hub.rollouts.chunkSize = 7;
  // Another connection sees a directive only once its transaction has committed. A synchronous
  // reader can check that at the very moment of sending: sqlite's (the send path is the same code
  // on PostgreSQL, where a second connection can only answer after the send).
  const reader = b === 'sqlite' ? new Database(dbPath(th.dataDir), { readonly: true, fileMustExist: true }) : null;
  t.after(() => reader?.close());
  const committed = reader ? reader.prepare('SELECT 1 FROM directives WHERE agent_id = ? AND seq = ?') : { get: () => true };
  const uncommitted: string[] = [];
  let frames = 0;
  const same: Promise<void>[] = [];
  const check = (agentId: string, msg: HubMessage) => {
    if (msg.type !== 'directive') return;
    const seq = (JSON.parse(Buffer.from(msg.directive.payload, 'base64').toString()) as { seq: number }).seq;
    if (!committed.get(agentId, seq)) uncommitted.push(`${agentId}#${seq}`);
    // a wave's frames are built from shared parts: the same frame as the one-off encoding
    else same.push((async () => assert.deepEqual(msg, await th.hub.directives.message(await th.hub.directives.get(agentId, seq))))());
    frames++;
  };
  const gw = th.hub.gateway;
  const send = gw.send.bind(gw);
  const sendEncoded = gw.sendEncoded.bind(gw);
  gw.send = (agentId: string, msg: HubMessage) => (check(agentId, msg), send(agentId, msg));
  gw.sendEncoded = (agentId: string, type: HubMessage['type'], text: string, seq?: number) => (check(agentId, JSON.parse(text) as HubMessage), sendEncoded(agentId, type, text, seq));
  // The operator pauses as soon as the first chunk is out.
  let paused = false;
  th.hub.rollouts.events.on('transition', (e: TransitionEvent) => {
    if (e.kind !== 'directive' || paused || e.version !== '2.0.0') return;
    paused = true;
    void th.hub.rollouts.command(e.rollout, 'pause', { actor: { kind: 'operator', id: 'test' }, surface: 'api' });
  });
  const r = await rollout(api, { waves: '100%', bakeMs: 0 });
  const p = await until(api, r.id, ['paused']);
  const issued = () => events.filter((e) => e.rollout === r.id && e.kind === 'directive').length;
  // a whole scheduler pass over the paused rollout, run to its end here: it issues nothing more
  await th.hub.rollouts.tick();
  // In process (sqlite) the pause commits before the next chunk starts; on PostgreSQL the next chunk may
  // already hold the rollout's lock when the pause comes (its transaction is real I/O): then it stops the one after.
  const first = issued();
  if (b === 'sqlite') assert.equal(first, 7, 'only the first chunk was issued');
  else assert.ok(first > 0 && first < 30 && first % 7 === 0, `${first} issued: whole chunks, and not all`);
  assert.equal(p.targets.filter((x: { state: string }) => x.state === 'waiting').length, 30 - first);
  await api('POST', `/v1/rollouts/${r.id}/resume`);
  const v = await until(api, r.id, ['succeeded', 'paused']);
  assert.equal(v.state, 'succeeded');
  assert.equal(v.done, 30);
  assert.equal(issued(), 30, 'one rollout directive per agent');
  assert.ok(agents.every((a) => a.running.get('payments') === '2.0.0'));
  assert.ok(agents.every(seqsIncreasing));
  assert.deepEqual(uncommitted, [], 'directives sent before their row was committed');
  assert.ok(frames >= 30, `${frames} directive frames seen`);
  await Promise.all(same);
  // every directive, ack and report has its audit entry
  const entries = (await api('GET', '/v1/audit/bank-a/entries?limit=1000')).body.entries as { action: string; details: { rollout?: string } }[];
  assert.equal(entries.filter((e) => e.action === 'directive.issue' && e.details.rollout === r.id).length, 30);
  assert.equal(entries.filter((e) => e.action === 'directive.accepted').length, 60);
});

test(`[${b}] a failing canary pauses the rollout; nobody else is touched; resume carries on`, async (t) => {
  const { api, agents } = await setup(t, b, 7);
  await baseline(api, agents);
  const r = await rollout(api, { waves: '1,50%,100%', bakeMs: 100 });
  const canary = (await api('GET', `/v1/rollouts/${r.id}`)).body.targets[0].agent as string;
  const c = agents.find((a) => a.id === canary)!;
  c.failing.add('payments@2.0.0');
  const v = await until(api, r.id, ['paused', 'succeeded']);
  assert.equal(v.state, 'paused');
  assert.match(v.reason, /1 failed/);
  assert.equal(v.targets[0].state, 'failed');
  assert.equal(v.targets[0].code, 'FERRY_E_UNHEALTHY');
  for (const a of agents) if (a !== c) assert.equal(a.received.length, 1, 'only the baseline directive');
  assert.equal((await api('POST', `/v1/rollouts/${r.id}/pause`)).body.error.code, 'FERRY_E_ROLLOUT_STATE');
  await api('POST', `/v1/rollouts/${r.id}/resume`);
  const done = await until(api, r.id, ['succeeded', 'paused']);
  assert.equal(done.state, 'succeeded');
  assert.equal(done.failed, 1);
});

test(`[${b}] passing --max-failures with --on-failure rollback restores the previous release on every agent changed`, async (t) => {
  const { th, api, agents } = await setup(t, b, 10);
  await baseline(api, agents);
  const r = await rollout(api, { waves: '2,5,100%', bakeMs: 100, maxFailures: 1, onFailure: 'rollback' });
  const order = (await api('GET', `/v1/rollouts/${r.id}`)).body.targets.map((x: { agent: string }) => x.agent) as string[];
  const byId = new Map(agents.map((a) => [a.id, a]));
  for (const id of order.slice(2, 4)) byId.get(id)!.failing.add('payments@2.0.0');
  const v = await until(api, r.id, ['rolled-back', 'failed', 'succeeded']);
  assert.equal(v.state, 'rolled-back', JSON.stringify(v.targets.map((x: { state: string }) => x.state)));
  for (const id of order.slice(0, 5)) {
    await waitFor(`${id} back on 1.0.0`, () => byId.get(id)!.running.get('payments') === '1.0.0');
    assert.equal(v.targets.find((x: { agent: string }) => x.agent === id).state, 'reverted');
  }
  for (const id of order.slice(5)) assert.equal(byId.get(id)!.received.length, 1, 'wave 3 never touched');
  assert.ok(agents.every(seqsIncreasing));
  const hubLog = (await api('GET', '/v1/audit/_hub/entries')).body.entries.map((e: { action: string }) => e.action);
  for (const a of ['rollout.create', 'rollout.wave', 'rollout.rolling-back', 'rollout.rolled-back']) assert.ok(hubLog.includes(a), a);
  void th;
});

test(`[${b}] an offline agent and a closed maintenance window wait without blocking the others`, async (t) => {
  const { api, agents } = await setup(t, b, 4);
  await baseline(api, agents);
  const [, offline, windowed] = agents as [SimAgent, SimAgent, SimAgent, SimAgent];
  offline.stop();
  windowed.windowClosed = true;
  await waitFor('offline seen', async () => (await api('GET', `/v1/agents/${offline.id}`)).body.status === 'disconnected');
  const r = await rollout(api, { waves: '100%', agentTimeoutMs: 3000, onTimeout: 'skip', retryMs: 200 });
  await waitFor('the two others done', async () => (await api('GET', `/v1/rollouts/${r.id}`)).body.done === 2, 10_000);
  let v = (await api('GET', `/v1/rollouts/${r.id}`)).body;
  const stateOf = (id: string) => v.targets.find((x: { agent: string }) => x.agent === id);
  assert.equal(stateOf(offline.id).state, 'waiting');
  assert.equal(stateOf(offline.id).seq, null);
  assert.ok(['waiting', 'issued'].includes(stateOf(windowed.id).state));
  windowed.windowClosed = false; // the window opens: the next retry goes through
  v = await until(api, r.id, ['succeeded', 'paused'], 15_000);
  assert.equal(v.state, 'succeeded');
  assert.equal(stateOf(windowed.id).state, 'done');
  assert.equal(stateOf(offline.id).state, 'skipped');
  assert.equal(stateOf(offline.id).code, 'timeout');
  assert.ok(windowed.received.length >= 3, 'refused at least once, then retried');
  assert.ok(seqsIncreasing(windowed));
  assert.equal(offline.running.get('payments'), '1.0.0');
});

test(`[${b}] the CLI: create, status --watch --json, label, and bad selectors and waves refused clearly`, async (t) => {
  const { th, api, agents } = await setup(t, b, 3, { labels: (i) => ({ env: i === 2 ? 'dev' : 'prod' }) });
  const env = { FERRY_HUB: th.url, FERRY_TOKEN: th.adminToken, XDG_CONFIG_HOME: th.dataDir };
  const lab = await run('ferry', ['agent', 'label', agents[0]!.id, 'ring=canary', 'env-', '--json'], { env });
  assert.equal(lab.code, 0, lab.stderr);
  assert.deepEqual(JSON.parse(lab.stdout).labels, { ring: 'canary' });

  for (const [args, code] of [
    [['--to', 'tenant in (bank-a'], 'FERRY_E_SELECTOR_INVALID'],
    [['--to', 'env=prod', '--waves', '1,50%'], 'FERRY_E_WAVES_INVALID'],
    [['--to', 'env=staging'], 'FERRY_E_SELECTOR_EMPTY'],
    [['--to', 'env=prod', '--bake', '10 minutes'], 'FERRY_E_VALIDATION'],
  ] as const) {
    const bad = await run('ferry', ['rollout', 'create', 'payments@1.0.0', ...args], { env });
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, new RegExp(`error ${code}`), bad.stderr);
  }
  const none = await run('ferry', ['rollout', 'create', 'payments@1.0.0', '--to', 'env=staging'], { env });
  assert.equal(none.code, 4, 'a selector that matches nothing is "not found" (exit 4), not a conflict');
  const created = await run('ferry', ['rollout', 'create', 'payments@1.0.0', '--to', 'tenant=bank-a,env!=dev', '--waves', '1,100%', '--bake', '0', '--json'], { env });
  assert.equal(created.code, 0, created.stderr);
  const id = JSON.parse(created.stdout).id as string;
  assert.match(id, /^R-\d+$/);
  assert.equal(JSON.parse(created.stdout).agents, 2);
  const watched = await run('ferry', ['rollout', 'status', id, '--watch', '--interval', '100ms', '--timeout', '30s', '--json'], { env });
  assert.equal(watched.code, 0, watched.stderr);
  assert.equal(JSON.parse(watched.stdout).state, 'succeeded');
  assert.match(watched.stderr, new RegExp(`${id} payments@1.0.0 succeeded`));
  const table = await run('ferry', ['rollout', 'status', id], { env });
  assert.match(table.stdout, /state\s+succeeded/);
  const ls = await run('ferry', ['rollout', 'ls'], { env });
  assert.match(ls.stdout, new RegExp(`${id}\\s+payments@1.0.0\\s+succeeded`));

  // a failing canary: --watch exits 1
  agents[0]!.failing.add('payments@2.0.0');
  const r2 = await run('ferry', ['rollout', 'create', 'payments@2.0.0', '--to', '*', '--waves', '1,100%', '--json'], { env });
  const id2 = JSON.parse(r2.stdout).id as string;
  const w2 = await run('ferry', ['rollout', 'status', id2, '--watch', '--interval', '100ms', '--timeout', '30s'], { env });
  assert.equal(w2.code, 1);
  assert.match(w2.stdout, /paused/);
  const ab = await run('ferry', ['rollout', 'abort', id2], { env });
  assert.equal(ab.code, 0, ab.stderr);
  assert.match(ab.stdout, /aborted/);
  const again = await run('ferry', ['rollout', 'resume', id2], { env });
  assert.equal(again.code, 5);
  assert.match(again.stderr, /FERRY_E_ROLLOUT_STATE/);
  void api;
});
}

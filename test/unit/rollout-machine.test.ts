// The rollout state machine, driven by a tiny in-memory stand-in for the
// scheduler: decisions are applied as the scheduler would, agents answer
// as scripted, and the clock is an input.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FerryError } from '../../shared/errors.js';
import { parseWaves, planWaves } from '../../hub/rollouts/waves.js';
import { command, decide, type AgentFacts, type Decision, type Rollout, type Target } from '../../hub/rollouts/machine.js';

type Behaviour = 'ok' | 'fail' | 'offline' | 'window' | 'silent';

function sim(n: number, waves: number[], opts: Partial<Rollout> = {}, behave: (i: number) => Behaviour = () => 'ok') {
  const r: Rollout = { id: 'R-1', stack: 's', version: '2', waves, wave: -1, state: 'running', since: 0, bakeMs: 10, maxFailures: 0, failuresAccepted: 0, onFailure: 'pause', agentTimeoutMs: 1000, onTimeout: 'failed', retryMs: 50, ...opts };
  const targets: Target[] = Array.from({ length: n }, (_x, i) => ({ agentId: `a${i}`, tenant: 't', position: i, state: 'pending', seq: null, previous: null, startedAt: null, appliedAt: null, retryAt: null, code: null }));
  const agents = targets.map((_t, i) => ({ b: behave(i), seq: 0, version: '1' as string, report: { version: '1', state: 'applied', runningVersion: '1', code: null, at: 0 } as NonNullable<AgentFacts['report']>, dir: null as AgentFacts['directive'], seqs: [] as number[] }));
  const log: Decision[] = [];
  let now = 0;
  const facts = (id: string): AgentFacts => {
    const a = agents[Number(id.slice(1))]!;
    return { connected: a.b !== 'offline', report: a.report, directive: a.dir, current: a.version };
  };
  const step = () => {
    const ds = decide(r, targets, facts, now);
    for (const d of ds) {
      log.push(d);
      switch (d.kind) {
        case 'start-wave':
          r.wave = d.wave;
          for (const t of targets) if (t.state === 'pending' && t.position < waves[d.wave]!) Object.assign(t, { state: 'waiting', startedAt: now });
          break;
        case 'issue': {
          const i = Number(d.agentId.slice(1));
          const a = agents[i]!;
          const t = targets[i]!;
          a.seq++;
          a.seqs.push(a.seq);
          if (t.seq === null) t.previous = d.previous;
          t.seq = a.seq;
          t.state = d.purpose === 'deploy' ? 'issued' : 'reverting';
          if (a.b === 'window') a.dir = { seq: a.seq, status: 'refused', code: 'FERRY_E_POLICY_WINDOW', issuedAt: now };
          else {
            a.dir = { seq: a.seq, status: 'accepted', code: null, issuedAt: now };
            if (a.b === 'silent') break;
            const ok = a.b === 'ok' || d.purpose === 'revert';
            a.report = ok ? { version: d.version, state: 'applied', runningVersion: d.version, code: null, at: now + 1 } : { version: d.version, state: 'rolled-back', runningVersion: a.version, code: 'FERRY_E_UNHEALTHY', at: now + 1 };
            if (ok) a.version = d.version;
          }
          break;
        }
        case 'target': {
          const t = targets.find((x) => x.agentId === d.agentId)!;
          assert.equal(t.state, d.from);
          Object.assign(t, { state: d.to }, d.code !== undefined ? { code: d.code } : {}, d.appliedAt !== undefined ? { appliedAt: d.appliedAt } : {}, d.retryAt !== undefined ? { retryAt: d.retryAt } : {});
          break;
        }
        case 'rollout':
          assert.equal(r.state, d.from);
          r.state = d.to;
          r.since = now;
          break;
      }
    }
    return ds.length;
  };
  const runUntil = (pred: () => boolean, limitMs = 20_000) => {
    while (!pred() && now < limitMs) {
      while (step() > 0);
      now += 5;
    }
  };
  return { r, targets, agents, log, step, runUntil, get now() { return now; } };
}

const started = (s: ReturnType<typeof sim>) => s.log.filter((d) => d.kind === 'start-wave').length;

for (const [n, expected] of [[1, [1]], [7, [1, 4, 7]], [100, [1, 10, 50, 100]]] as const) {
  test(`waves 1,10%,50%,100% on ${n} agents: each wave waits for the bake of the one before`, () => {
    // from the operator's text, through the parser and the planner, to the machine
    const waves = planWaves(parseWaves('1,10%,50%,100%'), n);
    assert.deepEqual(waves, expected);
    const s = sim(n, waves);
    let maxStartedBeyond = 0;
    s.runUntil(() => {
      // no target beyond the current wave is ever issued
      const reach = s.r.wave >= 0 ? expected[s.r.wave]! : 0;
      maxStartedBeyond = Math.max(maxStartedBeyond, s.targets.filter((t) => t.position >= reach && t.seq !== null).length);
      return s.r.state === 'succeeded';
    });
    assert.equal(s.r.state, 'succeeded');
    assert.equal(maxStartedBeyond, 0);
    assert.equal(started(s), expected.length);
    assert.ok(s.targets.every((t) => t.state === 'done' && t.previous === '1'));
    assert.ok(s.agents.every((a) => a.seqs.length === 1), 'one directive per agent');
    // a wave starts only after the previous wave's bake: the canary is done before wave 2 starts
    const firstWave2 = s.log.findIndex((d) => d.kind === 'start-wave' && d.wave === 1);
    if (firstWave2 >= 0) assert.ok(s.log.slice(0, firstWave2).some((d) => d.kind === 'target' && d.agentId === 'a0' && d.to === 'done'));
  });
}

test('a failing canary pauses the rollout before any other agent is touched', () => {
  const s = sim(7, [1, 4, 7], {}, (i) => (i === 0 ? 'fail' : 'ok'));
  s.runUntil(() => s.r.state !== 'running');
  assert.equal(s.r.state, 'paused');
  assert.equal(s.targets[0]!.state, 'failed');
  assert.equal(s.targets[0]!.code, 'FERRY_E_UNHEALTHY');
  assert.ok(s.targets.slice(1).every((t) => t.seq === null));
  // resume accepts the failure and carries on
  const c = command(s.r, s.targets, 'resume');
  Object.assign(s.r, { state: c.to, failuresAccepted: c.failuresAccepted });
  s.runUntil(() => s.r.state !== 'running');
  assert.equal(s.r.state, 'succeeded');
});

test('passing the failure threshold with --on-failure rollback restores every changed agent', () => {
  const s = sim(10, [1, 5, 10], { maxFailures: 1, onFailure: 'rollback' }, (i) => (i === 3 || i === 4 ? 'fail' : 'ok'));
  s.runUntil(() => s.r.state === 'rolled-back' || s.r.state === 'failed' || s.r.state === 'succeeded');
  assert.equal(s.r.state, 'rolled-back');
  const changed = s.targets.filter((t) => t.seq !== null);
  assert.equal(changed.length, 5);
  assert.ok(changed.every((t) => t.state === 'reverted'), JSON.stringify(changed.map((t) => t.state)));
  assert.ok(s.agents.slice(0, 5).every((a) => a.version === '1' && a.report.version === '1'));
  assert.ok(s.targets.slice(5).every((t) => t.seq === null && t.state === 'pending'));
  for (const a of s.agents) for (let i = 1; i < a.seqs.length; i++) assert.ok(a.seqs[i]! > a.seqs[i - 1]!);
});

test('an offline agent waits without blocking others in its wave, then times out as skipped', () => {
  const s = sim(4, [4], { onTimeout: 'skip', agentTimeoutMs: 200 }, (i) => (i === 2 ? 'offline' : 'ok'));
  s.runUntil(() => s.targets.filter((t) => t.state === 'done').length === 3, 150);
  assert.equal(s.targets[2]!.state, 'waiting');
  s.runUntil(() => s.r.state !== 'running');
  assert.equal(s.r.state, 'succeeded');
  assert.equal(s.targets[2]!.state, 'skipped');
  assert.equal(s.targets[2]!.seq, null, 'never issued');
});

test('a closed maintenance window: refused, retried later, counted failed at the timeout', () => {
  const s = sim(2, [2], { agentTimeoutMs: 500, retryMs: 100, maxFailures: 1 }, (i) => (i === 1 ? 'window' : 'ok'));
  s.runUntil(() => s.r.state !== 'running');
  assert.equal(s.targets[1]!.state, 'failed');
  assert.equal(s.targets[1]!.code, 'timeout');
  assert.ok(s.agents[1]!.seqs.length >= 3 && s.agents[1]!.seqs.length <= 6, `retried every 100 ms: ${s.agents[1]!.seqs.length}`);
  assert.equal(s.r.state, 'succeeded', 'one failure is within --max-failures 1');
});

test('operator commands are checked against the state', () => {
  const s = sim(3, [1, 3]);
  assert.throws(() => command(s.r, s.targets, 'resume'), (e: unknown) => e instanceof FerryError && e.code === 'FERRY_E_ROLLOUT_STATE');
  assert.equal(command(s.r, s.targets, 'pause').to, 'paused');
  s.r.wave = 0;
  assert.deepEqual(command(s.r, s.targets, 'promote'), { to: 'running', startWave: 1, failuresAccepted: 0 });
  s.r.state = 'succeeded';
  assert.throws(() => command(s.r, s.targets, 'abort'), /succeeded/);
  assert.equal(command(s.r, s.targets, 'rollback').to, 'rolling-back');
});

test('a paused rollout issues nothing new', () => {
  const s = sim(3, [3]);
  s.r.state = 'paused';
  s.r.wave = 0;
  for (const t of s.targets) Object.assign(t, { state: 'waiting', startedAt: 0 });
  assert.deepEqual(decide(s.r, s.targets, () => ({ connected: true, report: null, directive: null, current: null }), 10), []);
});

test('rolling back an agent that already rolled itself back: its accepted redirect counts as reverted', () => {
  const r: Rollout = { id: 'R-1', stack: 's', version: '2', waves: [1], wave: 0, state: 'rolling-back', since: 0, bakeMs: 0, maxFailures: 0, failuresAccepted: 0, onFailure: 'pause', agentTimeoutMs: 1000, onTimeout: 'failed', retryMs: 50 };
  const t: Target = { agentId: 'a0', tenant: 't', position: 0, state: 'reverting', seq: 3, previous: '1', startedAt: 0, appliedAt: null, retryAt: null, code: 'FERRY_E_UNHEALTHY' };
  const f: AgentFacts = { connected: true, report: { version: '2', state: 'rolled-back', runningVersion: '1', code: 'FERRY_E_UNHEALTHY', at: 5 }, directive: { seq: 3, status: 'pending', code: null, issuedAt: 10 }, current: '2' };
  assert.deepEqual(decide(r, [t], () => f, 20), [], 'not before the agent accepted the redirect');
  const accepted = { ...f, directive: { ...f.directive!, status: 'accepted' as const } };
  const ds = decide(r, [t], () => accepted, 20);
  assert.deepEqual(ds[0], { kind: 'target', agentId: 'a0', from: 'reverting', to: 'reverted' });
  assert.deepEqual(ds[1], { kind: 'rollout', from: 'rolling-back', to: 'rolled-back', reason: 'every changed agent is back on its previous release' });
});

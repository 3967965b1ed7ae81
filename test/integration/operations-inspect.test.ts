// Remote operations that look and repair, on the real engine: stats (once,
// watched, and the coarse sample in the agent's status; restarts as the
// engine counts them), a stack's networks and
// who is attached, a container taken off its network (drift) and joined
// again with `ferry network reconnect`; the bank's per-service `operations`
// rules refusing a kind with its code while allowing the others.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dockerOk, requireRegistry } from '../helpers/docker.js';
import { fleet, type FleetAgent } from '../helpers/fleet.js';
import { answered, chattyImage, cli, cliEnv, containers, streaming } from '../helpers/operations.js';
import { service } from '../helpers/signing.js';
import { waitFor } from '../helpers/tmp.js';

/** The chatty loop, after its first run exited 1 once (the file survives a restart of the same container). */
const CRASH_ONCE = ['sh', '-c', 'if [ ! -e /tmp/crashed ]; then touch /tmp/crashed; sleep 4; exit 1; fi; i=0; while true; do echo "line $i"; i=$((i+1)); sleep 0.2; done'];

interface Stats {
  src: string;
  stack: string;
  state: string;
  cpuPercent: number;
  memoryBytes: number;
  memoryLimitBytes: number;
  pids: number;
  restarts: number;
  at: string;
}

test('stats: per container figures once, watched and in the coarse sample the status carries; restarts as the engine counts them; the reader leaving ends the watch', async (t) => {
  if (!(await requireRegistry(t))) return;
  // no periodic drift pass: the engine's own restart policy brings the crashing container back
  const f = await fleet(t, { driftIntervalMs: 600_000, agentConfig: () => 'stats:\n  coarseIntervalMs: 2000\n' });
  const [a] = f.agents as [FleetAgent];
  const ferry = cli(f, a);
  const img = await chattyImage();
  await f.publish('ops', '1.0.0', { api: service(img, { replicas: 2, stopGracePeriodMs: 1000 }), flaky: service(img, { command: CRASH_ONCE, restart: 'always', stopGracePeriodMs: 1000 }) });
  await f.deploy(a, 'ops', '1.0.0');
  await f.waitRelease(a, 'ops', '1.0.0', 'applied');
  const [flaky] = await containers(a.id, 'ops', 'flaky');
  const engineRestarts = async () => Number(await dockerOk(['inspect', '--format', '{{.RestartCount}}', flaky!.id]));
  await waitFor('the engine restarted the flaky container once', async () => (await engineRestarts()) === 1 && (await containers(a.id, 'ops', 'flaky'))[0]!.state === 'running', 60_000);

  const once = await ferry(['stats', 'ops', '--agent', a.id, '--json']);
  assert.equal(once.code, 0, once.stderr);
  const stats = JSON.parse(once.stdout).result.stats as Stats[];
  assert.deepEqual(stats.map((s) => [s.src, s.state]), [['api#0', 'running'], ['api#1', 'running'], ['flaky#0', 'running']]);
  for (const s of stats) {
    assert.ok(s.memoryBytes > 0 && s.memoryLimitBytes >= s.memoryBytes, JSON.stringify(s));
    assert.ok(s.pids >= 1, JSON.stringify(s)); // sh, and its sleep now and then
    assert.ok(s.cpuPercent >= 0);
  }
  assert.deepEqual(stats.map((s) => s.restarts), [0, 0, await engineRestarts()]);

  // the coarse sample the agent sends with its status, for the fleet view, without anyone asking
  const coarse = await waitFor('a coarse sample of the three containers in the agent view', async () => {
    const s = (await f.th.api('GET', `/v1/agents/${a.id}`)).body.running?.samples as Stats[] | undefined;
    return s && s.length === 3 && s.every((x) => x.state === 'running') ? s : null;
  }, 30_000, 250);
  assert.deepEqual(coarse.map((s) => s.src), ['api#0', 'api#1', 'flaky#0']);
  assert.ok(coarse.every((s) => s.memoryBytes > 0 && s.pids >= 1), JSON.stringify(coarse));

  // the table, one service
  const table = await ferry(['stats', 'ops/api', '--agent', a.id]);
  assert.equal(table.code, 0, table.stderr);
  const rows = table.stdout.split('\n').filter(Boolean);
  assert.match(rows[0]!, /STACK\s+CONTAINER\s+STATE\s+CPU %\s+MEMORY\s+LIMIT\s+NET RX\s+NET TX\s+PIDS\s+RESTARTS/);
  assert.deepEqual(rows.slice(1).map((r) => r.split(/\s+/).slice(0, 3)), [['ops', 'api#0', 'running'], ['ops', 'api#1', 'running']]);

  // watched: a sample every second until the reader leaves
  const watch = streaming(t, cliEnv(f, a), ['stats', 'ops/api', '--agent', a.id, '--watch', '--interval', '1s']);
  const samples = () => watch.chunks().map((c) => JSON.parse(c.text) as Stats);
  await waitFor('four rounds of samples', () => new Set(samples().map((s) => s.at)).size >= 4, 30_000);
  const byRound = new Map<string, string[]>();
  for (const s of samples()) byRound.set(s.at, [...(byRound.get(s.at) ?? []), s.src]);
  const whole = [...byRound].slice(0, -1); // the last round may still be arriving
  for (const [at, srcs] of whole) assert.deepEqual(srcs.sort(), ['api#0', 'api#1'], `round ${at}`);
  const ats = whole.map(([at]) => Date.parse(at));
  for (let i = 1; i < ats.length; i++) assert.ok(ats[i]! - ats[i - 1]! >= 800, `sampled at about the interval asked, not a firehose: ${whole.map(([at]) => at).join(', ')}`);
  const id = watch.operationId();
  assert.equal(await watch.interrupt(), 130);
  const ended = await answered(f.th, id);
  assert.equal(ended.status, 'ok');
  assert.equal(ended.streamReason, 'cancelled');
});

test("networks: who is attached, a container taken off its network shown as drift and joined again by an operator; the bank's per-service rules refuse a kind with its code", async (t) => {
  if (!(await requireRegistry(t))) return;
  const f = await fleet(t, { driftIntervalMs: 600_000, policy: 'operations:\n  services:\n    ops/worker: { deny: [stop, scale] }\n    ops: { allow: [restart, stop, start, scale, logs, stats, networks, reconnect] }\n' });
  const [a] = f.agents as [FleetAgent];
  const ferry = cli(f, a);
  const img = await chattyImage();
  await f.publish('ops', '1.0.0', { api: service(img, { replicas: 2, networks: ['default', 'back'], stopGracePeriodMs: 1000 }), worker: service(img, { networks: ['back'], stopGracePeriodMs: 1000 }) }, { networks: { back: { internal: true } } });
  await f.deploy(a, 'ops', '1.0.0');
  await f.waitRelease(a, 'ops', '1.0.0', 'applied');

  type View = { stack: string; network: string; engineName: string; present: boolean; internal: boolean; attached: { src: string; name: string; aliases: string[] }[]; missing: string[] };
  const ls = async () => {
    const r = await ferry(['network', 'ls', '--agent', a.id, '--json']);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout).result.networks as View[];
  };
  const nets = await ls();
  assert.deepEqual(nets.map((n) => [n.network, n.engineName, n.present, n.internal, n.attached.map((x) => x.src), n.missing]), [
    ['back', a.network('ops', 'back'), true, true, ['api#0', 'api#1', 'worker#0'], []],
    ['default', a.network('ops'), true, false, ['api#0', 'api#1'], []],
  ]);
  assert.ok(nets[0]!.attached.find((x) => x.src === 'worker#0')!.aliases.includes('worker'), 'joined under its service name');
  // what the engine says of the same network
  const onEngine = (await dockerOk(['network', 'inspect', '--format', '{{range .Containers}}{{.Name}} {{end}}', a.network('ops', 'back')])).split(' ').filter(Boolean).sort();
  assert.deepEqual(onEngine, nets[0]!.attached.map((x) => x.name).sort());

  // drift: someone on the host takes api#1 off the back network
  const [, api1] = await containers(a.id, 'ops', 'api');
  await dockerOk(['network', 'disconnect', a.network('ops', 'back'), api1!.id]);
  const drifted = (await ls()).find((n) => n.network === 'back')!;
  assert.deepEqual(drifted.missing, ['api#1']);
  assert.deepEqual(drifted.attached.map((x) => x.src), ['api#0', 'worker#0']);
  const human = await ferry(['network', 'ls', '--agent', a.id, '--stack', 'ops']);
  assert.match(human.stdout, /ops\s+back\s+\S+\s+api#0, worker#0\s+api#1/);

  const fixed = await ferry(['network', 'reconnect', 'ops/api', '--agent', a.id, '--json']);
  assert.equal(fixed.code, 0, fixed.stderr);
  assert.deepEqual(JSON.parse(fixed.stdout).result.steps, [`api#1 joined ${a.network('ops', 'back')}`]);
  assert.deepEqual((await ls()).find((n) => n.network === 'back')!.missing, []);
  const aliases = JSON.parse(await dockerOk(['inspect', '--format', `{{json (index .NetworkSettings.Networks "${a.network('ops', 'back')}").Aliases}}`, api1!.id])) as string[];
  assert.ok(aliases.includes('api'), `reachable as api again: ${aliases.join(',')}`);
  const nothing = await ferry(['network', 'reconnect', 'ops/api', '--agent', a.id, '--json']);
  assert.deepEqual(JSON.parse(nothing.stdout).result.steps, [], 'nothing missing: nothing done');
  const bad = await ferry(['network', 'reconnect', 'ops/worker', '--network', 'default', '--agent', a.id]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /FERRY_E_OPERATION_INVALID: .*ops\/worker is not on network default/);

  // the bank's rules for ops/worker: stop and scale refused with their code (exit 3), restart allowed
  const workerBefore = (await containers(a.id, 'ops', 'worker'))[0]!;
  for (const args of [['service', 'stop', 'ops/worker'], ['service', 'scale', 'ops/worker', '--replicas', '2']]) {
    const r = await ferry([...args, '--agent', a.id]);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, new RegExp(`FERRY_E_POLICY_OPERATION: .*${args[1]} on ops/worker: denied by operations\\.services\\.ops/worker\\.deny`));
  }
  // exec is not in the stack's allow list (and no command is listed anyway)
  const exec = await ferry(['exec', 'ops/api', '--agent', a.id, '--', 'anything']);
  assert.equal(exec.code, 3, exec.stderr);
  assert.match(exec.stderr, /FERRY_E_POLICY_OPERATION: .*exec on ops\/api: not in operations\.services\.ops\.allow/);
  assert.deepEqual((await containers(a.id, 'ops', 'worker')).map((c) => [c.id, c.state, c.startedAt]), [[workerBefore.id, 'running', workerBefore.startedAt]], 'the refused operations did nothing');
  const restart = await ferry(['service', 'restart', 'ops/worker', '--agent', a.id]);
  assert.equal(restart.code, 0, restart.stderr);
  assert.ok((await containers(a.id, 'ops', 'worker'))[0]!.startedAt > workerBefore.startedAt);

  const entries = (await f.th.api('GET', '/v1/audit/bank-r/entries?limit=500')).body.entries as { action: string; outcome: string; details: Record<string, unknown> }[];
  const results = entries.filter((e) => e.action === 'operation.result').map((e) => [e.details.kind, e.outcome, e.details.code ?? null]);
  assert.deepEqual(results.filter((r) => r[1] === 'refused'), [['reconnect', 'refused', 'FERRY_E_OPERATION_INVALID'], ['stop', 'refused', 'FERRY_E_POLICY_OPERATION'], ['scale', 'refused', 'FERRY_E_POLICY_OPERATION'], ['exec', 'refused', 'FERRY_E_POLICY_OPERATION']]);
});

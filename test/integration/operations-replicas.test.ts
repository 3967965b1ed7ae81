// Remote operations across hub replicas on one PostgreSQL database: the
// operator talks to replica A, the agent's socket is held by replica B. The
// operation is stored and rung on A, sent by B, answered to A; a followed
// log and an exec's output travel B -> A through the database with credits
// granted back; holds and audit entries are the same whichever replica is
// asked; a log range larger than a stream's window goes through whole.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync } from 'node:fs';
import { join } from 'node:path';
import { dockerOk, requireRegistry } from '../helpers/docker.js';
import { fleet, type FleetAgent } from '../helpers/fleet.js';
import { startHub } from '../helpers/hub.js';
import { answered, chattyImage, containers, loudCommand, streaming } from '../helpers/operations.js';
import { postgresAvailable } from '../helpers/postgres.js';
import { run } from '../helpers/proc.js';
import { service } from '../helpers/signing.js';
import { skipOrFail } from '../helpers/skip.js';
import { tempDir, waitFor } from '../helpers/tmp.js';

const POLICY = 'operations:\n  exec:\n    ops/api:\n      commands:\n        greet: { argv: [echo, hello] }\n';

test('[postgres] an operation asked of one replica reaches the agent held by the other: restart, a stop held, logs followed and exec output relayed through the database', async (t) => {
  if (!(await postgresAvailable())) return skipOrFail(t, 'PostgreSQL does not answer (run scripts/test-env.sh): the cross-replica operations test NOT run');
  if (!(await requireRegistry(t))) return;
  const f = await fleet(t, { backend: 'postgres', policy: POLICY });
  const [a] = f.agents as [FleetAgent];
  const holder = f.th;
  // replica A: the same hub key (a copy of the data dir), the same database; no agent ever dials it
  const dirA = join(tempDir(t), 'replica-a');
  cpSync(holder.dataDir, dirA, { recursive: true });
  const requester = await startHub(t, { dataDir: dirA, database: holder.database!, adminToken: holder.adminToken, checkpointMs: 3_600_000 });
  assert.equal(requester.hub.cluster.shared && holder.hub.cluster.shared, true);
  await waitFor('A sees the agent connected (through B\'s lease)', async () => (await requester.api('GET', `/v1/agents/${a.id}`)).body.status === 'connected', 15_000);
  assert.deepEqual([requester.hub.gateway.localAgents(), holder.hub.gateway.localAgents()], [[], [a.id]], 'B holds the socket, A none');
  const env = { FERRY_HUB: requester.url, FERRY_TOKEN: requester.adminToken, XDG_CONFIG_HOME: a.stateDir };
  const ferry = (args: string[]) => run('ferry', args, { env });

  const img = await chattyImage();
  await f.publish('ops', '1.0.0', { api: service(img, { replicas: 2, stopGracePeriodMs: 1000 }), worker: service(img, { stopGracePeriodMs: 1000 }), loud: service(img, { command: loudCommand(40_000), stopGracePeriodMs: 1000 }) });
  await f.deploy(a, 'ops', '1.0.0');
  await f.waitRelease(a, 'ops', '1.0.0', 'applied');

  // restart asked of A: done by the agent on B, the answer back on A
  const before = await containers(a.id, 'ops', 'api');
  const r = await ferry(['service', 'restart', 'ops/api', '--agent', a.id, '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).status, 'ok');
  const after = await containers(a.id, 'ops', 'api');
  for (const [i, c] of after.entries()) assert.ok(c.startedAt > before[i]!.startedAt, `replica ${i} restarted`);

  // a stop asked of A, its hold seen through either replica
  const stop = await ferry(['service', 'stop', 'ops/worker', '--agent', a.id]);
  assert.equal(stop.code, 0, stop.stderr);
  assert.equal((await containers(a.id, 'ops', 'worker'))[0]!.state, 'exited');
  for (const th of [requester, holder]) {
    const held = await waitFor('the hold in the agent view', async () => (await th.api('GET', `/v1/agents/${a.id}`)).body.running?.holds?.find((h: { service: string }) => h.service === 'worker'));
    assert.equal(held.state, 'stopped');
  }

  // logs read and followed through A: the chunks come B -> database -> A
  const tail = await ferry(['logs', 'ops/api', '--agent', a.id, '--replica', '0', '--tail', '4']);
  assert.equal(tail.code, 0, tail.stderr);
  const tailed = [...tail.stdout.split('\n'), ...tail.stderr.split('\n')].filter((l) => l.startsWith('api#0 | '));
  assert.equal(tailed.length, 4, `${tail.stdout}\n${tail.stderr}`);
  const follow = streaming(t, env, ['logs', 'ops/api', '--agent', a.id, '--replica', '1', '--tail', '1', '-f', '--grep', 'line']);
  const followed = () => follow.chunks().flatMap((c) => c.text.split('\n').filter(Boolean).map((x) => `${c.src} ${x}`));
  // the chatty loop prints 5 lines a second
  await waitFor('40 followed lines through A', () => followed().length >= 40, 60_000);
  const seen = followed();
  assert.ok(seen.every((l) => /^api#1 \S+Z line \d+$/.test(l)), seen.slice(0, 5).join('\n'));
  const counters = seen.map((l) => Number(/ line (\d+)$/.exec(l)![1]));
  for (let i = 1; i < counters.length; i++) assert.equal(counters[i], counters[i - 1]! + 1, 'in order, none lost, none twice');
  const id = follow.operationId();
  assert.equal(await follow.interrupt(), 130);
  const ended = await answered(requester, id);
  assert.equal(ended.streamReason, 'cancelled');
  assert.equal(ended.status, 'ok');

  // 2.5 MiB, a range bigger than the 1 MiB a stream may have in flight without credit: the agent goes on only as A grants back what its client took, through B
  const [loud] = await containers(a.id, 'ops', 'loud');
  await waitFor('the loud service wrote its lines', async () => (await dockerOk(['logs', '--tail', '1', loud!.id])).startsWith('line 039999 '), 60_000);
  const big = await ferry(['logs', 'ops/loud', '--agent', a.id, '--no-prefix']);
  assert.equal(big.code, 0, big.stderr);
  const numbers = big.stdout.split('\n').filter(Boolean).map((l) => Number(/ line (\d{6}) \d+$/.exec(l)?.[1]));
  assert.equal(numbers.length, 40_000);
  assert.ok(numbers.every((n, i) => n === i), 'every line, in order');
  assert.match(big.stderr, /end of logs; [2-9]\.\d MiB/);

  // exec through A: output relayed, the transcript kept and verified
  const hello = await ferry(['exec', 'ops/api', '--agent', a.id, '--', 'greet']);
  assert.equal(hello.code, 0, hello.stderr);
  assert.equal(hello.stdout, 'hello\n');
  const [, opId] = /\((op_[0-9a-z]+)\)/.exec(hello.stderr) ?? [];
  const shown = await run('ferry', ['operation', 'show', opId!, '--transcript'], { env: { ...env, FERRY_HUB: holder.url } });
  assert.equal(shown.code, 0, shown.stderr);
  assert.equal(shown.stdout, 'hello\n');
  assert.match(shown.stderr, /transcript verified/);

  // one audit log: each request and each answer once, whichever replica recorded it
  const entries = (await requester.api('GET', '/v1/audit/bank-r/entries?limit=500')).body.entries as { action: string; outcome: string; details: Record<string, unknown> }[];
  assert.deepEqual(entries.filter((e) => e.action === 'operation.request').map((e) => e.details.kind), ['restart', 'stop', 'logs', 'logs', 'logs', 'exec']);
  assert.deepEqual(entries.filter((e) => e.action === 'operation.result').map((e) => [e.details.kind, e.outcome]), [['restart', 'ok'], ['stop', 'ok'], ['logs', 'ok'], ['logs', 'ok'], ['logs', 'ok'], ['exec', 'ok']]);
});

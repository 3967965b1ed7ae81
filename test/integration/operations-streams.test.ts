// Streamed remote operations on the real engine: logs (tail, since/until,
// grep, a download, follow across a container restart), exec of what the
// bank's policy lists (and refusals of what it does not), replayed, expired
// and misbound operations, maintenance windows; a reader that stops reading
// while a deploy goes through.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { get, type IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { PAYLOAD_TYPES, addSignature, createEnvelope, signatureFor } from '../../shared/dsse.js';
import { canonicalJson } from '../../shared/release.js';
import type { Operation } from '../../shared/operation.js';
import type { OperationResultMessage } from '../../shared/protocol.js';
import { loadOrCreateHubKey } from '../../hub/hub-key.js';
import { dockerOk, requireRegistry } from '../helpers/docker.js';
import { fleet, type FleetAgent } from '../helpers/fleet.js';
import { service } from '../helpers/signing.js';
import { tempDir, waitFor } from '../helpers/tmp.js';
import { answered, chattyImage, cli, cliEnv, containers, loudCommand, streaming } from '../helpers/operations.js';

const POLICY = `
operations:
  exec:
    ops/api:
      commands:
        greet: { argv: [echo, hello] }
        say: { argv: [echo], args: ['[a-z]{1,10}', '[0-9]{1,3}'] }
        fail: { argv: [sh, -c, 'echo oops >&2; exit 3'] }
    ops/shelly:
      shell: true
`;

test('logs: tail, since and until, grep, a download, and follow across a container restart until the reader leaves', async (t) => {
  if (!(await requireRegistry(t))) return;
  const f = await fleet(t, { policy: POLICY });
  const [a] = f.agents as [FleetAgent];
  const ferry = cli(f, a);
  const img = await chattyImage();
  await f.publish('ops', '1.0.0', { api: service(img, { stopGracePeriodMs: 1000 }) });
  await f.deploy(a, 'ops', '1.0.0');
  await f.waitRelease(a, 'ops', '1.0.0', 'applied');
  const [c] = await containers(a.id, 'ops', 'api');
  const engineLines = async () => (await dockerOk(['logs', '--timestamps', c!.id])).split('\n').filter(Boolean); // stdout lines
  await waitFor('some log lines', async () => (await engineLines()).length >= 6, 20_000);

  const tail = await ferry(['logs', 'ops/api', '--agent', a.id, '--tail', '2']);
  assert.equal(tail.code, 0, tail.stderr);
  const outLines = tail.stdout.split('\n').filter(Boolean);
  const errLines = tail.stderr.split('\n').filter((l) => l.startsWith('api#0 | '));
  assert.equal(outLines.length + errLines.length, 2, `${tail.stdout}\n${tail.stderr}`);
  for (const l of outLines) assert.match(l, /^api#0 \| \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z line \d+$/);
  for (const l of errLines) assert.match(l, /^api#0 \| \S+Z err \d+$/);
  assert.match(tail.stderr, /end of logs/);

  // since and until (to the millisecond): exactly the engine's lines in that range (stdout ones), by their timestamps
  const all = await engineLines();
  const from = all[1]!.split(' ')[0]!;
  const to = new Date(Date.parse(all[4]!.split(' ')[0]!) + 1).toISOString(); // just after line 4 (nanoseconds beyond the ms)
  const range = await ferry(['logs', 'ops/api', '--agent', a.id, '--since', from, '--until', to, '--no-prefix', '--grep', 'line']);
  assert.equal(range.code, 0, range.stderr);
  const got = range.stdout.split('\n').filter(Boolean);
  const want = all.filter((l) => {
    const ts = Date.parse(l.split(' ')[0]!);
    return ts >= Date.parse(from) && ts <= Date.parse(to);
  });
  assert.deepEqual(got.map((l) => l.split(' ').slice(1).join(' ')), want.map((l) => l.split(' ').slice(1).join(' ')));

  // grep: stderr lines only
  const grep = await ferry(['logs', 'ops/api', '--agent', a.id, '--grep', 'err', '--tail', '5']);
  assert.equal(grep.stdout, '');
  assert.ok(grep.stderr.split('\n').filter((l) => l.startsWith('api#0 | ')).every((l) => / err \d+$/.test(l)));

  // a download of a range, as a file
  const file = join(tempDir(t), 'api.log');
  const dl = await ferry(['logs', 'ops/api', '--agent', a.id, '--until', to, '--output', file]);
  assert.equal(dl.code, 0, dl.stderr);
  assert.match(dl.stderr, new RegExp(`written to ${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}`));
  const saved = readFileSync(file, 'utf8').split('\n').filter(Boolean);
  assert.ok(saved.length >= 8, saved.join('\n'));
  assert.ok(saved.some((l) => /^api#0 \| \S+ line 0$/.test(l)) && saved.some((l) => /^api#0 \| \S+ err 0$/.test(l)));

  // follow across a restart: lines before and after (the counter starts again at 0), none twice; then the reader leaves
  const follow = streaming(t, cliEnv(f, a), ['logs', 'ops/api', '--agent', a.id, '--tail', '1', '-f', '--grep', 'line']);
  const lines = follow.lines;
  await waitFor('followed lines', () => lines().length >= 3, 20_000);
  const restart = await ferry(['service', 'restart', 'ops/api', '--agent', a.id]);
  assert.equal(restart.code, 0, restart.stderr);
  const restartedAt = (await containers(a.id, 'ops', 'api'))[0]!.startedAt;
  await waitFor('lines from after the restart', () => lines().some((l) => l.split(' ')[0]! > restartedAt && / line [0-9]$/.test(l)), 30_000);
  const seen = lines();
  assert.equal(new Set(seen).size, seen.length, 'no line twice');
  assert.ok(seen.filter((l) => / line 0$/.test(l)).length >= 1 && seen.some((l) => l.split(' ')[0]! < restartedAt), 'lines from before and after the restart');
  const id = follow.operationId();
  const code = await follow.interrupt();
  assert.equal(code, 130);
  const ended = await answered(f.th, id);
  assert.equal(ended.status, 'ok');
  assert.equal(ended.streamReason, 'cancelled');
  assert.ok(ended.bytes > 0);
});

test('exec: listed commands with arguments by pattern, their exit codes and a verifiable transcript; unlisted commands, bad arguments and a shell refused', async (t) => {
  if (!(await requireRegistry(t))) return;
  const f = await fleet(t, { policy: POLICY });
  const [a] = f.agents as [FleetAgent];
  const ferry = cli(f, a);
  const img = await chattyImage();
  await f.publish('ops', '1.0.0', { api: service(img, { stopGracePeriodMs: 1000 }), shelly: service(img, { stopGracePeriodMs: 1000 }) });
  await f.deploy(a, 'ops', '1.0.0');
  await f.waitRelease(a, 'ops', '1.0.0', 'applied');

  const hello = await ferry(['exec', 'ops/api', '--agent', a.id, '--', 'greet']);
  assert.equal(hello.code, 0, hello.stderr);
  assert.equal(hello.stdout, 'hello\n');
  const [, digest, id] = /transcript (sha256:[0-9a-f]{64}) \((op_[0-9a-z]+)\)/.exec(hello.stderr) ?? [];
  assert.ok(id, hello.stderr);
  const say = await ferry(['exec', 'ops/api', '--agent', a.id, '--', 'say', 'abc', '12']);
  assert.equal(say.stdout, 'abc 12\n');
  const fail = await ferry(['exec', 'ops/api', '--agent', a.id, '--', 'fail']);
  assert.equal(fail.code, 3, 'the command\'s exit code');
  assert.match(fail.stderr, /^oops$/m);
  const shell = await ferry(['exec', 'ops/shelly', '--agent', a.id, '--shell', 'echo $((6*7)) | tr 4 x']);
  assert.equal(shell.stdout, 'x2\n', shell.stderr);

  // the transcript the hub kept, proved by the digest in the audit entry
  const shown = await ferry(['operation', 'show', id!, '--transcript']);
  assert.equal(shown.code, 0, shown.stderr);
  assert.equal(shown.stdout, 'hello\n');
  assert.match(shown.stderr, new RegExp(`transcript verified: ${digest}`));
  const entries = (await f.th.api('GET', '/v1/audit/bank-r/entries?limit=500')).body.entries as { action: string; details: Record<string, unknown> }[];
  const result = entries.find((e) => e.action === 'operation.result' && e.details.operation === id)!;
  assert.equal(result.details.transcriptDigest, digest);
  assert.equal(result.details.agentDigest, digest, 'the agent sent what the hub kept');
  assert.equal(result.details.exitCode, 0);

  for (const [args, why] of [
    [['--', 'rm', '-rf', '/'], /command "rm" is not listed \(operations.exec lists: greet, say, fail\)/],
    [['--', 'say', 'ABC'], /say: argument 1 "ABC" does not match \[a-z\]\{1,10\}/],
    [['--', 'say', 'a', '1', 'x'], /say takes at most 2 argument\(s\)/],
    [['--shell', 'id'], /a shell is not allowed here/],
  ] as const) {
    const r = await ferry(['exec', 'ops/api', '--agent', a.id, ...args]);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /FERRY_E_POLICY_EXEC/);
    assert.match(r.stderr, why);
  }
  const refusals = readFileSync(join(a.stateDir, 'refusals.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { kind: string; code: string });
  assert.equal(refusals.filter((r) => r.kind === 'operation' && r.code === 'FERRY_E_POLICY_EXEC').length, 4);
});

test('replayed, expired, long-lived and misbound operations are refused by the agent with their codes; outside a maintenance window changes are refused, reads are not', async (t) => {
  if (!(await requireRegistry(t))) return;
  const f = await fleet(t, { policy: POLICY });
  const [a] = f.agents as [FleetAgent];
  const ferry = cli(f, a);
  const img = await chattyImage();
  await f.publish('ops', '1.0.0', { api: service(img, { stopGracePeriodMs: 1000 }) });
  await f.deploy(a, 'ops', '1.0.0');
  await f.waitRelease(a, 'ops', '1.0.0', 'applied');
  const ok = await ferry(['service', 'restart', 'ops/api', '--agent', a.id, '--json']);
  assert.equal(ok.code, 0, ok.stderr);
  const done = JSON.parse(ok.stdout) as { id: string };

  const hub = f.th.hub;
  const answer = (id: string) => new Promise<OperationResultMessage>((resolve) => hub.gateway.on('operation-result', (agentId: string, m: OperationResultMessage) => agentId === a.id && m.id === id && resolve(m)));
  const send = (id: string, operation: unknown) => hub.gateway.send(a.id, { type: 'operation', id, operation: operation as never, credit: 0 });
  const startedBefore = (await containers(a.id, 'ops', 'api'))[0]!.startedAt;

  // the same signed operation again
  const stored = (await hub.store.operations.find(done.id))!;
  const replay = answer(done.id);
  send(done.id, stored.envelope);
  assert.equal((await replay).code, 'FERRY_E_OPERATION_REPLAY');

  // hub-signed, but expired / living too long / for another agent
  const key = loadOrCreateHubKey(f.th.dataDir);
  const now = Date.now();
  const signed = (o: Partial<Operation>) => {
    const doc: Operation = { _type: 'operation', id: `op_${Math.random().toString(36).slice(2, 14)}`, tenant: 'bank-r', agent: a.id, seq: 1000 + Math.floor(Math.random() * 1e6), issuedAt: now, expiresAt: now + 60_000, kind: 'restart', stack: 'ops', service: 'api', args: {}, ...o };
    const env = createEnvelope(PAYLOAD_TYPES.operation, canonicalJson(doc));
    return { id: doc.id, env: addSignature(env, signatureFor(env, key)) };
  };
  for (const [o, code] of [
    [{ issuedAt: now - 120_000, expiresAt: now - 60_000 }, 'FERRY_E_OPERATION_EXPIRED'],
    [{ expiresAt: now + 3_600_000 }, 'FERRY_E_OPERATION_EXPIRED'],
    [{ agent: 'agt_someoneelse' }, 'FERRY_E_OPERATION_BINDING'],
    [{ tenant: 'bank-x' }, 'FERRY_E_OPERATION_BINDING'],
  ] as const) {
    const s = signed(o);
    const r = answer(s.id);
    send(s.id, s.env);
    assert.equal((await r).code, code, JSON.stringify(o));
  }
  // signed by another key
  const forged = signed({});
  const otherKey = loadOrCreateHubKey(tempDir(t));
  const forgedEnv = addSignature(createEnvelope(PAYLOAD_TYPES.operation, Buffer.from(forged.env.payload, 'base64')), signatureFor(forged.env, otherKey));
  const fr = answer(forged.id);
  send(forged.id, forgedEnv);
  assert.equal((await fr).code, 'FERRY_E_SIG_THRESHOLD');
  assert.equal((await containers(a.id, 'ops', 'api'))[0]!.startedAt, startedBefore, 'none of them restarted anything');
  const refused = readFileSync(join(a.stateDir, 'refusals.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { kind: string; code: string });
  assert.deepEqual(refused.filter((r) => r.kind === 'operation').map((r) => r.code), ['FERRY_E_OPERATION_REPLAY', 'FERRY_E_OPERATION_EXPIRED', 'FERRY_E_OPERATION_EXPIRED', 'FERRY_E_OPERATION_BINDING', 'FERRY_E_OPERATION_BINDING', 'FERRY_E_SIG_THRESHOLD']);

  // a maintenance window that is not now: restart refused (exit 5), logs still read
  const days = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];
  const notToday = days[(new Date().getUTCDay() + 3) % 7];
  writeFileSync(a.policyFile, `${POLICY}maintenanceWindows:\n  - days: [${notToday}]\n    start: "01:00"\n    end: "02:00"\n`);
  await a.daemon.stop();
  a.start();
  await waitFor('agent reconnected', async () => (await f.th.api('GET', `/v1/agents/${a.id}`)).body.status === 'connected', 15_000);
  const outside = await ferry(['service', 'restart', 'ops/api', '--agent', a.id]);
  assert.equal(outside.code, 5, outside.stderr);
  assert.match(outside.stderr, /FERRY_E_POLICY_WINDOW: .*restart on ops\/api changes what runs and is allowed only in a maintenance window/);
  const read = await ferry(['logs', 'ops/api', '--agent', a.id, '--tail', '1']);
  assert.equal(read.code, 0, read.stderr);
});

test('a reader that stops reading holds its log stream back, not the agent: a deploy goes through meanwhile, then every line arrives in order', async (t) => {
  if (!(await requireRegistry(t))) return;
  const f = await fleet(t, {});
  const [a] = f.agents as [FleetAgent];
  const img = await chattyImage();
  const LINES = 200_000; // 13 MiB of text, 20 MiB with timestamps: more than the stream's window and the sockets' buffers
  const release = (v: string) => ({ loud: service(img, { command: loudCommand(LINES), stopGracePeriodMs: 1000 }), api: service(img, { stopGracePeriodMs: 1000, environment: { V: v } }) });
  await f.publish('ops', '1.0.0', release('1'));
  await f.publish('ops', '1.0.1', release('2'));
  await f.deploy(a, 'ops', '1.0.0');
  await f.waitRelease(a, 'ops', '1.0.0', 'applied');
  const [loud] = await containers(a.id, 'ops', 'loud');
  await waitFor('the loud service wrote its lines', async () => (await dockerOk(['logs', '--tail', '1', loud!.id])).startsWith(`line ${String(LINES - 1).padStart(6, '0')} `), 120_000);

  // the client reads the first bytes, then nothing
  const res = await new Promise<IncomingMessage>((resolve, reject) => get(`${f.th.url}/v1/agents/${a.id}/logs?stack=ops&service=loud`, { headers: { authorization: `Bearer ${f.th.adminToken}` } }, resolve).on('error', reject));
  assert.equal(res.statusCode, 200);
  res.pause();
  await waitFor('the stream started', () => res.readableLength > 0);
  const id = String(res.headers['x-ferry-operation']);

  // meanwhile a deploy to the same agent, and the agent stays connected
  const d = await f.deploy(a, 'ops', '1.0.1');
  assert.equal(d.status, 'accepted', JSON.stringify(d));
  await f.waitRelease(a, 'ops', '1.0.1', 'applied');
  assert.equal((await f.th.api('GET', `/v1/agents/${a.id}`)).body.status, 'connected');
  assert.equal((await f.th.api('GET', `/v1/operations/${id}`)).body.status, 'pending', 'the stream still waits for its reader');

  // the reader comes back: the whole range, in order
  let text = '';
  res.setEncoding('utf8');
  res.on('data', (c: string) => (text += c));
  res.resume();
  await new Promise((r) => res.on('end', r));
  const lines = text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { type: string; chunks?: { text: string }[]; operation?: { status: string; streamReason: string; bytes: number } });
  const got = lines.flatMap((l) => (l.chunks ?? []).flatMap((c) => c.text.split('\n').filter(Boolean)));
  assert.equal(got.length, LINES);
  assert.ok(got.every((l, i) => l.endsWith(` line ${String(i).padStart(6, '0')} 0123456789012345678901234567890123456789012345678901`)), 'every line, in order, once');
  const end = lines.at(-1)!;
  assert.equal(end.type, 'end');
  assert.deepEqual([end.operation!.status, end.operation!.streamReason], ['ok', 'eof']);
  assert.ok(end.operation!.bytes > 13 * 1024 * 1024);
});

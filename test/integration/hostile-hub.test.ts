// The bank's side holds against a hostile hub: a real process holding the
// real hub's signing key (test/helpers/hostile-hub.ts) takes the hub's place
// on its port and speaks the real protocol over a real WebSocket to a real
// agent process. Future-dated documents are refused and never stored, and
// the real hub deploys afterwards; garbage and oversized frames get the hub
// dropped and retried with backoff; a real hub serving a rewritten audit log
// raises an alarm the institution and the hub both see; trusted time poisoned
// by an earlier version is recovered.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HUB_KEY_FILE } from '../../hub/hub-key.js';
import { leafHash } from '../../shared/merkle.js';
import { buildTestImage, requireRegistry } from '../helpers/docker.js';
import { fleet, type Fleet, type FleetAgent } from '../helpers/fleet.js';
import { copyStore, dropAuditTriggers, rawSqlOn } from '../helpers/hub.js';
import type { HostileConfig, HostileStep } from '../helpers/hostile-hub.js';
import { daemon, run, type Daemon } from '../helpers/proc.js';
import { apiClient } from '../helpers/sim-agents.js';
import { service } from '../helpers/signing.js';
import { tempDir, waitFor } from '../helpers/tmp.js';

const TEN_YEARS = 3652 * 86_400_000;
const TENANT = 'bank-r';
type Line = Record<string, any>;

/** The agent's pino lines so far. */
const logOf = (a: FleetAgent): Line[] =>
  a.daemon
    .output()
    .split('\n')
    .flatMap((l) => {
      try {
        return l.startsWith('{') ? [JSON.parse(l) as Line] : [];
      } catch {
        return [];
      }
    });

/** A fleet of one agent that runs payments@1.0.0 and has witnessed a checkpoint; 2.0.0 is published. */
async function running(t: TestContext): Promise<{ f: Fleet; a: FleetAgent; witnessed: number }> {
  const f = await fleet(t, { bakeMs: 300 });
  const a = f.agents[0]!;
  const img = (await buildTestImage('ferry-test/hostile', 'v1', { push: true })).ref!;
  for (const v of ['1.0.0', '2.0.0']) await f.publish('payments', v, { web: service(img, { environment: { V: v }, stopGracePeriodMs: 1000 }) });
  assert.equal((await f.deploy(a, 'payments', '1.0.0')).status, 'accepted');
  await f.waitRelease(a, 'payments', '1.0.0', 'applied');
  const cp = await f.th.api('POST', `/v1/audit/${TENANT}/checkpoint`);
  assert.equal(cp.status, 200);
  await waitFor('the agent cosigned', async () => (await f.th.hub.audit.lastWitnessed(TENANT, a.id))?.size === cp.body.size, 15_000);
  return { f, a, witnessed: cp.body.size as number };
}

interface Hostile {
  d: Daemon;
  events(): Line[];
  waitEvent(what: string, pred: (e: Line) => boolean, timeoutMs?: number): Promise<Line>;
}

/** Closes the real hub and starts the hostile one on its port, with its key. */
async function hostileHub(t: TestContext, f: Fleet, a: FleetAgent, connections: HostileStep[][]): Promise<Hostile> {
  const port = Number(new URL(f.th.url).port);
  const keyFile = join(f.th.dataDir, HUB_KEY_FILE);
  await f.closeHub();
  const cfg: HostileConfig = { port, keyFile, agentId: a.id, tenant: TENANT, heartbeatMs: 15_000, connections };
  const file = join(tempDir(t), 'hostile.json');
  writeFileSync(file, JSON.stringify(cfg));
  const d = daemon(t, 'hostileHub', [file]);
  await d.waitFor(/"event":"listening"/);
  const events = () => d.output().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Line);
  return {
    d,
    events,
    waitEvent: (what, pred, timeoutMs = 20_000) => waitFor(what, () => events().find(pred), timeoutMs),
  };
}

test('a hostile hub with the real key: a directive and a checkpoint dated ten years ahead are refused and never stored; the real hub deploys afterwards', async (t) => {
  if (!(await requireRegistry(t))) return;
  const { f, a, witnessed } = await running(t);
  const seq = (await f.th.api('GET', `/v1/agents/${a.id}`)).body.desired.seq as number;
  const rel2 = (await f.th.api('GET', '/v1/releases/payments/2.0.0')).body;
  const trustBefore = JSON.parse(readFileSync(join(a.stateDir, 'trust.json'), 'utf8'));
  const auditBefore = readFileSync(join(a.stateDir, 'audit.json'), 'utf8');
  const now = Date.now();
  const h = await hostileHub(t, f, a, [
    [
      { kind: 'directive', seq: seq + 1, issuedAt: now + TEN_YEARS, expiresAt: now + TEN_YEARS + 3600_000, rootVersion: 1, releases: [{ stack: 'payments', version: '2.0.0', digest: rel2.digest, envelope: rel2.envelope }] },
      { kind: 'await', type: 'ack' },
      { kind: 'checkpoint', size: witnessed + 1, root: 'ab'.repeat(32), at: now + TEN_YEARS, fromSize: witnessed, consistency: [] },
      { kind: 'await', type: 'error' },
    ],
  ]);
  const ack = (await h.waitEvent('the ack', (e) => e.event === 'received' && e.msg.type === 'ack')).msg;
  assert.deepEqual({ seq: ack.seq, accepted: ack.accepted, code: ack.code }, { seq: seq + 1, accepted: false, code: 'FERRY_E_CLOCK_AHEAD' });
  // the hostile hub's welcome told the truth about its clock: the agent says its own clock is not the one at fault
  assert.match(ack.message, new RegExp(`directive seq ${seq + 1} is dated \\S+, 3652 days ahead of this host's clock \\(\\S+; allowed 5 min\\); this host's clock is not at fault: the hub's clock agreed with it at connect`));
  const err = (await h.waitEvent('the checkpoint refusal', (e) => e.event === 'received' && e.msg.type === 'error')).msg;
  assert.equal(err.code, 'FERRY_E_CLOCK_AHEAD');
  assert.match(err.message, new RegExp(`audit checkpoint of size ${witnessed + 1} is dated \\S+, 3652 days ahead`));
  assert.ok(!h.events().some((e) => e.event === 'received' && e.msg.type === 'cosign'), 'the future checkpoint was not cosigned');

  // nothing of either was stored: trusted time, the accepted directive and the witnessed log are as they were
  const trustAfter = JSON.parse(readFileSync(join(a.stateDir, 'trust.json'), 'utf8'));
  assert.equal(trustAfter.state.maxIssuedAt, trustBefore.state.maxIssuedAt);
  assert.ok(trustAfter.state.maxIssuedAt <= Date.now() + 5 * 60_000);
  assert.equal(trustAfter.desired.seq, seq);
  assert.equal(readFileSync(join(a.stateDir, 'audit.json'), 'utf8'), auditBefore);
  const refusals = readFileSync(join(a.stateDir, 'refusals.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Line);
  assert.deepEqual(refusals.slice(-2).map((r) => `${r.kind} ${r.code}`), ['directive FERRY_E_CLOCK_AHEAD', 'checkpoint FERRY_E_CLOCK_AHEAD']);
  const status = await run('agent', ['status', '--state-dir', a.stateDir, '--config', a.configFile]);
  assert.match(status.stdout, new RegExp(`refused\\s+\\S+ directive seq ${seq + 1} FERRY_E_CLOCK_AHEAD`));
  assert.match(status.stdout, /refused\s+\S+ checkpoint FERRY_E_CLOCK_AHEAD/);

  // the real hub again: its next directive (the same seq the hostile one claimed) is accepted and applied, its checkpoint witnessed
  await h.d.stop();
  await f.reopenHub();
  await waitFor('the agent back on the real hub', async () => (await f.th.api('GET', `/v1/agents/${a.id}`)).body.status === 'connected', 20_000);
  const d = await f.deploy(a, 'payments', '2.0.0');
  assert.deepEqual({ status: d.status, seq: d.seq }, { status: 'accepted', seq: seq + 1 });
  await f.waitRelease(a, 'payments', '2.0.0', 'applied');
  const cp = await f.th.api('POST', `/v1/audit/${TENANT}/checkpoint`);
  await waitFor('the real checkpoint cosigned', async () => (await f.th.hub.audit.lastWitnessed(TENANT, a.id))?.size === cp.body.size, 15_000);
});

test('a hostile hub sending 1,000 garbage frames, then a 64 MiB frame, is dropped each time with the code in the log, and retried with backoff', async (t) => {
  if (!(await requireRegistry(t))) return;
  const { f, a } = await running(t);
  const h = await hostileHub(t, f, a, [[{ kind: 'garbage', count: 1000 }], [{ kind: 'big', bytes: 64 * 1024 * 1024 }], []]);
  await h.waitEvent('a third connection: restored', (e) => e.event === 'connection' && e.n === 3, 60_000);

  // 1,000 garbage frames: nine error replies, then the agent closes with 1008
  const closed1 = await h.waitEvent('the first connection closed', (e) => e.event === 'closed' && e.n === 1);
  assert.equal(closed1.code, 1008);
  const replies = h.events().filter((e) => e.event === 'received' && e.n === 1 && e.msg.type === 'error');
  assert.equal(replies.length, 9, 'an error reply per bad frame until the tenth drops the hub, not 1,000');
  assert.equal(replies[0]!.msg.code, 'FERRY_E_PROTOCOL_MALFORMED');
  const log = logOf(a);
  assert.equal(log.filter((l) => l.msg === 'bad message from hub').length, 9, 'nine warnings, not 1,000');
  const dropped = log.findIndex((l) => /^the hub sent 10 bad messages within 60 s; dropping the connection$/.test(l.msg));
  assert.ok(dropped >= 0, 'the drop is logged');
  assert.deepEqual([log[dropped]!.level, log[dropped]!.code], ['error', 'FERRY_E_PROTOCOL_MALFORMED']);

  // 64 MiB: refused by the frame header, with its code in the log
  const closed2 = await h.waitEvent('the second connection closed', (e) => e.event === 'closed' && e.n === 2);
  assert.equal(closed2.code, 1009);
  const tooBig = log.findIndex((l) => l.msg === 'the hub sent a frame this agent refuses; connection closed');
  assert.ok(tooBig > dropped, 'the oversized frame is logged');
  assert.equal(log[tooBig]!.code, 'FERRY_E_PROTOCOL_TOO_LARGE');
  // the agent's close frame says 1009 (the hostile hub saw it); its own socket ends abnormally (1006) as the hub keeps sending: the code tells why
  assert.ok(log.some((l, i) => i > tooBig && l.msg === 'disconnected from hub' && l.code === 'FERRY_E_PROTOCOL_TOO_LARGE'), JSON.stringify(log.slice(tooBig, tooBig + 4)));

  // each drop counts as a failed attempt: the backoff grows instead of starting over
  const retryAfter = (i: number) => log.slice(i).find((l) => l.msg === 'reconnecting after delay')!;
  const [r1, r2] = [retryAfter(dropped), retryAfter(tooBig)];
  assert.ok(r1.attempt >= 1, `after the first drop: attempt ${r1.attempt}`);
  assert.equal(r2.attempt, r1.attempt + 1, 'the second drop backs off further');
  assert.ok(r2.delayMs < Math.min(1000, 100 * 2 ** r2.attempt), 'within the configured backoff (base 100 ms, cap 1 s)');
  // and the third connection stays up
  await waitFor('the agent welcomed on the third connection', () => logOf(a).filter((l) => l.msg === 'hub welcomed agent').length >= 4, 15_000);
  assert.ok(!h.events().some((e) => e.event === 'closed' && e.n === 3));
});

test('a real hub serving a rewritten audit log: the alarm is in refusals, status, a failing ferry-agent audit, and at the hub in ferry agent show and the API', async (t) => {
  if (!(await requireRegistry(t))) return;
  const { f, a, witnessed } = await running(t);
  const port = Number(new URL(f.th.url).port);
  const token = f.th.adminToken;
  await f.closeHub();
  // the hub's own database, rewritten: entry 1 changed along with its leaf hash (what only a witness can catch)
  const copy = await copyStore(t, { dataDir: f.th.dataDir, database: f.th.database });
  await dropAuditTriggers(copy);
  const [row] = await rawSqlOn<{ data: Buffer }>(copy, 'SELECT data FROM audit_entries WHERE log = ? AND idx = 1', [TENANT]);
  const forged = Buffer.from(row!.data.toString().replace(/"at":\d+/, '"at":2'));
  await rawSqlOn(copy, 'UPDATE audit_entries SET data = ?, leaf_hash = ? WHERE log = ? AND idx = 1', [forged, leafHash(forged), TENANT]);
  const hub = daemon(t, 'hub', ['serve', '--data-dir', copy.dataDir, ...(copy.database ? ['--database', copy.database] : []), '--listen', `127.0.0.1:${port}`, '--checkpoint-ms', '3600000']);
  await hub.waitFor(/listening on/);
  const url = `http://127.0.0.1:${port}`;
  const api = apiClient(() => url, token);
  await waitFor('the agent on the rewriting hub', async () => (await api('GET', `/v1/agents/${a.id}`)).body.status === 'connected', 20_000);
  assert.equal((await api('POST', `/v1/tenants/${TENANT}/enrollment-tokens`, { ttlSeconds: 600 })).status, 201); // the log grows
  assert.equal((await api('POST', `/v1/audit/${TENANT}/checkpoint`)).status, 200);
  await a.daemon.waitFor(/ALARM: the hub presented an audit log inconsistent/);

  // on the bank's host: kept, shown, and failing the audit command
  const refusals = readFileSync(join(a.stateDir, 'refusals.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Line);
  const alarm = refusals.at(-1)!;
  assert.deepEqual({ kind: alarm.kind, code: alarm.code, alarm: alarm.alarm }, { kind: 'checkpoint', code: 'FERRY_E_AUDIT_INCONSISTENT', alarm: true });
  assert.match(alarm.message, new RegExp(`does not extend the witnessed size ${witnessed}: history was rewritten`));
  const st = await run('agent', ['status', '--state-dir', a.stateDir, '--config', a.configFile]);
  assert.match(st.stdout, /^ALARM\s+\S+ FERRY_E_AUDIT_INCONSISTENT \(checkpoint\): .*history was rewritten/m);
  const audit = await run('agent', ['audit', '--state-dir', a.stateDir]);
  assert.equal(audit.code, 5, audit.stderr);
  assert.match(audit.stdout, /^ALARM\s+\S+\s+FERRY_E_AUDIT_INCONSISTENT: /m);
  assert.match(audit.stderr, /error FERRY_E_AUDIT_INCONSISTENT: .*1 alarm\(s\) since/);

  // at the hub: the API, `ferry agent show`, one audit entry, an error line in its log
  const seen = await waitFor('the alarm at the hub', async () => {
    const v = (await api('GET', `/v1/agents/${a.id}`)).body;
    return v.alarms?.length ? v : null;
  });
  assert.deepEqual(seen.alarms.map((x: Line) => `${x.kind} ${x.code}`), ['checkpoint FERRY_E_AUDIT_INCONSISTENT']);
  const env = { FERRY_HUB: url, FERRY_TOKEN: token, XDG_CONFIG_HOME: tempDir(t) };
  const show = await run('ferry', ['agent', 'show', a.id], { env });
  assert.match(show.stdout, /^ALARM\s+\S+ FERRY_E_AUDIT_INCONSISTENT \(checkpoint\): .*history was rewritten/m);
  const entries = (await api('GET', `/v1/audit/${TENANT}/entries?limit=1000`)).body.entries as Line[];
  assert.deepEqual(entries.filter((e) => e.action === 'agent.alarm').map((e) => [e.actor.id, e.details.code]), [[a.id, 'FERRY_E_AUDIT_INCONSISTENT']]);
  await hub.waitFor(/"level":"error".*"msg":"ALARM raised by agent"/);
  // the agent never cosigned the rewritten log: the new checkpoint has no cosignature
  const exported = await (await fetch(`${url}/v1/audit/${TENANT}/export`, { headers: { authorization: `Bearer ${token}` } })).text();
  const cps = exported.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Line).filter((x) => x.kind === 'checkpoint');
  const newest = cps.at(-1)!;
  assert.ok(JSON.parse(Buffer.from(newest.envelope.payload, 'base64').toString()).size > witnessed);
  assert.deepEqual(newest.cosignatures, []);
  const again = await run('agent', ['status', '--state-dir', a.stateDir, '--json']);
  assert.equal(JSON.parse(again.stdout).alarms[0].acknowledged, false);

  // the hub shows the same rewritten log on every reconnect: refused and on record each time, one alarm
  await a.daemon.stop();
  a.start();
  const refusedAgain = await waitFor('the second refusal', () => {
    const recs = readFileSync(join(a.stateDir, 'refusals.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Line).filter((r) => r.code === 'FERRY_E_AUDIT_INCONSISTENT');
    return recs.length === 2 ? recs[1] : null;
  }, 20_000);
  await waitFor('a status reported after it', async () => ((await api('GET', `/v1/agents/${a.id}`)).body.running?.reportedAt ?? '') > refusedAgain.at, 20_000);
  assert.equal((await api('GET', `/v1/agents/${a.id}`)).body.alarms.length, 1);
  const entriesAgain = (await api('GET', `/v1/audit/${TENANT}/entries?limit=1000`)).body.entries as Line[];
  assert.equal(entriesAgain.filter((e) => e.action === 'agent.alarm').length, 1);

  // once the institution has investigated, it acknowledges; the record stays
  const ackd = await run('agent', ['audit', '--state-dir', a.stateDir, '--acknowledge']);
  assert.equal(ackd.code, 0, ackd.stderr);
  assert.match(ackd.stderr, /acknowledged 2 alarm\(s\); they stay on record in refusals\.jsonl/);
  assert.match(ackd.stdout, /^alarm \(acknowledged\)\s+\S+\s+FERRY_E_AUDIT_INCONSISTENT/m);
  assert.match((await run('agent', ['status', '--state-dir', a.stateDir])).stdout, /alarms\s+2 acknowledged/);
});

test('an agent whose stored trusted time an earlier version pushed ten years ahead recovers: bounded at start, said in the log, and deploys again', async (t) => {
  if (!(await requireRegistry(t))) return;
  const { f, a } = await running(t);
  await a.daemon.stop();
  // what an earlier version stored after believing a directive dated ten years ahead (it had no bound and no marker)
  const file = join(a.stateDir, 'trust.json');
  const p = JSON.parse(readFileSync(file, 'utf8'));
  delete p.state.issuedAtBounded;
  p.state.maxIssuedAt = Date.now() + TEN_YEARS;
  writeFileSync(file, JSON.stringify(p) + '\n', { mode: 0o600 });

  a.start();
  const line = JSON.parse(await a.daemon.waitFor(/stored trusted time was/)) as Line;
  assert.equal(line.level, 'warn');
  assert.equal(line.code, 'FERRY_E_CLOCK_AHEAD');
  assert.match(line.msg, /^stored trusted time was 3652 days ahead of this host's clock .* bounded to the clock plus the allowed skew/);
  await waitFor('the agent connected', async () => (await f.th.api('GET', `/v1/agents/${a.id}`)).body.status === 'connected', 15_000);
  const d = await f.deploy(a, 'payments', '2.0.0');
  assert.equal(d.status, 'accepted', JSON.stringify(d));
  await f.waitRelease(a, 'payments', '2.0.0', 'applied');
  const after = JSON.parse(readFileSync(file, 'utf8'));
  assert.equal(after.state.issuedAtBounded, true);
  assert.ok(after.state.maxIssuedAt <= Date.now() + 5 * 60_000, `trusted time ${new Date(after.state.maxIssuedAt).toISOString()}`);
});

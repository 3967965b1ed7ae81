// The release bot end to end: a rollout started from a chat command (over a
// DingTalk callback, real sockets, simulated agents) produces its notices in
// order — started, each wave, succeeded — and nothing per agent; a burst
// (every agent offline at once) goes out as digests within DingTalk's 20 a
// minute; maker-checker over DingTalk (the requester cannot approve their
// own request, a second account with the approver role does); the audit log
// holds the command, the confirmation, the approval and the result, linked to
// the people; on both store backends. Then two replicas on one
// PostgreSQL database: only the leader sends, and when it stops in the middle
// of a rollout the other carries on from the stored cursors — every notice
// once, none lost. Last, the release bot's other notices: a release offered
// to a tenant (升级通知), direct deploys, alarms, a failed rollout rolled back,
// each to the rooms of the tenant concerned that subscribed to it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { chatHarness } from '../helpers/chat.js';
import { platformServer, postRaw, type Received } from '../helpers/chat-platforms.js';
import { replicaDirs, startHub } from '../helpers/hub.js';
import { backends, postgresAvailable } from '../helpers/postgres.js';
import { skipOrFail } from '../helpers/skip.js';
import { apiClient, simAgents, simRelease } from '../helpers/sim-agents.js';
import { waitFor } from '../helpers/tmp.js';

const APP_SECRET = 'ding-app-secret-e2e';
const sign = (ts: number) => createHmac('sha256', APP_SECRET).update(`${ts}\n${APP_SECRET}`).digest('base64');
/** Every notice line the robot received, in order (a digest's lines one by one). */
const lines = (rs: Received[]) => rs.flatMap((r) => String(r.json.markdown.text).split('\n')).filter((l) => !/^\d+ updates:$/.test(l));

for (const backend of await backends()) test(`[${backend}] a rollout from chat: notices in order, one per wave transition; a burst as digests within 20 a minute; maker-checker; command, confirmation, approval and result on record`, async (t) => {
  const th = await startHub(t, { backend, rateLimitPerMinute: 0, rolloutTickMs: 50, checkpointMs: 3_600_000, chat: { notifier: { tickMs: 100, gatherMs: 400, presenceGraceMs: 500 } } });
  const api = apiClient(() => th.url, th.adminToken);
  const agents = await simAgents(api, () => th.url, 'bank-a', 12, { applyMs: 30 });
  for (const a of agents) t.after(() => a.stop());
  await simRelease(api, 'payments', '2.0.0');
  const op = await th.person({ tenants: { 'bank-a': 'operator' } });
  const approver = await th.person({ tenants: { 'bank-a': 'approver' } });
  // bank-a's rule: a second person approves what touches its agents (maker-checker)
  assert.equal((await th.api('POST', '/v1/chat/policies/bank-a', { approval: 'tenant=bank-a' })).status, 200);
  const robot = await platformServer(t, { errcode: 0, errmsg: 'ok' });
  assert.equal((await th.api('POST', '/v1/chat/transports', { name: 'ding', platform: 'dingtalk', config: { appSecret: { value: APP_SECRET } } })).status, 201);
  assert.equal((await th.api('POST', '/v1/chat/rooms', { transport: 'ding', room: 'cid-ops', tenants: ['bank-a'], config: { webhook: { value: `${robot.url}/robot/send?access_token=t` } } })).status, 201);
  let n = 0;
  const say = async (text: string, from = 'zhang.wei') => {
    const ts = Date.now();
    const id = `m${++n}`;
    const body = JSON.stringify({ msgtype: 'text', text: { content: text }, msgId: id, conversationId: 'cid-ops', senderStaffId: from, sessionWebhook: `${robot.url}/session/${id}`, sessionWebhookExpiredTime: ts + 3600_000 });
    const r = await postRaw(`${th.url}/v1/chat/hooks/dingtalk/ding`, body, { 'content-type': 'application/json', timestamp: String(ts), sign: sign(ts) });
    assert.equal(r.status, 200, r.text);
    return { first: String(r.json.markdown?.text ?? ''), later: () => robot.on(`/session/${id}`).map((x) => String(x.json.markdown.text)) };
  };
  await say(`ferry link ${(await th.api('POST', '/v1/chat/link-codes', {}, op.token)).body.code}`);
  await say(`ferry link ${(await th.api('POST', '/v1/chat/link-codes', {}, approver.token)).body.code}`, 'li.na');
  const asked = await say('ferry rollout create payments@2.0.0 to tenant=bank-a --waves 2,50%,100%');
  const code = /ferry confirm ([A-Z0-9]+)/.exec(asked.first)?.[1] ?? assert.fail(asked.first);
  assert.match(asked.first, /a different person with the approver role on bank-a approves it/);
  assert.match((await say(`ferry approve ${code}`)).first, /FERRY_E_CHAT_MAKER_CHECKER/, 'the requester cannot approve their own request');
  assert.match((await say(`ferry confirm ${code}`)).first, /confirmed by .*must approve it/);
  assert.equal((await th.api('GET', '/v1/rollouts')).body.rollouts.length, 0, 'nothing started before the approval');
  const done = await say(`ferry approve ${code}`, 'li.na');
  const started = await waitFor('the result', () => done.later().find((x) => /R-\d+ started/.test(x)));
  const id = /R-\d+/.exec(started)![0];
  await waitFor('the rollout succeeds', async () => (await th.api('GET', `/v1/rollouts/${id}`)).body.state === 'succeeded', 30_000);
  const notices = await waitFor('the succeeded notice', () => (lines(robot.on('/robot/send')).some((l) => l.includes(`${id} payments@2.0.0 succeeded`)) ? lines(robot.on('/robot/send')) : null), 20_000);
  const order = [`🚀 ${id} payments@2.0.0 started: 12 agents in 3 waves`, `${id} payments@2.0.0: wave 1/3 started, 2 agents`, `${id} payments@2.0.0: wave 2/3 started, 4 agents (wave 1 passed: 2/2 done)`, `${id} payments@2.0.0: wave 3/3 started, 6 agents (wave 2 passed: 6/6 done)`, `${id} payments@2.0.0 succeeded`];
  const at = order.map((o) => notices.findIndex((l) => l.includes(o)));
  assert.ok(at.every((i, k) => i >= 0 && (k === 0 || i > at[k - 1]!)), `in order: ${JSON.stringify(at)}\n${notices.join('\n')}`);
  assert.equal(notices.filter((l) => l.includes(id)).length, 5, `one notice per transition, none per agent:\n${notices.join('\n')}`);

  // The burst: every agent offline at once, announced after the grace time, merged.
  const before = robot.on('/robot/send').length;
  for (const a of agents) a.stop();
  const offline = await waitFor('every agent announced offline', () => {
    const l = lines(robot.on('/robot/send').slice(before));
    return agents.every((a) => l.some((x) => x.includes(a.id) && x.includes('offline'))) ? robot.on('/robot/send').slice(before) : null;
  }, 30_000);
  assert.ok(offline.length < agents.length, `${agents.length} agents offline in ${offline.length} messages`);
  const times = robot.on('/robot/send').map((r) => r.at);
  for (let i = 20; i < times.length; i++) assert.ok(times[i]! - times[i - 20]! >= 60_000 - 50, 'at most 20 messages a minute');

  // The record: command, confirmation and result, each naming the person and the DingTalk message.
  const log = (await th.api('GET', '/v1/audit/bank-a/entries?limit=5000')).body.entries as any[];
  const cmd = log.find((e) => e.action === 'chat.command' && e.details.confirmation === code);
  const self = log.find((e) => e.action === 'chat.approve' && e.details.confirmation === code && e.outcome === 'refused');
  const conf = log.find((e) => e.action === 'chat.confirm' && e.details.confirmation === code);
  const appr = log.find((e) => e.action === 'chat.approve' && e.details.confirmation === code && e.outcome === 'ok');
  const res = log.find((e) => e.action === 'chat.result' && e.details.rollout === id);
  for (const e of [cmd, self, conf, appr, res]) {
    assert.ok(e, JSON.stringify(log.map((x) => x.action)));
    assert.equal(e.surface, 'chat');
    assert.equal(e.details.platform, 'dingtalk');
  }
  // Who: the requester for the command, the refused self-approval and the confirmation; the approver for the approval;
  // the result is the requester's operation, done on the approver's message.
  for (const e of [cmd, self, conf]) assert.deepEqual([e.personalValues.operator, e.personalValues.chatAccount], [op.name, 'zhang.wei']);
  assert.deepEqual([appr.personalValues.operator, appr.personalValues.chatAccount], [approver.name, 'li.na']);
  assert.deepEqual([res.personalValues.operator, res.personalValues.chatAccount, res.details.approver], [op.name, 'li.na', approver.userId]);
  assert.deepEqual([cmd, self, conf, appr, res].map((e) => e.details.messageId), ['m3', 'm4', 'm5', 'm6', 'm6']);
  assert.ok(cmd.index < self.index && self.index < conf.index && conf.index < appr.index && appr.index < res.index);
  assert.match(started, new RegExp(`audit bank-a#${res.index}`));
});

test('[postgres] two replicas: only the leader sends notices; when it stops mid-rollout the other carries on — every notice once, none lost', async (t) => {
  if (!(await postgresAvailable())) return skipOrFail(t, 'PostgreSQL does not answer (run scripts/test-env.sh, or set FERRY_TEST_POSTGRES_URL)');
  const { database, dirs: [dirA, dirB], token } = await replicaDirs(t);
  const opts = { database, adminToken: token, rateLimitPerMinute: 0, rolloutTickMs: 50, checkpointMs: 3_600_000, chat: { notifier: { tickMs: 100, gatherMs: 0 } } };
  const a = await startHub(t, { ...opts, dataDir: dirA });
  await waitFor('replica A leads', () => a.hub.cluster.leader);
  const b = await startHub(t, { ...opts, dataDir: dirB });
  const api = apiClient(() => b.url, token);
  // The agents live on B, so stopping A (the leader) leaves them connected.
  const agents = await simAgents(api, () => b.url, 'bank-a', 6, { applyMs: 30 });
  for (const x of agents) t.after(() => x.stop());
  await simRelease(api, 'payments', '2.0.0');
  const out = await platformServer(t, {});
  assert.equal((await b.api('POST', '/v1/chat/transports', { name: 'bridge', platform: 'webhook', config: { secret: { value: 's3cret' } } })).status, 201);
  const room = (await b.api('POST', '/v1/chat/rooms', { transport: 'bridge', room: 'ops', tenants: ['bank-a'], subscribe: ['rollouts'], config: { url: { value: `${out.url}/n` } } })).body;
  const r = await b.api('POST', '/v1/rollouts', { stack: 'payments', version: '2.0.0', selector: 'tenant=bank-a', waves: '1,2,3,4,5,100%', bakeMs: 400 });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  const id = r.body.id as string;
  await waitFor('wave 2 announced (by A, the leader)', () => out.on('/n').some((x) => x.json.text.includes('wave 2/6 started')), 20_000);
  await a.close();
  await waitFor('B leads', () => b.hub.cluster.leader, 20_000);
  await waitFor('the rollout succeeds', async () => (await b.api('GET', `/v1/rollouts/${id}`)).body.state === 'succeeded', 60_000);
  await waitFor('the succeeded notice (by B)', () => out.on('/n').some((x) => x.json.text.includes(`${id} payments@2.0.0 succeeded`)), 20_000);
  const texts = out.on('/n').flatMap((x) => String(x.json.text).split('\n')).filter((l) => l.includes(id));
  const keys = out.on('/n').map((x) => x.json.key as string);
  assert.equal(new Set(keys).size, keys.length, `a notice sent twice: ${JSON.stringify(keys)}`);
  for (let w = 1; w <= 6; w++) assert.equal(texts.filter((l) => l.includes(`wave ${w}/6 started`)).length, 1, `wave ${w} announced once:\n${texts.join('\n')}`);
  assert.equal(texts.filter((l) => l.includes('started: 6 agents')).length, 1);
  const unsent = await b.rawSql<{ n: number }>('SELECT count(*) AS n FROM chat_outbox WHERE room_id = ? AND sent_at IS NULL', [room.id]);
  assert.equal(Number(unsent[0]!.n), 0);
});

for (const backend of await backends())
  test(`[${backend}] the release bot's other notices: 升级通知 to the tenant's rooms only, direct deploys, alarms at once, a failed rollout rolled back; each room hears what it subscribed to`, async (t) => {
    const th = await startHub(t, { backend, rateLimitPerMinute: 0, rolloutTickMs: 50, checkpointMs: 3_600_000, chat: { notifier: { tickMs: 100, gatherMs: 300, presenceGraceMs: 60_000 } } });
    const api = apiClient(() => th.url, th.adminToken);
    const as = await simAgents(api, () => th.url, 'bank-a', 2, { applyMs: 30, namePrefix: 'a' });
    const [b] = await simAgents(api, () => th.url, 'bank-b', 1, { applyMs: 30, namePrefix: 'b' });
    for (const x of [...as, b!]) t.after(() => x.stop());
    await simRelease(api, 'payments', '1.0.0');
    await simRelease(api, 'payments', '3.0.0');
    const h = chatHarness(th);
    const rooms = {
      aAll: await h.bind('a-all', ['bank-a']),
      aReleases: await h.bind('a-releases', ['bank-a'], ['releases']),
      bAll: await h.bind('b-all', ['bank-b']),
      vendor: await h.bind('vendor', null, ['releases', 'alarms']),
    };
    const heard = async (room: keyof typeof rooms) => (await th.hub.store.chat.sentTo(rooms[room].id)).map((n) => String(JSON.parse(n.body).text));
    const hears = (room: keyof typeof rooms, what: RegExp) => waitFor(`${room} hears ${what}`, async () => (await heard(room)).find((x) => what.test(x)), 20_000);

    // 升级通知: a release offered to bank-a reaches bank-a's rooms and the vendor's, not bank-b's.
    assert.equal((await th.api('POST', '/v1/releases/payments/3.0.0/tenants', { tenants: ['bank-a'] })).status, 200);
    for (const r of ['aAll', 'aReleases', 'vendor'] as const) await hears(r, /📦 升级通知 new release payments@3\.0\.0 available for bank-a/);
    // A direct deploy to bank-b's agent: bank-b's room hears it; by then it has seen everything before it, and no 升级通知.
    assert.equal((await th.api('POST', '/v1/deploy', { stack: 'payments', version: '1.0.0', agent: b!.id })).status, 200);
    await hears('bAll', new RegExp(`📦 payments@1\\.0\\.0 deployed to ${b!.id} \\(bank-b\\) from cli`)); // the surface it came from (the test's client says cli)
    assert.ok(!(await heard('bAll')).some((x) => x.includes('升级通知')), 'bank-b never hears of a release offered to bank-a');

    // An alarm: at once (it does not wait to be merged), to the rooms that take alarms.
    as[0]!.alarm('FERRY_E_AUDIT_INCONSISTENT', 'the hub showed a log that does not extend the one witnessed', 'checkpoint');
    const alarm = await hears('aAll', new RegExp(`🚨 ALARM on a-00000 \\(${as[0]!.id}, bank-a\\): FERRY_E_AUDIT_INCONSISTENT the hub showed a log`));
    await hears('vendor', /🚨 ALARM on a-00000/);
    const rows = await th.rawSql<{ alarm: number; created_at: number; due_at: number }>("SELECT alarm, created_at, due_at FROM chat_outbox WHERE room_id = ? AND kind = 'agent.alarm'", [rooms.aAll.id]);
    assert.deepEqual(rows.map((r) => [Number(r.alarm), Number(r.due_at) - Number(r.created_at)]), [[1, 0]], alarm);

    // A rollout that fails and is rolled back: both said, the failure as an alarm, with the failures counted.
    const ok = await th.api('POST', '/v1/rollouts', { stack: 'payments', version: '1.0.0', selector: 'tenant=bank-a', waves: '100%' });
    await waitFor('1.0.0 on bank-a', async () => (await th.api('GET', `/v1/rollouts/${ok.body.id}`)).body.state === 'succeeded', 30_000);
    for (const a of as) a.failing.add('payments@3.0.0');
    const bad = await th.api('POST', '/v1/rollouts', { stack: 'payments', version: '3.0.0', selector: 'tenant=bank-a', waves: '100%', onFailure: 'rollback' });
    assert.equal(bad.status, 201, JSON.stringify(bad.body));
    const id = bad.body.id as string;
    await waitFor('rolled back', async () => (await th.api('GET', `/v1/rollouts/${id}`)).body.state === 'rolled-back', 30_000);
    const back = await hears('aAll', new RegExp(`↩ ${id} payments@3\\.0\\.0 rolled-back`));
    const failing = (await heard('aAll')).find((x) => x.startsWith(`↩ ${id} payments@3.0.0 rolling-back`)) ?? assert.fail((await heard('aAll')).join('\n'));
    assert.match(failing, /2 failed \(FERRY_E_UNHEALTHY\)/);
    const kinds = await th.rawSql<{ kind: string; alarm: number }>('SELECT kind, alarm FROM chat_outbox WHERE room_id = ? AND body LIKE ? ORDER BY id', [rooms.aAll.id, `%${id}%`]);
    assert.deepEqual(kinds.map((k) => [k.kind, Number(k.alarm)]), [['rollout.created', 0], ['rollout.wave', 0], ['rollout.rolling-back', 1], ['rollout.rolled-back', 0]], back);
    // What a room did not subscribe to, it never hears; bank-b hears nothing of bank-a's rollouts.
    assert.ok((await heard('aReleases')).every((x) => x.includes('📦')), (await heard('aReleases')).join('\n'));
    assert.ok(!(await heard('bAll')).some((x) => x.includes(id) || x.includes('a-00000')), (await heard('bAll')).join('\n'));
    assert.ok(!(await heard('vendor')).some((x) => x.includes(id)), 'the vendor room took releases and alarms only');
  });

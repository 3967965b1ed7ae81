// ChatOps through the harness (no platform): the grammar, who may run what
// in which room (help hides the rest), maker-checker, confirmations bound to
// the plan, time-outs, dry runs, locks, and the audit entries every command,
// confirmation and result leaves — on both store backends. The console's
// chat panel API (post, stream, decide) at the end.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { SseDecoder } from '../../shared/events.js';
import type { OutMessage } from '../../hub/chat/types.js';
import { chatHarness, said, type ChatHarness } from '../helpers/chat.js';
import { startHub, type TestHub } from '../helpers/hub.js';
import { backends } from '../helpers/postgres.js';
import { apiClient, simAgents, simRelease, type SimAgent } from '../helpers/sim-agents.js';
import { waitFor } from '../helpers/tmp.js';

interface World {
  th: TestHub;
  h: ChatHarness;
  prod: SimAgent[];
  dev: SimAgent;
  b: SimAgent;
  people: Record<'aAdmin' | 'aOperator' | 'aApprover' | 'aViewer' | 'bOperator' | 'admin', { name: string; userId: string; token: string }>;
}

async function world(t: Parameters<typeof startHub>[0], backend: 'sqlite' | 'postgres'): Promise<World> {
  const th = await startHub(t, { backend, rateLimitPerMinute: 0, checkpointMs: 3_600_000, chat: { engine: { confirmTtlMs: 60_000 }, notifier: { tickMs: 200, gatherMs: 100, presenceGraceMs: 60_000 } } });
  const api = apiClient(() => th.url, th.adminToken);
  const a = await simAgents(api, () => th.url, 'bank-a', 3, { labels: (i) => ({ env: i < 2 ? 'prod' : 'dev' }), namePrefix: 'a' });
  const [b] = await simAgents(api, () => th.url, 'bank-b', 1, { labels: () => ({ env: 'prod' }), namePrefix: 'b' });
  for (const s of [...a, b!]) t.after(() => s.stop());
  await simRelease(api, 'payments', '1.0.0');
  await simRelease(api, 'payments', '2.0.0');
  const who = await th.api('GET', '/v1/whoami');
  const people = {
    admin: { name: who.body.user as string, userId: who.body.userId as string, token: th.adminToken },
    aAdmin: await th.person({ tenants: { 'bank-a': 'tenant-admin' } }),
    aOperator: await th.person({ tenants: { 'bank-a': 'operator' } }),
    aApprover: await th.person({ tenants: { 'bank-a': 'approver' } }),
    aViewer: await th.person({ tenants: { 'bank-a': 'viewer' } }),
    bOperator: await th.person({ tenants: { 'bank-b': 'operator' } }),
  };
  const h = chatHarness(th);
  await h.bind('bank-a-ops', ['bank-a']);
  await h.bind('bank-b-ops', ['bank-b']);
  await h.bind('vendor-ops', null);
  return { th, h, prod: a.slice(0, 2), dev: a[2]!, b: b!, people };
}

const last = (rs: OutMessage[]) => rs[rs.length - 1]!;
const codeOf = (rs: OutMessage[]) => rs.find((r) => r.confirm)?.confirm?.code ?? assert.fail(`no confirmation in ${said(rs)}`);

async function entry(th: TestHub, ref: { log: string; index: number }) {
  const r = await th.api('GET', `/v1/audit/${ref.log}/entries?from=${ref.index}&limit=1`);
  assert.equal(r.status, 200);
  return r.body.entries[0];
}

for (const backend of await backends()) {
  test(`[${backend}] chat: grammar, rooms and roles, maker-checker, plans, locks, audit`, async (t) => {
    const w = await world(t, backend);
    const { th, h, people: P } = w;
    const say = (text: string, as: keyof World['people'], room = 'bank-a-ops') => h.chat(text, { as: P[as].userId, room });

    await t.test('help is generated from the grammar and shows only what the asker may run here', async () => {
      const viewer = said(await say('ferry help', 'aViewer'));
      assert.match(viewer, /ferry rollout status ID/);
      assert.match(viewer, /ferry agent ls \[SELECTOR\] \[online\|offline\]/);
      for (const hidden of ['ferry rollout pause', 'ferry deploy', 'ferry agent revoke', 'ferry approve', 'ferry lock STACK']) assert.ok(!viewer.includes(hidden), `a viewer's help shows ${hidden}`);
      const op = said(await say('ferry help', 'aOperator'));
      for (const shown of ['ferry rollout pause', 'ferry deploy RELEASE', 'ferry lock STACK']) assert.ok(op.includes(shown), `an operator's help lacks ${shown}`);
      assert.ok(!op.includes('ferry approve'), "an operator's help shows approve");
      assert.match(said(await say('ferry help', 'aApprover')), /ferry approve CODE/);
      // bank-b's operator in bank-a's room: only what needs no tenant.
      const foreign = said(await say('ferry help', 'bOperator'));
      assert.ok(!foreign.includes('ferry rollout status') && foreign.includes('ferry whoami'), foreign);
      assert.match(said(await say('ferry help rollout create', 'aOperator')), /--waves[\s\S]*e\.g\. ferry rollout create payments@2\.4\.0/);
    });

    await t.test('typos get a suggestion, bad arguments the usage line', async () => {
      const r = last(await say('ferry rolout pause R-1', 'aOperator'));
      assert.equal(r.kind, 'error');
      assert.match(r.text, /FERRY_E_CHAT_UNKNOWN[\s\S]*did you mean `ferry rollout pause ID`/);
      assert.match(last(await say('ferry rollout pause 12', 'aOperator')).text, /FERRY_E_CHAT_USAGE: .*id "12": expected a rollout id, R-<n>/);
      assert.match(last(await say('ferry deploy payments@2.0.0 to', 'aOperator')).text, /FERRY_E_CHAT_USAGE/);
      assert.deepEqual(await say('good morning, ferry fans', 'aOperator'), [], 'a message not for the bot gets no answer');
    });

    await t.test('a room acts within its tenants and the person’s roles, as the API would', async () => {
      const mine = said(await say('ferry agents', 'admin'));
      assert.match(mine, /^3 agents/m, 'the vendor admin in bank-a’s room sees bank-a’s agents only');
      assert.ok(!mine.includes(w.b.id));
      assert.match(said(await say('ferry agents env=prod', 'admin', 'vendor-ops')), /^3 agents on env=prod/m, 'the vendor room sees every tenant');
      assert.match(said(await say('ferry agents env=prod offline', 'aViewer')), /^0 agents offline on env=prod/m);
      // bank-a's operator in bank-b's room has nothing there: bank-a's agents are not even listed.
      assert.match(said(await say('ferry agents', 'aOperator', 'bank-b-ops')), /^0 agents/m);
      const st = last(await say(`ferry agent show ${w.prod[0]!.id}`, 'bOperator'));
      assert.match(st.text, /FERRY_E_NOT_FOUND/, 'another tenant’s agent is not found');
      const pause = last(await say(`ferry agent revoke ${w.prod[0]!.id}`, 'aViewer'));
      assert.match(pause.text, /FERRY_E_FORBIDDEN: .*needs agent\.manage/);
      assert.ok(pause.audit, 'a refused command is on record too');
      const e = await entry(th, pause.audit!);
      assert.equal(e.action, 'chat.command');
      assert.equal(e.outcome, 'refused');
      assert.equal(e.surface, 'chat');
      assert.equal(e.personalValues.operator, P.aViewer.name);
    });

    await t.test('an unlinked account may only ask for help; a one-time code links it', async () => {
      const hook = await th.api('POST', '/v1/chat/transports', { name: 'hook', platform: 'webhook', config: { secret: { value: 'hook-secret-value' } } });
      assert.equal(hook.status, 201, JSON.stringify(hook.body));
      assert.ok(!JSON.stringify(hook.body).includes('hook-secret-value'), 'the secret is never answered');
      assert.equal((await th.api('POST', '/v1/chat/rooms', { transport: 'hook', room: 'team-a', tenants: ['bank-a'] })).status, 201);
      const stranger = { transport: 'hook', account: 'u-42', room: 'team-a' };
      assert.match(last(await h.chat('ferry agents', stranger)).text, /FERRY_E_CHAT_UNLINKED/);
      const help = said(await h.chat('ferry help', stranger));
      assert.ok(help.includes('ferry link CODE') && !help.includes('ferry agent ls'), help);
      const code = await th.api('POST', '/v1/chat/link-codes', {}, P.aViewer.token);
      assert.equal(code.status, 201);
      const linked = last(await h.chat(`ferry link ${code.body.code}`, stranger));
      assert.match(linked.text, new RegExp(`linked: .* is ${P.aViewer.name}`));
      assert.match(said(await h.chat('ferry agents', stranger)), /^3 agents/m);
      assert.match(last(await h.chat(`ferry link ${code.body.code}`, { ...stranger, account: 'u-43' })).text, /FERRY_E_CHAT_UNLINKED: .*unknown, used or expired/, 'a code links once');
    });

    let rollout = '';
    await t.test('maker-checker: the requester cannot approve their own production rollout; an approver can', async () => {
      assert.equal((await th.api('POST', '/v1/chat/policies/bank-a', { approval: 'env=prod' }, P.aAdmin.token)).status, 200);
      const ask = await say('ferry rollout create payments@2.0.0 to env=prod --waves 1,100%', 'aAdmin');
      assert.equal(ask[0]!.kind, 'confirm');
      assert.match(ask[0]!.text, /payments@2\.0\.0 \(sha256:[0-9a-f]{12}…\) to 2 agents on env=prod/);
      assert.match(ask[0]!.text, /waves: 1: 1 agent · 2: 1 agent/);
      assert.match(ask[0]!.text, /approver role on bank-a/);
      const code = codeOf(ask);
      assert.match(last(await say(`ferry confirm ${code}`, 'aOperator')).text, /FERRY_E_CHAT_CONFIRMATION: .*only the requester confirms/);
      assert.match(last(await say(`ferry approve ${code}`, 'aApprover')).text, /waits for its requester's confirmation first/);
      const confirmed = last(await say(`ferry confirm ${code}`, 'aAdmin'));
      assert.match(confirmed.text, /confirmed by .*a different person with the approver role/);
      const self = last(await say(`ferry approve ${code}`, 'aAdmin'));
      assert.match(self.text, /FERRY_E_CHAT_MAKER_CHECKER/);
      assert.equal((await entry(th, self.audit!)).outcome, 'refused');
      assert.equal((await th.api('GET', '/v1/rollouts')).body.rollouts.length, 0, 'nothing was started');
      const ok = await say(`ferry approve ${code}`, 'aApprover');
      const result = last(ok);
      assert.equal(result.kind, 'result', said(ok));
      rollout = /^(R-\d+) started/.exec(result.text)?.[1] ?? assert.fail(result.text);
      const r = await th.api('GET', `/v1/rollouts/${rollout}`);
      assert.equal(r.body.agents, 2);
      // The record: command, confirmation, approval, result, linked to the people; the rollout itself by the requester from chat.
      const log = (await th.api('GET', '/v1/audit/bank-a/entries?limit=5000')).body.entries as any[];
      const mine = log.filter((e) => e.details.confirmation === code || e.details.rollout === rollout);
      const byAction = (a: string) => mine.filter((e) => e.action === a);
      assert.equal(byAction('chat.command').length, 1);
      assert.equal(byAction('chat.confirm').filter((e) => e.outcome === 'ok').length, 1);
      assert.equal(byAction('chat.approve').filter((e) => e.outcome === 'ok')[0].personalValues.operator, P.aApprover.name);
      const res = byAction('chat.result')[0];
      assert.equal(res.personalValues.operator, P.aAdmin.name);
      assert.equal(res.details.approver, P.aApprover.userId);
      assert.equal(res.details.platform, 'console');
      assert.ok(res.details.messageId.startsWith('harness-'));
      const create = byAction('rollout.create')[0];
      assert.equal(create.surface, 'chat');
      assert.equal(create.actor.id, P.aAdmin.userId);
      assert.equal(result.audit!.index, res.index, 'the reply carries the entry’s index');
      assert.match(last(await say(`ferry approve ${code}`, 'aApprover')).text, /is done/, 'a confirmation is used once');
    });

    await t.test('pause and status from chat; --dry-run changes nothing', async () => {
      const paused = last(await say(`ferry rollout pause ${rollout}`, 'aOperator'));
      assert.match(paused.text, new RegExp(`${rollout} is paused`));
      const status = await say(`ferry rollout status ${rollout}`, 'aViewer');
      assert.match(said(status), /paused \(pause by operator\) · wave \d\/2/);
      // A read's result is on record too, with who asked, and the reply names the entry.
      const read = await entry(th, last(status).audit!);
      assert.equal(read.action, 'chat.result');
      assert.equal(read.outcome, 'ok');
      assert.equal(read.personalValues.operator, P.aViewer.name);
      const dry = last(await say(`ferry rollout abort ${rollout} --dry-run`, 'aOperator'));
      assert.match(dry.text, /^dry run, nothing changed:\n {0}abort R-\d+/);
      assert.equal((await th.api('GET', `/v1/rollouts/${rollout}`)).body.state, 'paused');
      assert.match(said(await say(`ferry rollout pause ${rollout}`, 'aApprover')), /FERRY_E_FORBIDDEN/, 'an approver does not deploy');
      assert.equal((await th.api('POST', `/v1/rollouts/${rollout}/abort`)).status, 200); // frees its agents for what follows
    });

    await t.test('a confirmation is bound to its plan: a changed plan is refused', async () => {
      await th.api('POST', `/v1/agents/${w.dev.id}/labels`, { set: { tier: 'canary' } });
      const ask = await say('ferry deploy payments@1.0.0 to tier=canary', 'aOperator');
      const code = codeOf(ask);
      assert.match(ask[0]!.text, /to 1 agent on tier=canary/);
      // Meanwhile a second agent becomes a canary: the plan shown is no longer what would happen.
      await th.api('POST', `/v1/agents/${w.prod[0]!.id}/labels`, { set: { tier: 'canary' } });
      const r = last(await say(`ferry confirm ${code}`, 'aOperator'));
      assert.match(r.text, /the plan of .* changed since it was shown/);
      assert.equal((await entry(th, r.audit!)).outcome, 'refused');
      assert.match(last(await say(`ferry confirm ${code}`, 'aOperator')).text, /is refused/);
    });

    await t.test('locks stop deploys from every surface, saying who and why', async () => {
      const l = last(await say('ferry lock payments env=prod "quarter close"', 'aOperator'));
      assert.match(l.text, new RegExp(`locked: L-\\d+ by ${P.aOperator.name} .*"quarter close" \\(payments on env=prod, bank-a\\)`));
      const id = /L-\d+/.exec(l.text)![0];
      const api = await th.api('POST', '/v1/deploy', { stack: 'payments', version: '1.0.0', agent: w.prod[1]!.id });
      assert.equal(api.status, 409);
      assert.equal(api.body.error.code, 'FERRY_E_LOCKED');
      assert.match(api.body.error.message, /quarter close/);
      // bank-b's prod agents are not bank-a's operator's to lock.
      assert.equal((await th.api('POST', '/v1/deploy', { stack: 'payments', version: '1.0.0', agent: w.b.id })).status, 200);
      assert.match(last(await say('ferry deploy payments@1.0.0 to env=prod --dry-run', 'aOperator')).text, /FERRY_E_LOCKED/);
      assert.match(said(await say('ferry lock ls', 'aViewer')), /quarter close/);
      assert.match(last(await say(`ferry unlock ${id}`, 'bOperator', 'bank-b-ops')).text, /FERRY_E_NOT_FOUND/);
      assert.match(last(await say(`ferry unlock ${id}`, 'aOperator')).text, /unlocked/);
      assert.equal((await th.api('POST', '/v1/deploy', { stack: 'payments', version: '1.0.0', agent: w.prod[1]!.id })).status, 200);
    });

    await t.test('the console chat panel: post, stream (resumable), decide', async () => {
      const res = await request(`${th.url}/v1/chat/console/rooms/bank-a-ops/stream`, { headers: { authorization: `Bearer ${P.aOperator.token}` } });
      assert.equal(res.statusCode, 200);
      const dec = new SseDecoder();
      const seen: any[] = [];
      const reading = (async () => {
        for await (const chunk of res.body) for (const m of dec.push(chunk.toString())) if (m.event === 'message') seen.push(JSON.parse(m.data));
      })().catch(() => {});
      t.after(() => res.body.destroy());
      const post = await th.api('POST', '/v1/chat/console/rooms/bank-a-ops/messages', { text: 'ferry deploy payments@2.0.0 --agent ' + w.dev.id }, P.aOperator.token);
      assert.equal(post.status, 201, JSON.stringify(post.body));
      const code = post.body.replies.find((r: OutMessage) => r.confirm)?.confirm.code;
      assert.ok(code, JSON.stringify(post.body));
      const d = await th.api('POST', '/v1/chat/console/rooms/bank-a-ops/decisions', { code, decision: 'confirm' }, P.aOperator.token);
      assert.equal(d.status, 201);
      assert.match(d.body.replies.at(-1).text, /directive \d+ \(payments@2\.0\.0\) issued/);
      await waitFor('the stream shows the person’s messages and the bot’s replies', () => seen.some((m) => m.author === P.aOperator.name && m.text.startsWith('ferry deploy')) && seen.some((m) => /directive \d+/.test(m.text)));
      assert.ok(seen.some((m) => m.confirm?.code === code), 'the confirmation is on the stream with its code');
      const hist = await th.api('GET', `/v1/chat/console/rooms/bank-a-ops/messages?after=${seen[0].id - 1}`, undefined, P.aViewer.token);
      assert.deepEqual(hist.body.messages.slice(0, 3).map((m: any) => m.id), seen.slice(0, 3).map((m) => m.id));
      assert.equal((await th.api('GET', '/v1/chat/console/rooms/bank-a-ops/messages', undefined, P.bOperator.token)).status, 404);
      res.body.destroy();
      await reading;
    });
  });
}

test('chat: a request nobody confirms times out, and its room is told', async (t) => {
  const th = await startHub(t, { rateLimitPerMinute: 0, chat: { engine: { confirmTtlMs: 300 }, notifier: { tickMs: 100, gatherMs: 0 } } });
  const api = apiClient(() => th.url, th.adminToken);
  const [a] = await simAgents(api, () => th.url, 'bank-a', 1, {});
  t.after(() => a!.stop());
  await simRelease(api, 'payments', '1.0.0');
  const h = chatHarness(th);
  const room = await h.bind('ops', null);
  const who = (await th.api('GET', '/v1/whoami')).body.userId as string;
  const code = codeOf(await h.chat(`ferry agent revoke ${a!.id}`, { as: who, room: 'ops' }));
  const told = await waitFor('the time-out notice', async () => (await th.hub.store.chat.sentTo(room.id)).find((n) => n.body.includes(`request ${code} timed out`)));
  assert.match(told.body, /nothing was done/);
  assert.match(last(await h.chat(`ferry confirm ${code}`, { as: who, room: 'ops' })).text, /is expired/);
  assert.equal((await th.api('GET', `/v1/agents/${a!.id}`)).body.status === 'revoked', false);
  const log = (await th.api('GET', '/v1/audit/_hub/entries?limit=5000')).body.entries as any[];
  assert.equal(log.filter((e) => e.action === 'chat.expire' && e.details.confirmation === code).length, 1);
});

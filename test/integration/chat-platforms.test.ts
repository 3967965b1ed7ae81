// Each platform end to end over real sockets: the hub's callback endpoints
// verify the platform's signature (and decrypt where it encrypts), refuse
// replays and stale requests, and answer through the platform's own paths
// (the callback's answer, Slack's response_url, DingTalk's sessionWebhook,
// the group robot's webhook, signed as the platform wants) — which here are
// local servers playing the platform (test/helpers/chat-platforms.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { feishuEncrypt, wecomEncrypt, wecomSignature } from '../../hub/chat/signing.js';
import { platformServer, postRaw, type Platform } from '../helpers/chat-platforms.js';
import { startHub, type TestHub } from '../helpers/hub.js';
import { apiClient, simAgents, simRelease, type SimAgent } from '../helpers/sim-agents.js';
import { waitFor } from '../helpers/tmp.js';

interface World {
  th: TestHub;
  agents: SimAgent[];
  op: { name: string; userId: string; token: string };
  code(): Promise<string>;
}

async function world(t: Parameters<typeof startHub>[0]): Promise<World> {
  const th = await startHub(t, { rateLimitPerMinute: 0, checkpointMs: 3_600_000, chat: { notifier: { tickMs: 100, gatherMs: 50 } } });
  const api = apiClient(() => th.url, th.adminToken);
  const agents = await simAgents(api, () => th.url, 'bank-a', 2, { labels: () => ({ env: 'prod' }) });
  for (const a of agents) t.after(() => a.stop());
  await simRelease(api, 'payments', '2.0.0');
  const op = await th.person({ tenants: { 'bank-a': 'operator' } });
  return { th, agents, op, code: async () => (await th.api('POST', '/v1/chat/link-codes', {}, op.token)).body.code as string };
}

const add = async (th: TestHub, body: unknown) => {
  const r = await th.api('POST', '/v1/chat/transports', body);
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body;
};
const bind = async (th: TestHub, body: unknown) => {
  const r = await th.api('POST', '/v1/chat/rooms', body);
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body;
};

// ---- Slack ------------------------------------------------------------------------------

const SLACK_SECRET = 'slack-signing-secret-for-tests';
function slackPost(th: TestHub, path: string, body: string, opts: { ts?: number; secret?: string } = {}) {
  const ts = String(Math.floor((opts.ts ?? Date.now()) / 1000));
  const sig = `v0=${createHmac('sha256', opts.secret ?? SLACK_SECRET).update(`v0:${ts}:${body}`).digest('hex')}`;
  return { send: () => postRaw(`${th.url}${path}`, body, { 'content-type': 'application/x-www-form-urlencoded', 'x-slack-request-timestamp': ts, 'x-slack-signature': sig }) };
}

test('Slack: slash command, buttons, response_url, chat.postMessage notices; forged, stale and replayed requests refused', async (t) => {
  const w = await world(t);
  const slack = await platformServer(t);
  const added = await add(w.th, { name: 'slack', platform: 'slack', config: { signingSecret: { value: SLACK_SECRET }, botToken: { value: 'xoxb-test' }, apiUrl: slack.url } });
  assert.deepEqual(added.config, { signingSecret: 'set (encrypted)', botToken: 'set (encrypted)', apiUrl: slack.url });
  assert.deepEqual(added.hooks, ['/v1/chat/hooks/slack/slack/commands', '/v1/chat/hooks/slack/slack/interactive']);
  const listed = JSON.stringify((await w.th.api('GET', '/v1/chat/transports')).body);
  assert.ok(!listed.includes(SLACK_SECRET) && !listed.includes('xoxb-test'), 'secrets are never answered');
  const raw = await w.th.rawSql<{ config: string }>("SELECT config FROM chat_transports WHERE name = 'slack'");
  assert.ok(!raw[0]!.config.includes(SLACK_SECRET), 'nor stored in the clear');
  await bind(w.th, { transport: 'slack', room: 'C0PAY', tenants: ['bank-a'], subscribe: ['rollouts'] });

  const cmd = (text: string, n: number) =>
    new URLSearchParams({ command: '/ferry', text, user_id: 'U0ALICE', channel_id: 'C0PAY', response_url: `${slack.url}/respond/${n}`, trigger_id: `trig-${n}` }).toString();
  const linked = await slackPost(w.th, '/v1/chat/hooks/slack/slack/commands', cmd(`link ${await w.code()}`, 1)).send();
  assert.equal(linked.status, 200, linked.text);
  assert.match(linked.json.text, new RegExp(`linked: this slack account is ${w.op.name}`));

  const create = slackPost(w.th, '/v1/chat/hooks/slack/slack/commands', cmd('rollout create payments@2.0.0 to env=prod', 2));
  const asked = await create.send();
  assert.equal(asked.status, 200);
  assert.equal(asked.json.response_type, 'in_channel');
  const buttons = asked.json.blocks[1].elements as { action_id: string; value: string }[];
  assert.deepEqual(buttons.map((b) => b.action_id), ['ferry_confirm', 'ferry_cancel']);
  // The same signed request again is a replay.
  const again = await create.send();
  assert.equal(again.status, 409);
  assert.equal(again.json.error.code, 'FERRY_E_CHAT_REPLAY');
  const stale = await slackPost(w.th, '/v1/chat/hooks/slack/slack/commands', cmd('agents', 3), { ts: Date.now() - 6 * 60_000 }).send();
  assert.equal(stale.status, 401);
  assert.equal(stale.json.error.code, 'FERRY_E_CHAT_SIGNATURE');
  const forged = await slackPost(w.th, '/v1/chat/hooks/slack/slack/commands', cmd('agents', 4), { secret: 'not the secret' }).send();
  assert.equal(forged.status, 401);

  const press = new URLSearchParams({ payload: JSON.stringify({ type: 'block_actions', user: { id: 'U0ALICE' }, channel: { id: 'C0PAY' }, trigger_id: 'trig-5', response_url: `${slack.url}/respond/5`, actions: [{ action_id: 'ferry_confirm', value: buttons[0]!.value, action_ts: '1' }] }) }).toString();
  const pressed = await slackPost(w.th, '/v1/chat/hooks/slack/slack/interactive', press).send();
  assert.equal(pressed.status, 200);
  const result = await waitFor('the result on response_url', () => slack.on('/respond/5').find((r) => /R-\d+ started/.test(r.json?.text ?? '')));
  assert.equal(result.json.response_type, 'in_channel');
  assert.match(result.json.text, /audit bank-a#\d+/);
  // The release bot: the rollout's transitions in the channel, by chat.postMessage with the bot token.
  const notice = await waitFor('a rollout notice in the channel', () => slack.on('/chat.postMessage').find((r) => /R-\d+ payments@2\.0\.0/.test(r.json?.text ?? '')));
  assert.equal(notice.json.channel, 'C0PAY');
  assert.equal(notice.headers.authorization, 'Bearer xoxb-test');
});

// ---- DingTalk ---------------------------------------------------------------------------

const DING_APP_SECRET = 'ding-app-secret-1234567890';
const DING_ROBOT_SECRET = 'SEC0f1e2d3c4b5a69788796a5b4c3d2e1f0';
/** As DingTalk computes it (independently of hub/chat/signing.ts). */
const dingSign = (secret: string, ts: number) => createHmac('sha256', secret).update(`${ts}\n${secret}`).digest('base64');

function dingBody(p: Platform, text: string, msgId: string) {
  return JSON.stringify({ msgtype: 'text', text: { content: ` ${text}` }, msgId, conversationId: 'cidBANKA', senderStaffId: 'staff-7', senderId: '$:LWCP_v1:$x', sessionWebhook: `${p.url}/session/${msgId}`, sessionWebhookExpiredTime: Date.now() + 3600_000, conversationType: '2' });
}

test("DingTalk: signed outgoing-robot callbacks, sessionWebhook replies, the group robot's signed notices; Feishu's scheme refused", async (t) => {
  const w = await world(t);
  const ding = await platformServer(t, { errcode: 0, errmsg: 'ok' });
  await add(w.th, { name: 'ding', platform: 'dingtalk', config: { appSecret: { value: DING_APP_SECRET } } });
  await bind(w.th, { transport: 'ding', room: 'cidBANKA', tenants: ['bank-a'], subscribe: ['rollouts'], config: { webhook: { value: `${ding.url}/robot/send?access_token=tok1` }, secret: { value: DING_ROBOT_SECRET } } });
  const post = (body: string, ts = Date.now(), sign = dingSign(DING_APP_SECRET, ts)) => postRaw(`${w.th.url}/v1/chat/hooks/dingtalk/ding`, body, { 'content-type': 'application/json', timestamp: String(ts), sign });

  const linked = await post(dingBody(ding, `ferry link ${await w.code()}`, 'msg-1'));
  assert.equal(linked.status, 200, linked.text);
  assert.equal(linked.json.msgtype, 'markdown');
  assert.match(linked.json.markdown.text, /linked: this dingtalk account/);
  const asked = await post(dingBody(ding, 'ferry rollout create payments@2.0.0 to env=prod', 'msg-2'));
  const code = /`ferry confirm ([A-Z0-9]+)`/.exec(asked.json.markdown.text)?.[1] ?? assert.fail(asked.text);
  const conf = await post(dingBody(ding, `ferry confirm ${code}`, 'msg-3'));
  assert.match(conf.json.markdown.text, /confirmed/);
  await waitFor('the result on the sessionWebhook', () => ding.on('/session/msg-3').find((r) => /R-\d+ started/.test(r.json.markdown.text)));
  // Notices: to the group robot, signed the DingTalk way (milliseconds, key = secret).
  const n = await waitFor('a notice through the robot', () => ding.on('/robot/send').find((r) => /R-\d+ payments/.test(r.json.markdown.text)));
  const ts = Number(n.query.get('timestamp'));
  assert.equal(n.query.get('access_token'), 'tok1');
  assert.ok(Math.abs(ts - Date.now()) < 60_000, 'milliseconds');
  assert.equal(n.query.get('sign'), dingSign(DING_ROBOT_SECRET, ts));

  const replay = await post(dingBody(ding, 'ferry agents', 'msg-3'));
  assert.equal(replay.status, 409);
  const staleTs = Date.now() - 2 * 3600_000;
  assert.equal((await post(dingBody(ding, 'ferry agents', 'msg-4'), staleTs)).status, 401);
  // Feishu's construction (key = "timestamp\nsecret", empty message) with the same secret is not DingTalk's.
  const now = Date.now();
  const feishuStyle = createHmac('sha256', `${now}\n${DING_APP_SECRET}`).update('').digest('base64');
  const swapped = await post(dingBody(ding, 'ferry agents', 'msg-5'), now, feishuStyle);
  assert.equal(swapped.status, 401);
  assert.equal(swapped.json.error.code, 'FERRY_E_CHAT_SIGNATURE');
});

// ---- Feishu / Lark ------------------------------------------------------------------------

const LARK = { token: 'lark-verification-token', key: 'lark-encrypt-key', botSecret: 'lark-bot-secret' };
const feishuBotSign = (secret: string, ts: number) => createHmac('sha256', `${ts}\n${secret}`).update('').digest('base64');

test('Feishu/Lark: URL check, encrypted and signed events, replies by the signed group bot; wrong token, bad signature, replays refused', async (t) => {
  const w = await world(t);
  const lark = await platformServer(t, { code: 0, msg: 'success' });
  await add(w.th, { name: 'lark', platform: 'feishu', config: { verificationToken: { value: LARK.token }, encryptKey: { value: LARK.key } } });
  await bind(w.th, { transport: 'lark', room: 'oc_bank_a', tenants: ['bank-a'], subscribe: [], config: { webhook: { value: `${lark.url}/open-apis/bot/v2/hook/abc` }, secret: { value: LARK.botSecret } } });
  const url = `${w.th.url}/v1/chat/hooks/feishu/lark`;
  const send = (inner: unknown, o: { sign?: boolean; badSig?: boolean; ts?: number } = {}) => {
    const body = JSON.stringify({ encrypt: feishuEncrypt(LARK.key, JSON.stringify(inner)) });
    const ts = String(Math.floor((o.ts ?? Date.now()) / 1000));
    const nonce = 'n-' + Math.random().toString(36).slice(2);
    const sig = createHash('sha256').update(ts + nonce + (o.badSig ? 'other' : LARK.key) + body).digest('hex');
    return postRaw(url, body, { 'content-type': 'application/json', ...(o.sign === false ? {} : { 'x-lark-request-timestamp': ts, 'x-lark-request-nonce': nonce, 'x-lark-signature': sig }) });
  };
  const event = (text: string, id: string, token = LARK.token) => ({
    schema: '2.0',
    header: { event_id: id, token, create_time: String(Date.now()), event_type: 'im.message.receive_v1', tenant_key: 't', app_id: 'cli_x' },
    event: { sender: { sender_id: { open_id: 'ou_alice' }, sender_type: 'user' }, message: { message_id: `om_${id}`, chat_id: 'oc_bank_a', chat_type: 'group', message_type: 'text', content: JSON.stringify({ text: `@_user_1 ${text}` }) } },
  });

  const check = await send({ challenge: 'ch-123', token: LARK.token, type: 'url_verification' }, { sign: false });
  assert.deepEqual(check.json, { challenge: 'ch-123' });
  assert.equal((await send(event(`ferry link ${await w.code()}`, 'ev1'))).status, 200);
  const linked = await waitFor('the reply by the group bot', () => lark.on('/open-apis/bot/v2/hook/abc').find((r) => /linked/.test(r.json.content.text)));
  assert.equal(linked.json.msg_type, 'text');
  assert.equal(linked.json.sign, feishuBotSign(LARK.botSecret, Number(linked.json.timestamp)), 'signed the Feishu way (seconds, key = "timestamp\\nsecret")');
  assert.ok(Math.abs(Number(linked.json.timestamp) * 1000 - Date.now()) < 60_000, 'seconds');
  assert.equal((await send(event('ferry agents', 'ev2'))).status, 200);
  await waitFor('the agents listed', () => lark.on('/open-apis/bot/v2/hook/abc').find((r) => /^2 agents/m.test(r.json.content.text)));

  const replay = await send(event('ferry agents', 'ev2'));
  assert.equal(replay.status, 409);
  assert.equal((await send(event('ferry agents', 'ev3', 'wrong-token'))).status, 401);
  assert.equal((await send(event('ferry agents', 'ev4'), { badSig: true })).status, 401);
  assert.equal((await send(event('ferry agents', 'ev5'), { sign: false })).status, 401, 'an event without a signature');
  assert.equal((await send(event('ferry agents', 'ev6'), { ts: Date.now() - 10 * 60_000 })).status, 401, 'stale');
});

// ---- WeCom --------------------------------------------------------------------------------

const WX = { token: 'wecomToken1', aesKey: 'jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C', corp: 'wwcorp123' };

test('WeCom: URL check, encrypted XML app messages and JSON robot messages, robot webhook and response_url replies; forgeries refused', async (t) => {
  const w = await world(t);
  const wx = await platformServer(t, { errcode: 0, errmsg: 'ok' });
  await add(w.th, { name: 'wx', platform: 'wecom', config: { token: { value: WX.token }, encodingAesKey: { value: WX.aesKey }, receiveId: WX.corp } });
  await bind(w.th, { transport: 'wx', room: 'agent-1000002', tenants: ['bank-a'], subscribe: [], config: { webhook: { value: `${wx.url}/cgi-bin/webhook/send?key=KEY1` } } });
  const hook = `${w.th.url}/v1/chat/hooks/wecom/wx`;
  const q = (cipher: string, o: { ts?: number; nonce?: string; token?: string } = {}) => {
    const timestamp = String(Math.floor((o.ts ?? Date.now()) / 1000));
    const nonce = o.nonce ?? String(Math.floor(Math.random() * 1e9));
    return new URLSearchParams({ msg_signature: wecomSignature(o.token ?? WX.token, timestamp, nonce, cipher), timestamp, nonce });
  };
  const echostr = wecomEncrypt(WX.aesKey, 'echo-8841', WX.corp);
  const check = await (await import('undici')).request(`${hook}?${q(echostr)}&echostr=${encodeURIComponent(echostr)}`);
  assert.equal(check.statusCode, 200);
  assert.equal(await check.body.text(), 'echo-8841');
  const xml = (text: string, id: string) => `<xml><ToUserName><![CDATA[${WX.corp}]]></ToUserName><FromUserName><![CDATA[zhangsan]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[${text}]]></Content><MsgId>${id}</MsgId><AgentID>1000002</AgentID></xml>`;
  const postXml = (text: string, id: string, o: Parameters<typeof q>[1] = {}, receiveId = WX.corp) => {
    const cipher = wecomEncrypt(WX.aesKey, xml(text, id), receiveId);
    return postRaw(`${hook}?${q(cipher, o)}`, `<xml><ToUserName><![CDATA[${WX.corp}]]></ToUserName><Encrypt><![CDATA[${cipher}]]></Encrypt><AgentID><![CDATA[1000002]]></AgentID></xml>`, { 'content-type': 'text/xml' });
  };
  const r1 = await postXml(`ferry link ${await w.code()}`, '1001');
  assert.equal(r1.status, 200);
  assert.equal(r1.text, 'success');
  await waitFor('the reply through the group robot', () => wx.on('/cgi-bin/webhook/send').find((r) => r.query.get('key') === 'KEY1' && /linked/.test(r.json.markdown.content)));
  // The intelligent robot's JSON, with a response_url.
  const robot = JSON.stringify({ msgid: 'rb-1', aibotid: 'bot1', chatid: 'agent-1000002', chattype: 'group', from: { userid: 'zhangsan' }, msgtype: 'text', text: { content: '@ferry ferry agents' }, response_url: `${wx.url}/robot-response/rb-1` });
  const c2 = wecomEncrypt(WX.aesKey, robot, WX.corp);
  assert.equal((await postRaw(`${hook}?${q(c2)}`, JSON.stringify({ encrypt: c2 }), { 'content-type': 'application/json' })).status, 200);
  await waitFor('the reply on response_url', () => wx.on('/robot-response/rb-1').find((r) => /^2 agents/m.test(r.json.markdown.content)));

  assert.equal((await postXml('ferry agents', '1002', { token: 'forged' })).status, 401);
  assert.equal((await postXml('ferry agents', '1003', { ts: Date.now() - 10 * 60_000 })).status, 401);
  assert.equal((await postXml('ferry agents', '1004', {}, 'another-corp')).status, 401, 'for another receiver');
  assert.equal((await postXml('ferry agents', '1005', { nonce: '77' })).status, 200);
  assert.equal((await postXml('ferry agents', '1006', { nonce: '77' })).status, 409, 'a nonce seen is a replay');
});

// ---- the generic webhook ---------------------------------------------------------------------

test('generic webhook: signed in, replies in the answer, notices out signed the same way', async (t) => {
  const w = await world(t);
  const out = await platformServer(t, {});
  await add(w.th, { name: 'ops-bridge', platform: 'webhook', config: { secret: { value: 'bridge-secret' } } });
  await bind(w.th, { transport: 'ops-bridge', room: 'team-a', tenants: ['bank-a'], subscribe: ['rollouts'], config: { url: { value: `${out.url}/notices` } } });
  const send = (body: unknown, secret = 'bridge-secret', ts = Date.now()) => {
    const text = JSON.stringify(body);
    return postRaw(`${w.th.url}/v1/chat/hooks/webhook/ops-bridge`, text, { 'content-type': 'application/json', 'x-ferry-timestamp': String(ts), 'x-ferry-signature': `v1=${createHmac('sha256', secret).update(`${ts}.${text}`).digest('hex')}` });
  };
  const l = await send({ room: 'team-a', user: 'bob', text: `ferry link ${await w.code()}`, id: 'w1' });
  assert.equal(l.status, 200, l.text);
  assert.match(l.json.replies[0].text, /linked/);
  const a = await send({ room: 'team-a', user: 'bob', text: 'ferry rollout create payments@2.0.0 to env=prod', id: 'w2' });
  const code = a.json.replies.find((r: any) => r.confirm).confirm.code;
  const c = await send({ room: 'team-a', user: 'bob', text: `ferry confirm ${code}`, id: 'w3' });
  assert.match(c.json.replies.at(-1).text, /R-\d+ started/);
  const n = await waitFor('a signed notice', () => out.on('/notices').find((r) => /payments@2\.0\.0/.test(r.json.text)));
  assert.equal(n.headers['x-ferry-signature'], `v1=${createHmac('sha256', 'bridge-secret').update(`${n.headers['x-ferry-timestamp']}.${n.text}`).digest('hex')}`);
  assert.equal((await send({ room: 'team-a', user: 'bob', text: 'ferry agents', id: 'w3' })).status, 409);
  assert.equal((await send({ room: 'team-a', user: 'bob', text: 'ferry agents', id: 'w4' }, 'wrong')).status, 401);
  assert.equal((await send({ room: 'team-a', user: 'bob', text: 'ferry agents', id: 'w5' }, 'bridge-secret', Date.now() - 6 * 60_000)).status, 401);
});

// Agent authentication at the WebSocket upgrade, against a real hub on a
// real socket: every refusal is an HTTP 401 with a stable code, the socket is
// closed, and the hub keeps serving everyone else.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { generateKeyPair } from '../../shared/keys.js';
import { challenge, closed, connect, connectWithHeaders, enrollAgent, helloFrame, type Attempt } from '../helpers/agents.js';
import { startHub } from '../helpers/hub.js';
import { waitFor } from '../helpers/tmp.js';

function refused(a: Attempt, code: string) {
  assert.equal(a.ok, false, `expected refusal ${code}`);
  if (a.ok) return;
  assert.equal(a.status, 401);
  assert.equal(a.body.error.code, code);
  assert.ok(a.body.error.hint.length > 0);
}

test('a correctly signed handshake is welcomed and the agent shows as connected', async (t) => {
  const th = await startHub(t);
  const agent = await enrollAgent(th);
  const a = await connect(th.url, agent);
  assert.ok(a.ok);
  const box = a.box;
  const welcome = await box.next('welcome');
  assert.equal(welcome.agentId, agent.id);
  assert.equal(welcome.tenant, 'bank-a');
  const view = await th.api('GET', `/v1/agents/${agent.id}`);
  assert.equal(view.body.status, 'connected');
  a.ws.close();
});

test('bad, replayed and misbound proofs are refused with 401 and a stable code', async (t) => {
  const th = await startHub(t);
  const agent = await enrollAgent(th);
  const other = await enrollAgent(th, 'bank-a', 'other');

  refused(await connect(th.url, agent, { omit: ['signature'] }), 'FERRY_E_AGENT_AUTH_MISSING');
  refused(await connectWithHeaders(th.url, {}), 'FERRY_E_AGENT_AUTH_MISSING');
  refused(await connect(th.url, agent, { agentId: 'agt_doesnotexist' }), 'FERRY_E_AGENT_UNKNOWN');
  refused(await connect(th.url, agent, { key: generateKeyPair() }), 'FERRY_E_AGENT_AUTH_INVALID');
  // agent B's key cannot log in as agent A
  refused(await connect(th.url, agent, { key: other.kp }), 'FERRY_E_AGENT_AUTH_INVALID');
  refused(await connect(th.url, agent, { signature: Buffer.alloc(63).toString('base64') }), 'FERRY_E_AGENT_AUTH_INVALID');
  refused(await connect(th.url, agent, { signature: 'not base64 at all!' }), 'FERRY_E_AGENT_AUTH_INVALID');
  refused(await connect(th.url, agent, { host: 'evil.example:443' }), 'FERRY_E_AGENT_AUTH_INVALID');
  refused(await connect(th.url, agent, { time: Date.now() - 10 * 60_000 }), 'FERRY_E_AGENT_AUTH_CLOCK');
  refused(await connect(th.url, agent, { time: Date.now() + 10 * 60_000 }), 'FERRY_E_AGENT_AUTH_CLOCK');
  refused(await connect(th.url, agent, { nonce: 'AAAA' + (await challenge(th.url)).slice(4) }), 'FERRY_E_AGENT_AUTH_REPLAYED');

  // the same signed headers twice: the second is a replay
  const first = await connect(th.url, agent);
  assert.ok(first.ok);
  first.ws.close();
  const replay = await connectWithHeaders(th.url, first.headers);
  refused(replay, 'FERRY_E_AGENT_AUTH_REPLAYED');
  assert.ok(!replay.ok && replay.closedAfter, 'socket is closed after a refusal');

  // every refusal was logged with its code; the hub still serves a good agent
  const codes = th.logs.filter((l) => l.msg === 'agent handshake refused').map((l) => l.code);
  assert.ok(codes.includes('FERRY_E_AGENT_AUTH_INVALID') && codes.includes('FERRY_E_AGENT_AUTH_REPLAYED'));
  const again = await connect(th.url, agent);
  assert.ok(again.ok);
  again.ws.close();
});

test('malformed, unknown and oversized frames get coded errors; other agents are unaffected', async (t) => {
  const th = await startHub(t);
  const bad = await enrollAgent(th, 'bank-a', 'bad');
  const good = await enrollAgent(th, 'bank-b', 'good');
  const b = await connect(th.url, bad);
  const g = await connect(th.url, good);
  assert.ok(b.ok && g.ok);
  const bbox = b.box;
  const gbox = g.box;
  await bbox.next('welcome');
  await gbox.next('welcome');

  b.ws.send('{"type": "hello", ');
  assert.equal((await bbox.next('error')).code, 'FERRY_E_PROTOCOL_MALFORMED');
  b.ws.send(JSON.stringify({ type: 'rm-rf' }));
  assert.equal((await bbox.next('error')).code, 'FERRY_E_PROTOCOL_UNKNOWN_TYPE');
  b.ws.send(JSON.stringify({ type: 'error', code: 'X', message: 'y', sneaky: 1 }));
  const invalid = await bbox.next('error');
  assert.equal(invalid.code, 'FERRY_E_PROTOCOL_INVALID');
  assert.match(invalid.message, /sneaky|unrecognized/i);
  b.ws.send(Buffer.from([1, 2, 3]), { binary: true });
  assert.equal((await bbox.next('error')).code, 'FERRY_E_PROTOCOL_MALFORMED');

  // over maxPayload: the hub closes with 1009 (message too big)
  const closing = closed(b.ws);
  b.ws.send('x'.repeat(1024 * 1024 + 1));
  assert.equal((await closing).code, 1009);

  // the good agent is still connected and served
  g.ws.send(JSON.stringify({ type: 'error', code: 'FERRY_E_INTERNAL', message: 'just checking' }));
  const view = await th.api('GET', `/v1/agents/${good.id}`);
  assert.equal(view.body.status, 'connected');
  g.ws.close();
});

test('an agent that keeps violating the protocol is disconnected', async (t) => {
  const th = await startHub(t);
  const agent = await enrollAgent(th);
  const a = await connect(th.url, agent);
  assert.ok(a.ok);
  const closing = closed(a.ws);
  for (let i = 0; i < 10; i++) a.ws.send('nonsense');
  assert.equal((await closing).code, 1008);
});

test('revocation closes the live socket within 2 s and refuses reconnects', async (t) => {
  const th = await startHub(t);
  const agent = await enrollAgent(th);
  const a = await connect(th.url, agent);
  assert.ok(a.ok);
  await a.box.next('welcome');
  const closing = closed(a.ws);
  const started = Date.now();
  const r = await th.api('POST', `/v1/agents/${agent.id}/revoke`);
  assert.equal(r.status, 200);
  assert.equal(r.body.status, 'revoked');
  const c = await closing;
  assert.equal(c.code, 4003);
  assert.ok(Date.now() - started < 2000, `closed after ${Date.now() - started} ms`);
  refused(await connect(th.url, agent), 'FERRY_E_AGENT_REVOKED');
  assert.equal((await th.api('GET', `/v1/agents/${agent.id}`)).body.status, 'revoked');
});

test('a silent peer is dropped by the heartbeat; a second connection replaces the first', async (t) => {
  const th = await startHub(t, { heartbeatMs: 150 });
  const agent = await enrollAgent(th);
  const silent = await connect(th.url, agent, {}, { autoPong: false });
  assert.ok(silent.ok);
  const c = await closed(silent.ws);
  assert.equal(c.code, 1006, 'terminated without a close frame');

  const one = await connect(th.url, agent);
  assert.ok(one.ok);
  const oneClosed = closed(one.ws);
  const two = await connect(th.url, agent);
  assert.ok(two.ok);
  assert.equal((await oneClosed).code, 4009);
  assert.equal((await th.api('GET', `/v1/agents/${agent.id}`)).body.status, 'connected');
  two.ws.close();
});

test('WebSocket upgrades on any other path get 404 and no socket', async (t) => {
  const th = await startHub(t);
  for (const path of ['/v1/agents', '/agent/v2', '/agent/v1/extra']) {
    const ws = new WebSocket(th.url.replace('http', 'ws') + path);
    const status = await new Promise<number>((resolve, reject) => {
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('open', () => reject(new Error(`upgrade on ${path} succeeded`)));
      ws.on('error', reject);
    });
    assert.equal(status, 404, path);
  }
});

test('last seen and hello facts show at once, reach the database in a batch within a second, and on close', async (t) => {
  const th = await startHub(t);
  const agent = await enrollAgent(th);
  const row = async () => (await th.rawSql<{ last_seen_at: number | null; agent_version: string | null }>('SELECT last_seen_at, agent_version FROM agents WHERE id = ?', [agent.id]))[0]!;
  const a = await connect(th.url, agent);
  assert.ok(a.ok);
  await a.box.next('welcome');
  a.ws.send(helloFrame());
  await waitFor('hello seen', async () => (await th.api('GET', `/v1/agents/${agent.id}`)).body.agentVersion === 'test', 2000, 10);
  assert.equal((await row()).agent_version, null, 'not one commit per hello');
  await waitFor('presence written', async () => (await row()).agent_version === 'test', 3000, 50);
  a.ws.close();
  await waitFor('disconnected', async () => (await th.api('GET', `/v1/agents/${agent.id}`)).body.status === 'disconnected');
  const seen = Date.parse((await th.api('GET', `/v1/agents/${agent.id}`)).body.lastSeenAt);
  await th.close();
  assert.equal((await row()).last_seen_at, seen, 'the last disconnect is written on shutdown');
});

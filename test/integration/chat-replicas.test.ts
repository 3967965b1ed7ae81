// Chat commands with two hub replicas on one PostgreSQL database, as behind a
// balancer a platform's callbacks land on either: a request made through one
// replica is confirmed through the other (confirmations live in the
// database); the same confirmation sent to both at once is done once; a
// platform's retry of a message that reached one replica is refused by the
// other (the replay memo is shared).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { postRaw } from '../helpers/chat-platforms.js';
import { replicaDirs, startHub, type TestHub } from '../helpers/hub.js';
import { postgresAvailable } from '../helpers/postgres.js';
import { apiClient, simAgents, simRelease } from '../helpers/sim-agents.js';
import { skipOrFail } from '../helpers/skip.js';
import { waitFor } from '../helpers/tmp.js';

const SECRET = 'replica-bridge-secret';

test('[postgres] chat across two replicas: asked on one, confirmed on the other; one confirmation sent to both is done once; a retry to the other replica is refused', async (t) => {
  if (!(await postgresAvailable())) return skipOrFail(t, 'PostgreSQL does not answer (run scripts/test-env.sh, or set FERRY_TEST_POSTGRES_URL)');
  const { database, dirs: [dirA, dirB], token } = await replicaDirs(t);
  const opts = { database, adminToken: token, rateLimitPerMinute: 0, rolloutTickMs: 50, checkpointMs: 3_600_000 };
  const a = await startHub(t, { ...opts, dataDir: dirA });
  const b = await startHub(t, { ...opts, dataDir: dirB });
  const api = apiClient(() => b.url, token);
  const agents = await simAgents(api, () => b.url, 'bank-a', 3, { applyMs: 30 });
  for (const x of agents) t.after(() => x.stop());
  await simRelease(api, 'payments', '2.0.0');
  const op = await a.person({ tenants: { 'bank-a': 'operator' } });
  assert.equal((await a.api('POST', '/v1/chat/transports', { name: 'bridge', platform: 'webhook', config: { secret: { value: SECRET } } })).status, 201);
  assert.equal((await b.api('POST', '/v1/chat/rooms', { transport: 'bridge', room: 'ops', tenants: ['bank-a'] })).status, 201);
  const send = async (hub: TestHub, text: string, id: string) => {
    const body = JSON.stringify({ room: 'ops', user: 'zhang.wei', text, id });
    const ts = String(Date.now());
    return postRaw(`${hub.url}/v1/chat/hooks/webhook/bridge`, body, { 'content-type': 'application/json', 'x-ferry-timestamp': ts, 'x-ferry-signature': `v1=${createHmac('sha256', SECRET).update(`${ts}.${body}`).digest('hex')}` });
  };
  const texts = (r: { json: any }) => (r.json.replies as { text: string }[]).map((x) => x.text).join('\n');

  // Linked through A, asking through B: the account and the room are the database's.
  assert.match(texts(await send(a, `ferry link ${(await a.api('POST', '/v1/chat/link-codes', {}, op.token)).body.code}`, 'w1')), /linked/);
  const asked = await send(b, 'ferry rollout create payments@2.0.0 to tenant=bank-a', 'w2');
  const code = (asked.json.replies as any[]).find((r) => r.confirm)?.confirm.code ?? assert.fail(texts(asked));
  // The platform retries w2 and the balancer sends it to A: refused, nothing asked twice.
  const retry = await send(a, 'ferry rollout create payments@2.0.0 to tenant=bank-a', 'w2');
  assert.equal(retry.status, 409, retry.text);
  assert.equal(retry.json.error.code, 'FERRY_E_CHAT_REPLAY');

  // The same confirmation through both replicas at once (two messages): done once.
  const [x, y] = await Promise.all([send(a, `ferry confirm ${code}`, 'w3'), send(b, `ferry confirm ${code}`, 'w4')]);
  const answers = [texts(x), texts(y)];
  assert.equal(answers.filter((s) => /R-\d+ started/.test(s)).length, 1, answers.join('\n---\n'));
  assert.equal(answers.filter((s) => /FERRY_E_CHAT_CONFIRMATION: .*(changed meanwhile|is done)/.test(s)).length, 1, answers.join('\n---\n'));
  const rollouts = (await a.api('GET', '/v1/rollouts')).body.rollouts as any[];
  assert.equal(rollouts.length, 1, 'one rollout');
  await waitFor('the rollout succeeds', async () => (await b.api('GET', `/v1/rollouts/${rollouts[0].id}`)).body.state === 'succeeded', 30_000);
  const log = (await a.api('GET', '/v1/audit/bank-a/entries?limit=5000')).body.entries as any[];
  assert.equal(log.filter((e) => e.action === 'chat.confirm' && e.details.confirmation === code && e.outcome === 'ok').length, 1);
  assert.equal(log.filter((e) => e.action === 'chat.result' && e.details.confirmation === code && e.outcome === 'ok').length, 1);
});

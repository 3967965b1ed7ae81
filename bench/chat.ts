// What a chat command costs end to end: `ferry agent show ID` sent to the
// hub as a platform would (the generic signed webhook: HMAC checked, the
// message id remembered against replays, the room and the account looked up,
// parsed, the person's rights in the room's tenant checked, the command put
// on record in the audit log, answered with the acknowledgement and the
// result), against its named peer, the same operation through the HTTP API
// (GET /v1/agents/:id with the same person's token). One hub, sqlite, 100
// rooms bound to the tenant, each with its own linked account; `C` senders at
// once, each cycling through the rooms; round trip = request out to answer in.
//   node dist/bench/chat.js [commands=1000] [senders=10] [rooms=100] [agents=200] [fleet=200]
// Chat and API requests are interleaved (order alternating) so drift on a
// noisy host hits both alike; ratios are within one run.
//
// Then the release bot: `fleet` simulated agents (real WebSockets, signed
// handshake) of another tenant, the same number of rooms bound to it, one
// rollout in four waves. Counted per room: notices about the rollout and the
// messages they went out in, against its wave transitions and against the
// per-agent events the rollout recorded (what a bot posting each agent's
// progress would send); and the delay from a transition to its notice.
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Agent, request } from 'undici';
import { WEBHOOK_HEADERS, webhookSignature } from '../hub/chat/signing.js';
import { createHub } from '../hub/server.js';
import { newId } from '../hub/store/fleet.js';
import { SqliteDb } from '../hub/store/sqlite.js';
import { Store } from '../hub/store/store.js';
import { encodePublicKey, generateKeyPair } from '../shared/keys.js';
import { silentLogger } from '../shared/logger.js';
import { apiClient, simAgents, simRelease } from '../test/helpers/sim-agents.js';
import { fmt, quantile, table } from './lib/report.js';

const arg = (i: number, d: number, min: number) => Math.max(min, Number(process.argv[i] ?? d) || d);
const N = arg(2, 1000, 50);
const SENDERS = arg(3, 10, 1);
const ROOMS = arg(4, 100, 1);
const AGENTS = arg(5, 200, 1);
const FLEET = arg(6, 200, 4);
const WARMUP = Math.min(200, Math.ceil(N / 5));
const SECRET = 'bench-webhook-secret';

const root = mkdtempSync(join(tmpdir(), 'ferry-bench-chat-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));

// The store: bank-a with AGENTS agents, an admin, an operator on bank-a.
const dir = join(root, 'hub');
const store = new Store(SqliteDb.open(dir, { create: true }));
const now = Date.now();
const seeded = await store.tx(async () => {
  const admin = await store.people.createUser({ name: 'admin', kind: 'person', vendorRole: 'admin', passwordHash: null }, null, now);
  const op = await store.people.createUser({ name: 'zhang.wei', kind: 'person', vendorRole: null, passwordHash: null }, null, now);
  const tenant = await store.fleet.createTenant('bank-a', now);
  await store.people.grant(op.id, tenant.id, 'operator', null, now);
  const adminToken = (await store.people.createToken({ userId: admin.id, name: 'a', role: 'admin', tenants: null, expiresAt: null }, null, now)).token;
  const opToken = (await store.people.createToken({ userId: op.id, name: 'o', role: 'operator', tenants: ['bank-a'], expiresAt: null }, null, now)).token;
  const ids: string[] = [];
  for (let i = 0; i < AGENTS; i++) {
    const id = newId('agt');
    await store.db.run('INSERT INTO agents (id, tenant_id, name, public_key, labels, enrolled_at) VALUES (?, ?, ?, ?, ?, ?)', [id, tenant.id, `host-${i}`, encodePublicKey(generateKeyPair().publicKey), '{"env":"prod"}', now]);
    ids.push(id);
  }
  return { adminToken, opToken, ids };
});
await store.close();

const hub = await createHub({ dataDir: dir, host: '127.0.0.1', port: 0, heartbeatMs: 60_000, checkpointMs: 3_600_000, rateLimitPerMinute: 0, log: silentLogger() });
const dispatcher = new Agent({ connections: SENDERS * 2, pipelining: 1 });

async function api(method: string, path: string, body: unknown, token: string): Promise<any> {
  const res = await request(`${hub.url}${path}`, { method: method as 'POST', dispatcher, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const json = (await res.body.json()) as any;
  if (res.statusCode >= 300) throw new Error(`${method} ${path}: ${res.statusCode} ${JSON.stringify(json)}`);
  return json;
}

let msg = 0;
/** One chat message through the signed webhook; the replies the hub answered with. */
async function chat(room: number, text: string): Promise<{ kind: string; text: string }[]> {
  const body = JSON.stringify({ room: `room-${room}`, user: `u-${room}`, text, id: `m-${++msg}` });
  const ts = String(Date.now());
  const res = await request(`${hub.url}/v1/chat/hooks/webhook/bench`, {
    method: 'POST',
    dispatcher,
    headers: { 'content-type': 'application/json', [WEBHOOK_HEADERS.timestamp]: ts, [WEBHOOK_HEADERS.signature]: webhookSignature(SECRET, ts, body) },
    body,
  });
  const json = (await res.body.json()) as { replies: { kind: string; text: string }[] };
  if (res.statusCode !== 200) throw new Error(`webhook: ${res.statusCode} ${JSON.stringify(json)}`);
  return json.replies;
}

// 100 rooms of bank-a on one webhook transport, each with its own account linked to the operator.
await api('POST', '/v1/chat/transports', { name: 'bench', platform: 'webhook', config: { secret: { value: SECRET } } }, seeded.adminToken);
for (let r = 0; r < ROOMS; r++) {
  await api('POST', '/v1/chat/rooms', { transport: 'bench', room: `room-${r}`, tenants: ['bank-a'] }, seeded.adminToken);
  const { code } = await api('POST', '/v1/chat/link-codes', {}, seeded.opToken);
  const linked = await chat(r, `ferry link ${code}`);
  if (!/linked/.test(linked.at(-1)?.text ?? '')) throw new Error(`link room ${r}: ${JSON.stringify(linked)}`);
}

async function viaChat(room: number, id: string): Promise<number> {
  const t0 = performance.now();
  const replies = await chat(room, `ferry agent show ${id}`);
  const dt = performance.now() - t0;
  if (replies[0]?.kind !== 'ack' || replies.at(-1)?.kind !== 'result' || !replies.at(-1)!.text.includes(id)) throw new Error(`chat: ${JSON.stringify(replies)}`);
  return dt;
}

async function viaApi(id: string): Promise<number> {
  const t0 = performance.now();
  const res = await request(`${hub.url}/v1/agents/${id}`, { dispatcher, headers: { authorization: `Bearer ${seeded.opToken}` } });
  await res.body.text();
  if (res.statusCode !== 200) throw new Error(`GET /v1/agents/${id}: ${res.statusCode}`);
  return performance.now() - t0;
}

const chatMs: number[] = [];
const apiMs: number[] = [];
let next = 0;
const t0 = performance.now();
await Promise.all(
  Array.from({ length: SENDERS }, async (_, s) => {
    for (let i = next++; i < WARMUP + N; i = next++) {
      const id = seeded.ids[i % seeded.ids.length]!;
      const room = (i * 7 + s) % ROOMS;
      const [x, y] = i % 2 === 0 ? [await viaChat(room, id), await viaApi(id)] : [await viaApi(id), await viaChat(room, id)].reverse();
      if (i < WARMUP) continue;
      chatMs.push(x!);
      apiMs.push(y!);
    }
  }),
);
const wall = (performance.now() - t0) / 1000;
const entries = (await api('GET', '/v1/audit/bank-a/entries?limit=1', undefined, seeded.adminToken).catch(() => null)) as { size?: number } | null;

const q = (xs: number[], p: number) => quantile(xs, p);
const rows = [
  ['round trip, ms', 'p50', 'p90', 'p99', 'max'],
  [`chat: ferry agent show (signed webhook, ${ROOMS} rooms)`, fmt(q(chatMs, 0.5), 2), fmt(q(chatMs, 0.9), 2), fmt(q(chatMs, 0.99), 2), fmt(Math.max(...chatMs), 2)],
  ['peer: GET /v1/agents/:id (API token)', fmt(q(apiMs, 0.5), 2), fmt(q(apiMs, 0.9), 2), fmt(q(apiMs, 0.99), 2), fmt(Math.max(...apiMs), 2)],
  ['ratio chat / API', `${fmt(q(chatMs, 0.5) / q(apiMs, 0.5), 2)}x`, `${fmt(q(chatMs, 0.9) / q(apiMs, 0.9), 2)}x`, `${fmt(q(chatMs, 0.99) / q(apiMs, 0.99), 2)}x`, ''],
];
console.log(`ferry bench:chat — node ${process.version}, ${availableParallelism()} cpus (${cpus()[0]?.model.trim() ?? '?'}), sqlite, ${AGENTS} agents, ${ROOMS} rooms, ${SENDERS} senders at once, ${N} commands and ${N} API reads (after ${WARMUP} warm-up), ${fmt(wall, 1)} s\n`);
console.log(table(rows));
console.log(`\nchat p99 ${fmt(q(chatMs, 0.99), 1)} ms (target: under 1000 ms with ${ROOMS} rooms active); every chat command is an audit entry (bank-a's log${entries?.size !== undefined ? `: ${entries.size} entries` : ''}), the API read is not`);

// ---- the release bot under a rollout -------------------------------------------------------------
const client = apiClient(() => hub.url, seeded.adminToken);
const fleet = await simAgents(client, () => hub.url, 'bank-n', FLEET, { applyMs: 20, namePrefix: 'n' });
await simRelease(client, 'payments', '9.0.0');
const roomIds: string[] = [];
for (let r = 0; r < ROOMS; r++) roomIds.push((await api('POST', '/v1/chat/rooms', { transport: 'console', room: `n-${r}`, tenants: ['bank-n'], subscribe: ['rollouts'] }, seeded.adminToken)).id as string);
const until = async (what: string, ok: () => Promise<boolean>, ms = 600_000) => {
  const end = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
};
await until('the fleet connected', async () => fleet.every((a) => a.connected));
const ro = await api('POST', '/v1/rollouts', { stack: 'payments', version: '9.0.0', selector: 'tenant=bank-n', waves: '1,10%,50%,100%' }, seeded.adminToken);
await until('the rollout succeeded', async () => (await api('GET', `/v1/rollouts/${ro.id}`, undefined, seeded.adminToken)).state === 'succeeded');
const num = Number(String(ro.id).slice(2));
const events = await hub.store.db.all<{ kind: string; n: number; last: number }>('SELECT kind, count(*) AS n, max(at) AS last FROM rollout_events WHERE rollout = ? GROUP BY kind', [num]);
const transitions = await hub.store.db.all<{ at: number }>("SELECT at FROM rollout_events WHERE rollout = ? AND kind IN ('rollout', 'wave') ORDER BY id", [num]);
const perAgent = events.filter((e) => e.kind !== 'rollout' && e.kind !== 'wave').reduce((n, e) => n + Number(e.n), 0);
await until('every room told of the success', async () => {
  for (const id of roomIds) if (!(await hub.store.chat.sentTo(id)).some((n) => n.body.includes(`${ro.id} payments@9.0.0 succeeded`))) return false;
  return true;
}, 120_000);
const notices: number[] = [];
const messages: number[] = [];
const delays: number[] = [];
for (const id of roomIds) {
  const sent = (await hub.store.chat.sentTo(id)).filter((n) => n.body.includes(String(ro.id)));
  notices.push(sent.length);
  messages.push(new Set(sent.map((n) => n.digest)).size);
  // The k-th notice is about the k-th transition (they are queued in order).
  sent.forEach((n, k) => transitions[k] && delays.push(Number(n.sent_at) - Number(transitions[k]!.at)));
}
console.log(`\nthe release bot: ${FLEET} agents of bank-n, ${ROOMS} rooms subscribed, one rollout in 4 waves (1, 10%, 50%, 100%)\n`);
console.log(
  table([
    ['per room', 'min', 'max'],
    ['wave transitions (rollout started, each wave, succeeded)', String(transitions.length), String(transitions.length)],
    ['notices about the rollout', String(Math.min(...notices)), String(Math.max(...notices))],
    ['messages they went out in (digests)', String(Math.min(...messages)), String(Math.max(...messages))],
    ['peer: per-agent events the rollout recorded (a bot posting each)', String(perAgent), String(perAgent)],
  ]),
);
console.log(`\nnotices per transition per room: ${fmt(Math.max(...notices) / transitions.length, 2)} (target: at most 1); transition to notice sent: p50 ${fmt(q(delays, 0.5), 0)} ms, p99 ${fmt(q(delays, 0.99), 0)} ms (notices wait up to 1.5 s to be merged)`);
for (const a of fleet) a.stop();
await dispatcher.close();
await hub.close();

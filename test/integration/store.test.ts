// The store as an operator meets it: `ferry-hub migrate` from a populated
// sqlite hub into PostgreSQL (verified on both sides), readiness that fails
// while the database is unreachable and recovers with it, and a clear refusal
// of a database written by a newer hub, on both backends; and the presence
// leases several replicas keep there (one per replica, not per agent).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { balancer } from '../helpers/balancer.js';
import { freePort } from '../helpers/faults.js';
import type { Cluster } from '../../hub/cluster/cluster.js';
import { Presence } from '../../hub/gateway/presence.js';
import { openStore } from '../../hub/store/store.js';
import { dbPath, initDataDir, memoryLogger, rawSqlOn, startHub } from '../helpers/hub.js';
import { PG_ADMIN_URL, freshDatabase, postgresAvailable } from '../helpers/postgres.js';
import { daemon, run } from '../helpers/proc.js';
import { apiClient, simAgents, simRelease } from '../helpers/sim-agents.js';
import { tempDir, waitFor } from '../helpers/tmp.js';

const needPostgres = async (t: { skip(m: string): void }) => {
  if (await postgresAvailable()) return true;
  if (process.env.CI) throw new Error('PostgreSQL does not answer: CI runs the store tests on it (scripts/test-env.sh starts it)');
  t.skip('PostgreSQL does not answer (run scripts/test-env.sh): NOT run');
  return false;
};

test('ferry-hub migrate copies a populated sqlite hub into PostgreSQL; both verify, and the hub carries on there', async (t) => {
  if (!(await needPostgres(t))) return;
  // a hub with people, agents, releases, a finished rollout, events and audit entries
  const dataDir = join(tempDir(t), 'hub');
  const token = await initDataDir(dataDir);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  let hub = daemon(t, 'hub', ['serve', '--data-dir', dataDir, '--listen', `127.0.0.1:${port}`, '--tick', '50', '--log-level', 'warn']);
  await hub.waitFor(/listening on/);
  const api = apiClient(() => url, token);
  const agents = await simAgents(api, () => url, 'bank-m', 4);
  t.after(() => agents.forEach((a) => a.stop()));
  await simRelease(api, 'payments', '1.0.0');
  await waitFor('agents connected', () => agents.every((a) => a.connected), 20_000);
  const r = await api('POST', '/v1/rollouts', { stack: 'payments', version: '1.0.0', selector: '*', waves: '1,100%' });
  await waitFor('rollout done', async () => (await api('GET', `/v1/rollouts/${r.body.id}`)).body.state === 'succeeded', 20_000);
  assert.equal((await api('POST', '/v1/users', { name: 'dora', vendorRole: 'viewer' })).status, 201);
  const dora = (await api('POST', '/v1/api-tokens', { user: 'dora', name: 'wall', role: 'viewer' })).body.token as string;
  assert.equal((await api('POST', '/v1/audit/bank-m/checkpoint')).status, 200);
  const before = await run('ferry', ['audit', 'verify', '--json'], { env: { FERRY_HUB: url, FERRY_TOKEN: token, XDG_CONFIG_HOME: tempDir(t) } });
  assert.equal(before.code, 0, before.stdout + before.stderr);
  for (const a of agents) a.stop();
  await hub.stop();

  // into an empty database; a second run into the same one is refused (it holds a hub now)
  const database = await freshDatabase(t);
  const m = await run('hub', ['migrate', '--data-dir', dataDir, '--to', database, '--json']);
  assert.equal(m.code, 0, m.stderr);
  const copied = JSON.parse(m.stdout) as { tables: Record<string, number>; audit: { log: string; size: number }[] };
  assert.ok(copied.tables.agents === 4 && copied.tables.users === 2 && copied.tables.rollouts === 1 && (copied.tables.audit_entries ?? 0) > 10, JSON.stringify(copied.tables));
  assert.deepEqual(copied.audit.map((x) => x.log).sort(), ['_hub', 'bank-m']);
  const twice = await run('hub', ['migrate', '--data-dir', dataDir, '--to', database]);
  assert.equal(twice.code, 5, twice.stderr);
  assert.match(twice.stderr, /FERRY_E_HUB_ALREADY_INITIALISED/);

  // the hub on PostgreSQL: same people, same log (verified), and its ids carry on after the copied ones
  hub = daemon(t, 'hub', ['serve', '--data-dir', dataDir, '--database', database, '--listen', `127.0.0.1:${port}`, '--tick', '50', '--log-level', 'warn']);
  await hub.waitFor(/listening on .*store: postgres/);
  const after = await run('ferry', ['audit', 'verify', '--json'], { env: { FERRY_HUB: url, FERRY_TOKEN: token, XDG_CONFIG_HOME: tempDir(t) } });
  assert.equal(after.code, 0, after.stdout + after.stderr);
  const sizes = (o: string) => Object.fromEntries((JSON.parse(o).reports as { log: string; verifiedSize: number }[]).map((x) => [x.log, x.verifiedSize]));
  assert.deepEqual(sizes(after.stdout), sizes(before.stdout));
  assert.equal((await api('GET', '/v1/agents', undefined)).body.agents.length, 4);
  assert.equal((await apiClient(() => url, dora)('GET', '/v1/whoami')).body.user, 'dora', 'tokens made on sqlite work on PostgreSQL');
  for (const a of agents) a.start();
  await simRelease(api, 'payments', '2.0.0');
  await waitFor('agents back', () => agents.every((a) => a.connected), 20_000);
  const r2 = await api('POST', '/v1/rollouts', { stack: 'payments', version: '2.0.0', selector: '*' });
  assert.equal(r2.status, 201, JSON.stringify(r2.body));
  assert.equal(r2.body.id, 'R-2', 'rollout numbers carry on');
  await waitFor('second rollout done', async () => (await api('GET', `/v1/rollouts/${r2.body.id}`)).body.state === 'succeeded', 20_000);
  const ids = await rawSqlOn<{ id: number }>({ dataDir, database }, 'SELECT id FROM rollout_events ORDER BY id');
  assert.ok(ids.every((x, i) => i === 0 || x.id > ids[i - 1]!.id) && ids.length > copied.tables.rollout_events!, 'event ids carry on after the copied ones');
});

test('readiness fails while PostgreSQL is unreachable, with the code that says so, and recovers with it', async (t) => {
  if (!(await needPostgres(t))) return;
  const database = await freshDatabase(t);
  const pg = new URL(PG_ADMIN_URL);
  const proxyPort = await freePort();
  let lb = await balancer(t, () => [Number(pg.port || 5432)], proxyPort);
  const viaProxy = new URL(database);
  viaProxy.host = `127.0.0.1:${proxyPort}`;
  const th = await startHub(t, { database: viaProxy.toString(), postgres: { poolSize: 2 } });
  assert.equal((await th.api('GET', '/readyz', undefined, null)).status, 200);
  await lb.close(); // the network path to the database is gone
  const down = await waitFor('not ready', async () => {
    const r = await th.api('GET', '/readyz', undefined, null);
    return r.status === 503 ? r : null;
  }, 20_000, 200);
  assert.equal(down.body.error.code, 'FERRY_E_DB_UNREACHABLE');
  assert.doesNotMatch(JSON.stringify(down.body), /postgres:\/\/[^*]*:[^*@]+@/, 'no password in the answer');
  lb = await balancer(t, () => [Number(pg.port || 5432)], proxyPort);
  await waitFor('ready again', async () => (await th.api('GET', '/readyz', undefined, null)).status === 200, 20_000, 200);
});

test('a database that stops accepting sessions (as while it restarts): readiness says so, the hub recovers with it, and it stops while the database still refuses', async (t) => {
  if (!(await needPostgres(t))) return;
  const database = await freshDatabase(t);
  const name = new URL(database).pathname.slice(1);
  const admin = async (sql: string) => rawSqlOn({ dataDir: tempDir(t), database: PG_ADMIN_URL }, sql);
  // The driver leaves a query pending for as long as the server refuses new sessions; the hub's own deadline ends it.
  const th = await startHub(t, { database, postgres: { poolSize: 2, deadlineMs: 3000 } });
  assert.equal((await th.api('GET', '/readyz', undefined, null)).status, 200);
  const refuse = async () => {
    await admin(`ALTER DATABASE ${name} ALLOW_CONNECTIONS false`);
    await admin(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${name}'`);
  };
  t.after(() => admin(`ALTER DATABASE ${name} ALLOW_CONNECTIONS true`).catch(() => {}));
  await refuse();
  const down = await waitFor('not ready', async () => {
    const r = await th.api('GET', '/readyz', undefined, null);
    return r.status === 503 ? r : null;
  }, 20_000, 200);
  assert.equal(down.body.error.code, 'FERRY_E_DB_UNREACHABLE');
  // a write asked for meanwhile fails with the code that says why, and is not made later
  const w = await th.api('POST', '/v1/users', { name: 'late', vendorRole: 'viewer' });
  assert.equal(w.status, 503, JSON.stringify(w.body));
  assert.equal(w.body.error.code, 'FERRY_E_DB_UNREACHABLE');
  await admin(`ALTER DATABASE ${name} ALLOW_CONNECTIONS true`);
  await waitFor('ready again', async () => (await th.api('GET', '/readyz', undefined, null)).status === 200, 20_000, 200);
  // The driver may still hand a refusal from the outage to a statement or two after it: those answer 503 too.
  const late = await waitFor('requests answered again', async () => {
    const r = await th.api('GET', '/v1/users/late');
    return r.status === 503 ? null : r;
  }, 20_000, 200);
  assert.equal(late.status, 404, 'the write that failed was not made when the database came back: ' + JSON.stringify(late.body));
  assert.equal((await th.api('POST', '/v1/users', { name: 'dora', vendorRole: 'viewer' })).status, 201);
  await refuse();
  await th.close(); // resolves: every step that needed the database gave up on it
  assert.ok(th.logs.some((l) => l.msg === 'hub stopped'), 'the hub says it stopped');
});

test('a database written by a newer hub is refused at start, on sqlite and on PostgreSQL; an unreachable database says so', async (t) => {
  const dataDir = join(tempDir(t), 'hub');
  await initDataDir(dataDir);
  const db = new Database(dbPath(dataDir));
  db.pragma('user_version = 99');
  db.close();
  let r = await run('hub', ['serve', '--data-dir', dataDir, '--listen', `127.0.0.1:${await freePort()}`]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /FERRY_E_DB_VERSION: The database was written by a newer hub: schema 99, this hub knows up to \d+/);
  r = await run('hub', ['serve', '--data-dir', dataDir, '--database', 'postgres://ferry:secret@127.0.0.1:1/nowhere', '--listen', `127.0.0.1:${await freePort()}`]);
  assert.equal(r.code, 6, r.stderr);
  assert.match(r.stderr, /FERRY_E_DB_UNREACHABLE: The hub database cannot be reached: postgres:\/\/ferry:\*\*\*@127\.0\.0\.1:1\/nowhere/);
  assert.doesNotMatch(r.stderr, /secret/);
  if (!(await needPostgres(t))) return;
  const database = await freshDatabase(t);
  const pgDir = join(tempDir(t), 'pg');
  await initDataDir(pgDir, database);
  await rawSqlOn({ dataDir: pgDir, database }, 'UPDATE ferry_schema SET version = 99');
  r = await run('hub', ['serve', '--data-dir', pgDir, '--database', database, '--listen', `127.0.0.1:${await freePort()}`]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /FERRY_E_DB_VERSION: .*schema 99/);
});

test('[postgres] presence: an agent is connected while the one lease of its replica lasts; a dead replica\'s agents go offline and are cleared, another replica\'s are left alone', async (t) => {
  if (!(await needPostgres(t))) return;
  const database = await freshDatabase(t);
  const store = await openStore({ database }, { create: true });
  t.after(() => store.close());
  const now = 1_000_000;
  await store.fleet.createTenant('bank-l', now);
  const ids: string[] = [];
  for (let i = 0; i < 4; i++) {
    const { token } = await store.fleet.createEnrollmentToken('bank-l', 60_000, null, now);
    ids.push((await store.tx(() => store.fleet.enroll({ token, publicKey: `pk-${i}`, name: `l${i}`, labels: {} }, now))).id);
  }
  const [a1, a2, b1, b2] = ids as [string, string, string, string];
  // replica A takes a1, a2; replica B takes b1, b2: one lease row each
  await store.fleet.writePresence([a1, a2].map((agentId) => ({ agentId, lastSeenAt: now, lease: { replica: 'rep_a', until: now + 30_000 } })));
  await store.fleet.writePresence([b1, b2].map((agentId) => ({ agentId, lastSeenAt: now, lease: { replica: 'rep_b', until: now + 30_000 } })));
  assert.deepEqual((await rawSqlOn<{ id: string }>({ dataDir: '', database }, 'SELECT id FROM hub_replicas ORDER BY id')).map((r) => r.id), ['rep_a', 'rep_b']);
  // as a third replica sees them
  let clock = now + 1000;
  const cluster = { replicaId: 'rep_c', shared: true, leader: true } as Cluster;
  const presence = new Presence(store, cluster, memoryLogger().log, () => false, () => clock, 30_000);
  t.after(() => presence.close());
  const connected = async () => {
    const out: Record<string, boolean> = {};
    for (const id of ids) out[id] = presence.isConnected(await store.fleet.agent(id));
    return out;
  };
  assert.deepEqual(await connected(), { [a1]: true, [a2]: true, [b1]: true, [b2]: true });
  // A renews (one row); B stops (killed). Past B's lease, its agents are offline; A's are not.
  clock = now + 31_000;
  await store.fleet.renewLease('rep_a', clock + 30_000);
  assert.deepEqual(await connected(), { [a1]: true, [a2]: true, [b1]: false, [b2]: false });
  // the leader's sweep clears B's agents, and only those
  assert.equal(await store.fleet.expireLeases(clock), 2);
  assert.deepEqual((await Promise.all(ids.map((id) => store.fleet.agent(id)))).map((x) => x.replica), ['rep_a', 'rep_a', null, null]);
  // b1 reconnects through A; A's socket to a2 closes; B, come back, releasing b1 leaves A's hold alone
  await store.fleet.writePresence([{ agentId: b1, lastSeenAt: clock, lease: { replica: 'rep_a', until: clock + 30_000 } }]);
  await store.fleet.releaseLeases('rep_a', [a2]);
  await store.fleet.releaseLeases('rep_b', [b1]);
  assert.deepEqual(await connected(), { [a1]: true, [a2]: false, [b1]: true, [b2]: false });
});

// People and their sessions on a real hub: console logins (password, cookie,
// CSRF, Origin, rotation, idle and absolute expiry, logout), failed logins
// slowed and locked out with one audit entry per lockout, failed tokens
// aggregated instead of one entry each, the surface decided by the hub,
// release signatures capped and limited to keys some root names, and a
// database from before people existed upgraded with its tokens working.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { PAYLOAD_TYPES, pae } from '../../shared/dsse.js';
import { encodePublicKey, generateKeyPair, sign } from '../../shared/keys.js';
import { canonicalJson } from '../../shared/release.js';
import { SCHEMA_VERSION, migrateSqlite } from '../../hub/store/migrations.js';
import { dbPath, startHub, type TestHub } from '../helpers/hub.js';
import { backends } from '../helpers/postgres.js';
import { releaseDoc, service } from '../helpers/signing.js';
import { apiClient, simTenant } from '../helpers/sim-agents.js';
import { tempDir, waitFor } from '../helpers/tmp.js';

const PASSWORD = 'correct horse battery staple';

/** A person with a console password, as an admin makes one. */
async function personWithPassword(th: TestHub, name: string, grants: { tenant: string; role: string }[] = []) {
  assert.equal((await th.api('POST', '/v1/users', { name, password: PASSWORD })).status, 201);
  for (const g of grants) assert.equal((await th.api('POST', `/v1/users/${name}/grants`, g)).status, 200);
}

/** The session cookie a login set (name=value), and the CSRF token it answered. */
function cookieOf(headers: Record<string, string | string[] | undefined>): { cookie: string; attrs: string } {
  const raw = [headers['set-cookie']].flat().find((c) => c && /ferry_session=/.test(c));
  assert.ok(raw, `no session cookie in ${JSON.stringify(headers['set-cookie'])}`);
  return { cookie: raw!.split(';')[0]!, attrs: raw! };
}

async function login(th: TestHub, user: string, password = PASSWORD, cookie?: string) {
  const r = await th.api('POST', '/v1/sessions', { user, password }, null, cookie ? { cookie } : {});
  return r;
}

async function auditActions(th: TestHub, log: string) {
  const out: { action: string; details: Record<string, unknown>; surface: string; index: number }[] = [];
  for (let from = 0; ; from += 5000) {
    const r = await th.api('GET', `/v1/audit/${log}/entries?from=${from}&limit=5000`);
    out.push(...r.body.entries);
    if (r.body.entries.length < 5000) return out;
  }
}

for (const backend of await backends()) {
  test(`[${backend}] console sessions: password login, an HttpOnly SameSite=Strict cookie, CSRF and Origin on writes, rotation, logout`, async (t) => {
    const th = await startHub(t, { backend });
    await simTenant(apiClient(() => th.url, th.adminToken), 'bank-a');
    await personWithPassword(th, 'alice', [{ tenant: 'bank-a', role: 'viewer' }]);

    const wrong = await login(th, 'alice', 'not the password');
    assert.equal(wrong.status, 401);
    assert.equal(wrong.body.error.code, 'FERRY_E_LOGIN_FAILED');
    const unknown = await login(th, 'nobody');
    assert.deepEqual(unknown.body.error, wrong.body.error, 'an unknown user and a wrong password answer alike');

    const ok = await login(th, 'alice');
    assert.equal(ok.status, 201, JSON.stringify(ok.body));
    const { cookie, attrs } = cookieOf(ok.headers);
    assert.match(attrs, /HttpOnly/i);
    assert.match(attrs, /SameSite=Strict/i);
    assert.match(attrs, /Path=\//);
    assert.doesNotMatch(attrs, /Secure/i, 'plain HTTP on loopback: no Secure flag (the __Host- cookie is used with TLS)');
    const csrf = ok.body.csrf as string;
    assert.match(csrf, /^[A-Za-z0-9_-]{20,}$/);

    // reads with the cookie; the surface is the console, whatever the client says
    const me = await th.api('GET', '/v1/sessions/current', undefined, null, { cookie, 'x-ferry-surface': 'chat' });
    assert.equal(me.status, 200);
    assert.equal(me.body.user, 'alice');
    assert.equal(me.body.surface, 'console');
    assert.equal(me.body.csrf, csrf);
    assert.deepEqual(me.body.tenants, { 'bank-a': 'viewer' });

    // writes with the cookie need the CSRF token and this hub's Origin
    const body = { name: 'from-console', role: 'viewer', tenants: ['bank-a'] };
    let r = await th.api('POST', '/v1/api-tokens', body, null, { cookie, origin: th.url });
    assert.equal(r.status, 403);
    assert.equal(r.body.error.code, 'FERRY_E_CSRF');
    r = await th.api('POST', '/v1/api-tokens', body, null, { cookie, 'x-ferry-csrf': csrf, origin: 'http://evil.example' });
    assert.equal(r.status, 403);
    assert.match(r.body.error.message, /origin "http:\/\/evil\.example"/);
    r = await th.api('POST', '/v1/api-tokens', body, null, { cookie, 'x-ferry-csrf': csrf });
    assert.equal(r.status, 403, 'no Origin at all is refused too');
    r = await th.api('POST', '/v1/api-tokens', body, null, { cookie, 'x-ferry-csrf': 'x'.repeat(csrf.length), origin: th.url });
    assert.equal(r.status, 403);
    r = await th.api('POST', '/v1/api-tokens', body, null, { cookie, 'x-ferry-csrf': csrf, origin: th.url });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    // the same through inject(), no socket
    const inj = await th.hub.app.inject({ method: 'POST', url: '/v1/api-tokens', headers: { cookie, 'content-type': 'application/json' }, payload: JSON.stringify(body) });
    assert.equal(inj.statusCode, 403);
    assert.equal(JSON.parse(inj.body).error.code, 'FERRY_E_CSRF');

    // a second login rotates: the cookie the browser had is void
    const again = await login(th, 'alice', PASSWORD, cookie);
    const second = cookieOf(again.headers).cookie;
    assert.notEqual(second, cookie);
    assert.equal((await th.api('GET', '/v1/sessions/current', undefined, null, { cookie })).body.error.code, 'FERRY_E_SESSION_EXPIRED');
    assert.equal((await th.api('GET', '/v1/sessions/current', undefined, null, { cookie: second })).status, 200);

    // logout (a write: CSRF and Origin too), then the cookie is worthless
    const csrf2 = again.body.csrf as string;
    assert.equal((await th.api('DELETE', '/v1/sessions/current', undefined, null, { cookie: second })).status, 403);
    const out = await th.api('DELETE', '/v1/sessions/current', undefined, null, { cookie: second, 'x-ferry-csrf': csrf2, origin: th.url });
    assert.equal(out.status, 200);
    assert.match(String([out.headers['set-cookie']].flat()[0]), /ferry_session=;/);
    assert.equal((await th.api('GET', '/v1/sessions/current', undefined, null, { cookie: second })).status, 401);

    // a disabled account's sessions end at once
    const third = cookieOf((await login(th, 'alice')).headers).cookie;
    assert.equal((await th.api('POST', '/v1/users/alice/disable')).status, 200);
    assert.equal((await th.api('GET', '/v1/sessions/current', undefined, null, { cookie: third })).status, 401);
    assert.equal((await login(th, 'alice')).body.error.code, 'FERRY_E_LOGIN_FAILED', 'a disabled account cannot log in');

    // every login and logout is on record, with the console as surface
    const hub = await auditActions(th, '_hub');
    assert.equal(hub.filter((e) => e.action === 'auth.login').length, 3);
    assert.equal(hub.filter((e) => e.action === 'auth.logout').length, 1);
    assert.ok(hub.filter((e) => e.action === 'auth.login').every((e) => e.surface === 'console'));
  });

  test(`[${backend}] sessions end after their idle time and after their absolute lifetime, used or not`, async (t) => {
    const th = await startHub(t, { backend, sessions: { idleMs: 400, maxMs: 1500 } });
    await personWithPassword(th, 'bob');
    const idle = cookieOf((await login(th, 'bob')).headers).cookie;
    await waitFor('the idle session to end', async () => (await th.api('GET', '/v1/sessions/current', undefined, null, { cookie: idle })).status === 401, 5000, 100);
    const busy = cookieOf((await login(th, 'bob')).headers).cookie;
    // used every 100 ms (never idle), it still ends at its absolute expiry
    const r = await waitFor('the busy session to end', async () => {
      const x = await th.api('GET', '/v1/sessions/current', undefined, null, { cookie: busy });
      return x.status === 401 ? x : null;
    }, 6000, 100);
    assert.equal(r.body.error.code, 'FERRY_E_SESSION_EXPIRED');
  });

  test(`[${backend}] guessing passwords is slowed and locked out with one audit entry; 10,000 bad tokens add a handful of entries`, async (t) => {
    const th = await startHub(t, { backend, guard: { slowAfter: 3, lockAfter: 6, windowMs: 3_600_000 } });
    await personWithPassword(th, 'carol');
    for (let i = 0; i < 6; i++) assert.equal((await login(th, 'carol', `guess ${i} guess guess`)).status, 401);
    const locked = await login(th, 'carol');
    assert.equal(locked.status, 429, 'locked: even the right password is refused for now');
    assert.equal(locked.body.error.code, 'FERRY_E_LOGIN_LOCKED');
    const entries = await auditActions(th, '_hub');
    assert.equal(entries.filter((e) => e.action === 'auth.lockout').length, 1, 'one entry for the lockout, not one per attempt');
    // an admin setting a new password unlocks the account
    assert.equal((await th.api('POST', '/v1/users/carol/password', { password: 'another long password' })).status, 200);
    assert.equal((await login(th, 'carol', 'another long password')).status, 201);

    const before = (await auditActions(th, '_hub')).length;
    for (let i = 0; i < 10_000; i++) {
      const r = await th.hub.app.inject({ method: 'GET', url: '/v1/tenants', headers: { authorization: `Bearer ferry_api_guess${i}` } });
      if (r.statusCode !== 401) assert.fail(`bad token ${i}: ${r.statusCode}`);
    }
    await th.hub.guard.flush();
    const after = await auditActions(th, '_hub');
    const added = after.slice(before);
    assert.ok(added.length <= 3, `${added.length} entries for 10,000 bad tokens`);
    const failed = added.filter((e) => e.action === 'auth.failed');
    assert.ok(failed.reduce((n, e) => n + Number(e.details.bearer), 0) >= 10_000, 'every failure is counted');
    // the source address is personal data: erasable, never in the hashed leaf
    const leaves = await th.rawSql<{ data: Buffer }>("SELECT data FROM audit_entries WHERE log = '_hub'");
    assert.ok(leaves.every((l) => !l.data.toString().includes('127.0.0.1')), 'no raw address in the log');
    const idx = failed[0]!.index;
    const pv = (await th.api('GET', `/v1/audit/_hub/entries?from=${idx}&limit=1`)).body.entries[0].personalValues;
    assert.match(pv.addresses, /127\.0\.0\.1/);
  });

  test(`[${backend}] the surface is the hub's to decide; release signatures are capped at 32 and only from keys a root names`, async (t) => {
    const th = await startHub(t, { backend });
    // a person's token is the CLI's; a service account's, automation's
    const ci = await th.api('POST', '/v1/users', { name: 'ci-release', kind: 'service', vendorRole: 'release-manager' });
    assert.equal(ci.status, 201);
    const ciToken = (await th.api('POST', '/v1/api-tokens', { user: 'ci-release', name: 'pipeline', role: 'release-manager' })).body.token as string;
    assert.equal((await th.api('POST', '/v1/tenants', { name: 'bank-x' }, ciToken)).status, 403, 'a release manager cannot make tenants');
    assert.equal((await th.api('POST', '/v1/tenants', { name: 'bank-x' }, th.adminToken, { 'x-ferry-surface': 'chat' })).status, 201);
    const entries = await auditActions(th, 'bank-x');
    assert.equal(entries[0]!.surface, 'cli', 'not what the client claimed');

    // 32 release keys in bank-x's root, one more in bank-y's; a key in no root
    const keys = Array.from({ length: 33 }, () => generateKeyPair());
    const rootKey = generateKeyPair();
    const root = async (tenant: string, release: typeof keys) => {
      if (tenant !== 'bank-x') assert.equal((await th.api('POST', '/v1/tenants', { name: tenant })).status, 201);
      const init = await th.api('POST', `/v1/tenants/${tenant}/trust/init`, { root: [{ public: encodePublicKey(rootKey.publicKey) }], rootThreshold: 1, release: release.map((k) => ({ public: encodePublicKey(k.publicKey) })), releaseThreshold: 1 });
      assert.equal(init.status, 201, JSON.stringify(init.body));
      const sig = Buffer.from(sign(pae(PAYLOAD_TYPES.root, Buffer.from(init.body.envelope.payload, 'base64')), rootKey.secretKey)).toString('base64');
      assert.equal((await th.api('POST', `/v1/tenants/${tenant}/trust/signatures`, { version: 1, keyid: init.body.root.roles.root.keyids[0], sig })).body.active, true);
    };
    await root('bank-x', keys.slice(0, 32));
    await root('bank-y', keys.slice(32));
    const doc = releaseDoc('payments', '1.0.0', {}, { web: service('127.0.0.1:5000/x/web@sha256:' + 'c'.repeat(64)) });
    const created = await th.api('POST', '/v1/releases', { payload: canonicalJson(doc).toString('base64') }, ciToken);
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const payload = Buffer.from(created.body.envelope.payload, 'base64');
    const upload = (k: (typeof keys)[number]) =>
      th.api('POST', '/v1/releases/payments/1.0.0/signatures', { publicKey: encodePublicKey(k.publicKey), sig: Buffer.from(sign(pae(PAYLOAD_TYPES.release, payload), k.secretKey)).toString('base64') }, ciToken);
    const stranger = await upload(generateKeyPair());
    assert.equal(stranger.status, 403);
    assert.equal(stranger.body.error.code, 'FERRY_E_SIG_UNKNOWN_KEY');
    for (const k of keys.slice(0, 32)) assert.equal((await upload(k)).status, 200);
    const again = await upload(keys[0]!);
    assert.equal(again.status, 200, 'a key that already signed may sign again (it replaces its signature)');
    const over = await upload(keys[32]!);
    assert.equal(over.status, 409);
    assert.equal(over.body.error.code, 'FERRY_E_SIG_LIMIT');
    assert.equal((await th.api('GET', '/v1/releases/payments/1.0.0')).body.signers.length, 32);
  });
}

test('a database from before people existed: each old token becomes a vendor-wide token of a person, with its role, and keeps working', async (t) => {
  const dataDir = tempDir(t);
  // A hub database at schema 6, as the previous release left it, with its tokens.
  const db = new Database(join(dataDir, 'ferry-hub.db'));
  migrateSqlite(db, 6);
  const insert = db.prepare('INSERT INTO api_tokens (id, name, role, token_hash, created_at) VALUES (?, ?, ?, ?, ?)');
  const { createHash } = await import('node:crypto');
  const old = { admin: 'ferry_api_old-admin-secret', ops: 'ferry_api_old-ops-secret', ops2: 'ferry_api_old-ops-second', wall: 'ferry_api_old-wall-secret' };
  insert.run('tok_admin', 'admin', 'admin', createHash('sha256').update(old.admin).digest('hex'), 1);
  insert.run('tok_ops', 'Night Ops!', 'operator', createHash('sha256').update(old.ops).digest('hex'), 2);
  insert.run('tok_ops2', 'night ops', 'viewer', createHash('sha256').update(old.ops2).digest('hex'), 3);
  insert.run('tok_wall', 'wall-screen', 'viewer', createHash('sha256').update(old.wall).digest('hex'), 4);
  db.close();
  const th = await startHub(t, { dataDir, adminToken: old.admin, backend: 'sqlite' });
  assert.equal((await th.api('POST', '/v1/tenants', { name: 'bank-a' })).status, 201, 'the old admin token still administers');
  const ops = await th.api('GET', '/v1/whoami', undefined, old.ops);
  assert.equal(ops.status, 200);
  assert.deepEqual({ user: ops.body.user, vendorRole: ops.body.vendorRole, token: ops.body.token.role }, { user: 'night-ops', vendorRole: 'operator', token: 'operator' });
  // two tokens of one name share their person, who has the higher role; each token keeps its own
  assert.equal((await th.api('GET', '/v1/whoami', undefined, old.ops2)).body.token.role, 'viewer');
  assert.equal((await th.api('POST', '/v1/tenants/bank-a/enrollment-tokens', {}, old.ops2)).status, 403);
  assert.equal((await th.api('POST', '/v1/tenants/bank-a/enrollment-tokens', {}, old.ops)).status, 201);
  assert.equal((await th.api('GET', '/v1/agents', undefined, old.wall)).status, 200);
  const users = (await th.api('GET', '/v1/users')).body.users.map((u: { name: string; vendorRole: string }) => `${u.name}:${u.vendorRole}`).sort();
  assert.deepEqual(users, ['admin:admin', 'night-ops:operator', 'wall-screen:viewer']);
  assert.equal(new Database(dbPath(dataDir), { readonly: true }).pragma('user_version', { simple: true }), SCHEMA_VERSION, 'migrated to the current schema');
});

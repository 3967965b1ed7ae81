// The audit log nobody can erase: operations recorded in their own
// transaction, checkpoints witnessed and cosigned by a real agent, and
// `ferry audit verify` catching edits, deletions, reordering, truncation and
// forks made directly in the database (the sqlite file, or PostgreSQL):
// every test runs on both backends.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PAYLOAD_TYPES, addSignature, createEnvelope, pae, signatureFor } from '../../shared/dsse.js';
import { encodePublicKey, keyId, privateKeyFromPem, sign } from '../../shared/keys.js';
import { leafHash } from '../../shared/merkle.js';
import { canonicalJson } from '../../shared/release.js';
import { HUB_KEY_FILE } from '../../hub/hub-key.js';
import { audited, type HubContext } from '../../hub/http/context.js';
import { enrollmentToken } from '../helpers/agents.js';
import { copyStore, dropAuditTriggers, rawSqlOn, startHub, type StoreLoc, type TestHub } from '../helpers/hub.js';
import { backends, freshDatabase, type Backend } from '../helpers/postgres.js';
import { daemon, run } from '../helpers/proc.js';
import { seededKey } from '../helpers/signing.js';
import { tempDir, waitFor } from '../helpers/tmp.js';

/** A tenant with an active trust root (so agents can check the hub's checkpoints). */
async function tenantWithRoot(th: TestHub, tenant: string) {
  const root = seededKey(`audit-root-${tenant}`);
  const rel = seededKey(`audit-rel-${tenant}`);
  assert.equal((await th.api('POST', '/v1/tenants', { name: tenant })).status, 201);
  const init = await th.api('POST', `/v1/tenants/${tenant}/trust/init`, { root: [{ public: encodePublicKey(root.publicKey) }], rootThreshold: 1, release: [{ public: encodePublicKey(rel.publicKey) }], releaseThreshold: 1 });
  const sig = Buffer.from(sign(pae(PAYLOAD_TYPES.root, Buffer.from(init.body.envelope.payload, 'base64')), root.secretKey)).toString('base64');
  assert.equal((await th.api('POST', `/v1/tenants/${tenant}/trust/signatures`, { version: 1, keyid: keyId(root.publicKey), sig })).body.active, true);
}

async function entries(th: TestHub, log: string) {
  return (await th.api('GET', `/v1/audit/${log}/entries`)).body.entries as { index: number; action: string; outcome: string; actor: { kind: string; id: string }; personalValues: Record<string, string>; surface: string; agents: string[] }[];
}

for (const backend of await backends()) {
test(`[${backend}] every operation is recorded in its own transaction; a failed one leaves no entry`, async (t) => {
  const th = await startHub(t, { backend });
  await tenantWithRoot(th, 'bank-a');
  const token = await enrollmentToken(th, 'bank-a');
  const dir = tempDir(t);
  const e = await run('agent', ['enroll', '--hub', th.url, '--token', token, '--state-dir', join(dir, 'a'), '--json']);
  const agentId = JSON.parse(e.stdout).agentId as string;
  await th.api('POST', `/v1/agents/${agentId}/revoke`);
  const before = (await entries(th, 'bank-a')).length;
  assert.equal((await th.api('POST', '/v1/tenants', { name: 'bank-a' })).status, 409);
  assert.equal((await th.api('POST', `/v1/agents/agt_nope/revoke`)).status, 404);
  const list = await entries(th, 'bank-a');
  assert.equal(list.length, before, 'failed operations left no entry');
  assert.deepEqual(
    list.map((x) => x.action),
    ['tenant.create', 'trust.draft', 'trust.activate', 'enrollment-token.create', 'agent.enroll', 'agent.revoke'],
  );
  const revoke = list[5]!;
  assert.equal(revoke.actor.kind, 'operator');
  assert.equal(revoke.personalValues.operator, 'admin');
  assert.deepEqual(revoke.agents, [agentId]);
  assert.equal(list[4]!.actor.id, agentId);
  assert.equal(list[4]!.surface, 'agent');

  // the operator's name is a salted commitment in the hashed bytes, not the name
  const data = (await th.rawSql<{ data: Buffer }>("SELECT data FROM audit_entries WHERE log = 'bank-a' AND idx = 5"))[0]!.data.toString();
  assert.ok(!data.includes('"admin"'), data);
  assert.match(data, /"personal":\{"operator":"[0-9a-f]{64}"\}/);

  // hub-wide log: console logins, and failed token use (aggregated per window, flushed here)
  assert.equal((await th.api('POST', '/v1/users/admin/password', { password: 'correct horse battery' })).status, 200);
  assert.equal((await th.api('POST', '/v1/sessions', { user: 'admin', password: 'correct horse battery' }, null)).status, 201);
  await th.api('GET', '/v1/tenants', undefined, 'ferry_api_wrong');
  await th.hub.guard.flush();
  const hub = (await entries(th, '_hub')).map((x) => `${x.action}:${x.outcome}`);
  assert.ok(hub.includes('auth.login:ok') && hub.includes('auth.failed:refused'), hub.join(','));

  // audited(): an operation that fails after its store write leaves neither the write nor an entry;
  // an entry that cannot be written (an action verify would refuse) undoes the operation
  const ctx = { store: th.hub.store, audit: th.hub.audit, now: Date.now } as unknown as HubContext;
  const size = await th.hub.audit.size('bank-a');
  await assert.rejects(
    audited(
      ctx,
      null,
      async () => {
        await th.hub.store.fleet.createTenant('bank-z', Date.now());
        throw new Error('disk full');
      },
      () => ({ log: 'bank-z', action: 'tenant.create' }),
    ),
    /disk full/,
  );
  await assert.rejects(
    audited(ctx, null, () => th.hub.store.fleet.createTenant('bank-y', Date.now()), () => ({ log: 'bank-y', action: 'Not An Action' })),
    /audit entry/,
  );
  assert.equal(await th.hub.audit.size('bank-z'), 0);
  assert.equal(await th.hub.audit.size('bank-y'), 0);
  assert.equal(await th.hub.store.fleet.findTenant('bank-z'), undefined);
  assert.equal(await th.hub.store.fleet.findTenant('bank-y'), undefined);
  assert.equal(await th.hub.audit.size('bank-a'), size);

  // the log tables refuse UPDATE and DELETE
  await assert.rejects(th.rawSql("UPDATE audit_entries SET at = 0 WHERE log = 'bank-a'"), /append-only/);
  await assert.rejects(th.rawSql("DELETE FROM audit_entries WHERE log = 'bank-a'"), /append-only/);
  await assert.rejects(th.rawSql("UPDATE audit_personal SET value = 'someone else' WHERE log = 'bank-a' AND idx = 5"), /can only be erased/);
  // personal data can be erased without touching the log
  await th.rawSql("UPDATE audit_personal SET value = NULL, erased_at = 1 WHERE log = 'bank-a' AND idx = 5");
  assert.equal((await entries(th, 'bank-a'))[5]!.personalValues.operator, null);
});
}

interface Witnessed {
  th: TestHub;
  loc: StoreLoc;
  dataDir: string;
  agentState: string;
  agentId: string;
  size: number;
  /** The port agents know the hub by; later hubs on copies reuse it. */
  port: number;
}

/** A hub with a tenant log witnessed and cosigned by a running agent; the hub is closed afterwards. */
async function witnessedLog(t: TestContext, backend: Backend): Promise<Witnessed> {
  const dataDir = join(tempDir(t), 'hub');
  const database = backend === 'postgres' ? await freshDatabase(t) : undefined;
  const th = await startHub(t, { dataDir, database, checkpointMs: 3_600_000 });
  await tenantWithRoot(th, 'bank-a');
  const agentState = join(tempDir(t), 'agent');
  const e = await run('agent', ['enroll', '--hub', th.url, '--token', await enrollmentToken(th, 'bank-a'), '--state-dir', agentState, '--json']);
  const agentId = JSON.parse(e.stdout).agentId as string;
  for (let i = 0; i < 3; i++) await enrollmentToken(th, 'bank-a');
  const agent = daemon(t, 'agent', ['run', '--state-dir', agentState]);
  await waitFor('connected', async () => (await th.api('GET', `/v1/agents/${agentId}`)).body.status === 'connected');
  const cp = await th.api('POST', '/v1/audit/bank-a/checkpoint');
  assert.equal(cp.status, 200);
  await waitFor('agent cosigned', async () => (await th.hub.audit.lastWitnessed('bank-a', agentId))?.size === cp.body.size, 10_000);
  await agent.stop();
  await th.close();
  return { th, loc: { dataDir, database }, dataDir, agentState, agentId, size: cp.body.size, port: th.hub.port };
}

type Sql = <T = Record<string, unknown>>(sql: string, params?: unknown[]) => Promise<T[]>;

/** Copies the hub's state, tampers with the copy (triggers off, as an intruder would), serves it, and runs `ferry audit verify`. */
async function verifyAfter(t: TestContext, w: Witnessed, tamper: (sql: Sql) => Promise<void>) {
  const copy = await copyStore(t, w.loc);
  await dropAuditTriggers(copy);
  await tamper((sql, params) => rawSqlOn(copy, sql, params));
  const th = await startHub(t, { dataDir: copy.dataDir, database: copy.database, adminToken: w.th.adminToken, port: w.port });
  try {
    return await run('ferry', ['audit', 'verify', '--tenant', 'bank-a'], { env: { FERRY_HUB: th.url, FERRY_TOKEN: w.th.adminToken, XDG_CONFIG_HOME: tempDir(t) } });
  } finally {
    await th.close();
  }
}

for (const backend of await backends()) {
test(`[${backend}] verify passes on an intact log witnessed by an agent, and names the first bad entry after tampering`, async (t) => {
  const w = await witnessedLog(t, backend);
  assert.ok(w.size >= 8, `size ${w.size}`);
  const clean = await verifyAfter(t, w, async () => undefined);
  assert.equal(clean.code, 0, clean.stdout + clean.stderr);
  assert.match(clean.stdout, new RegExp(`ok\\s+bank-a: ${w.size} entries, 1 checkpoints \\(1 witnessed by agents\\)`));

  // edit a row's bytes
  let r = await verifyAfter(t, w, async (sql) => {
    const [row] = await sql<{ data: Buffer }>("SELECT data FROM audit_entries WHERE log = 'bank-a' AND idx = 4");
    await sql("UPDATE audit_entries SET data = ? WHERE log = 'bank-a' AND idx = 4", [Buffer.from(row!.data.toString().replace('"ok"', '"failed"'))]);
  });
  assert.equal(r.code, 5, r.stdout + r.stderr);
  assert.match(r.stdout, /edited at entry 4/);
  assert.match(r.stderr, /FERRY_E_AUDIT_INCONSISTENT.*first bad entry 4/);

  // edit and recompute the leaf hash too: only the witnessed checkpoint gives it away
  r = await verifyAfter(t, w, async (sql) => {
    const [row] = await sql<{ data: Buffer }>("SELECT data FROM audit_entries WHERE log = 'bank-a' AND idx = 6");
    const forged = Buffer.from(row!.data.toString().replace(/"at":\d+/, '"at":1'));
    await sql("UPDATE audit_entries SET data = ?, leaf_hash = ? WHERE log = 'bank-a' AND idx = 6", [forged, leafHash(forged)]);
  });
  assert.equal(r.code, 5);
  assert.match(r.stdout, /do not reproduce the checkpoint at size \d+ that agents witnessed/);
  // no check singled out entry 6, so none is named: what is known is the range the checkpoint no longer vouches for
  assert.match(r.stderr, new RegExp(`entries 0\\.\\.${w.size - 1} are no longer vouched for by the checkpoint of size ${w.size} that agents witnessed`));
  assert.doesNotMatch(r.stdout + r.stderr, /first bad entry|at entry/);

  // delete a row
  r = await verifyAfter(t, w, async (sql) => {
    await sql("DELETE FROM audit_entries WHERE log = 'bank-a' AND idx = 2");
  });
  assert.equal(r.code, 5);
  assert.match(r.stdout, /missing at entry 2: entry 2 is missing/);

  // reorder two rows
  r = await verifyAfter(t, w, async (sql) => {
    const [a] = await sql<{ data: Buffer; leaf_hash: Buffer }>("SELECT data, leaf_hash FROM audit_entries WHERE log = 'bank-a' AND idx = 3");
    const [b] = await sql<{ data: Buffer; leaf_hash: Buffer }>("SELECT data, leaf_hash FROM audit_entries WHERE log = 'bank-a' AND idx = 5");
    await sql("UPDATE audit_entries SET data = ?, leaf_hash = ? WHERE log = 'bank-a' AND idx = 3", [b!.data, b!.leaf_hash]);
    await sql("UPDATE audit_entries SET data = ?, leaf_hash = ? WHERE log = 'bank-a' AND idx = 5", [a!.data, a!.leaf_hash]);
  });
  assert.equal(r.code, 5);
  assert.match(r.stdout, /moved at entry 3/);

  // truncate the tail
  r = await verifyAfter(t, w, async (sql) => {
    await sql("DELETE FROM audit_entries WHERE log = 'bank-a' AND idx >= ?", [w.size - 2]);
  });
  assert.equal(r.code, 5);
  assert.match(r.stdout, new RegExp(`truncated at entry ${w.size - 2}`));
});


test(`[${backend}] a forged checkpoint is detected by verify and refused by the witnessing agent`, async (t) => {
  const w = await witnessedLog(t, backend);
  // the hub's own key signs a second root for the same size (a compromised hub forking the log)
  const hubKey = privateKeyFromPem(readFileSync(join(w.dataDir, HUB_KEY_FILE), 'utf8'));
  const forge = (size: number, root: string) => {
    let env = createEnvelope(PAYLOAD_TYPES.checkpoint, canonicalJson({ _type: 'checkpoint', log: 'bank-a', size, root, at: Date.now() }));
    env = addSignature(env, signatureFor(env, hubKey));
    return env;
  };
  const r = await verifyAfter(t, w, async (sql) => {
    await sql('INSERT INTO audit_checkpoints (log, size, root, at, envelope) VALUES (?, ?, ?, ?, ?)', ['bank-a', w.size, Buffer.alloc(32, 1), Date.now(), JSON.stringify(forge(w.size, '01'.repeat(32)))]);
  });
  assert.equal(r.code, 5);
  assert.match(r.stdout, /forked/);

  // the agent, which witnessed the real log, is shown a rewritten one: it refuses and never cosigns
  const copy = await copyStore(t, w.loc);
  await dropAuditTriggers(copy);
  const [row] = await rawSqlOn<{ data: Buffer }>(copy, "SELECT data FROM audit_entries WHERE log = 'bank-a' AND idx = 1");
  const forged = Buffer.from(row!.data.toString().replace(/"at":\d+/, '"at":2'));
  await rawSqlOn(copy, "UPDATE audit_entries SET data = ?, leaf_hash = ? WHERE log = 'bank-a' AND idx = 1", [forged, leafHash(forged)]);
  const th = await startHub(t, { dataDir: copy.dataDir, database: copy.database, adminToken: w.th.adminToken, checkpointMs: 3_600_000, port: w.port });
  await enrollmentToken(th, 'bank-a'); // grow the log so a new checkpoint is due
  const agent = daemon(t, 'agent', ['run', '--state-dir', w.agentState]);
  await waitFor('connected', async () => (await th.api('GET', `/v1/agents/${w.agentId}`)).body.status === 'connected');
  await th.api('POST', '/v1/audit/bank-a/checkpoint');
  await agent.waitFor(/ALARM: the hub presented an audit log inconsistent/);
  // the agent answers the checkpoint with its refusal instead of a cosignature: once the hub has that, no cosignature can follow
  await waitFor('the hub to get the refusal', () => th.logs.some((l) => l.msg === 'agent reported an error' && l.code === 'FERRY_E_AUDIT_INCONSISTENT'));
  assert.equal((await th.hub.audit.lastWitnessed('bank-a', w.agentId))?.size, w.size, 'the agent did not cosign the rewritten log');
});

test(`[${backend}] witnessed checkpoints survive a hub restart; the agent keeps extending them and shows its entries`, async (t) => {
  const w = await witnessedLog(t, backend);
  const th = await startHub(t, { dataDir: w.dataDir, database: w.loc.database, adminToken: w.th.adminToken, checkpointMs: 3_600_000, port: w.port });
  assert.equal((await th.hub.audit.lastWitnessed('bank-a', w.agentId))?.size, w.size);
  const agent = daemon(t, 'agent', ['run', '--state-dir', w.agentState]);
  await waitFor('connected', async () => (await th.api('GET', `/v1/agents/${w.agentId}`)).body.status === 'connected');
  await enrollmentToken(th, 'bank-a');
  const cp = await th.api('POST', '/v1/audit/bank-a/checkpoint');
  assert.ok(cp.body.size > w.size);
  await waitFor('agent cosigned the extension', async () => (await th.hub.audit.lastWitnessed('bank-a', w.agentId))?.size === cp.body.size, 10_000);
  await agent.stop();
  const v = await run('ferry', ['audit', 'verify', '--json'], { env: { FERRY_HUB: th.url, FERRY_TOKEN: th.adminToken, XDG_CONFIG_HOME: tempDir(t) } });
  assert.equal(v.code, 0, v.stderr);
  const bank = JSON.parse(v.stdout).reports.find((x: { log: string }) => x.log === 'bank-a');
  assert.equal(bank.witnessed, 2);
  assert.equal(bank.verifiedSize, cp.body.size);

  const a = await run('agent', ['audit', '--state-dir', w.agentState, '--json']);
  assert.equal(a.code, 0, a.stderr);
  const held = JSON.parse(a.stdout);
  assert.deepEqual(held.checkpoints.map((c: { size: number }) => c.size), [w.size, cp.body.size]);
  assert.ok(held.entries.some((e: { action: string; verified: boolean }) => e.action === 'agent.enroll' && e.verified));
  writeFileSync(join(w.agentState, 'audit-entries.jsonl'), readFileSync(join(w.agentState, 'audit-entries.jsonl'), 'utf8').replace(/"index":(\d+)/, (_m, n) => `"index":${Number(n) + 1}`));
  const tampered = await run('agent', ['audit', '--state-dir', w.agentState]);
  assert.equal(tampered.code, 1);
  assert.match(tampered.stdout, /NOT VERIFIED/);
});
}

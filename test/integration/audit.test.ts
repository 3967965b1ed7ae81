// The audit log nobody can erase: operations recorded in their own
// transaction, checkpoints witnessed and cosigned by a real agent, and
// `ferry audit verify` catching edits, deletions, reordering, truncation and
// forks made directly in the sqlite file.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { PAYLOAD_TYPES, addSignature, createEnvelope, pae, signatureFor } from '../../shared/dsse.js';
import { encodePublicKey, keyId, privateKeyFromPem, sign } from '../../shared/keys.js';
import { leafHash } from '../../shared/merkle.js';
import { canonicalJson } from '../../shared/release.js';
import { dbPath } from '../../hub/db.js';
import { HUB_KEY_FILE } from '../../hub/hub-key.js';
import { enrollmentToken } from '../helpers/agents.js';
import { startHub, type TestHub } from '../helpers/hub.js';
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

test('every operation is recorded in its own transaction; a failed one leaves no entry', async (t) => {
  const th = await startHub(t);
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
  const raw = new Database(dbPath(th.dataDir), { readonly: true });
  const data = (raw.prepare("SELECT data FROM audit_entries WHERE log = 'bank-a' AND idx = 5").get() as { data: Buffer }).data.toString();
  raw.close();
  assert.ok(!data.includes('"admin"'), data);
  assert.match(data, /"personal":\{"operator":"[0-9a-f]{64}"\}/);

  // hub-wide log: logins and failed token use
  await th.api('GET', '/v1/whoami');
  await th.api('GET', '/v1/tenants', undefined, 'ferry_api_wrong');
  const hub = (await entries(th, '_hub')).map((x) => `${x.action}:${x.outcome}`);
  assert.ok(hub.includes('auth.login:ok') && hub.includes('auth.failed:refused'), hub.join(','));

  // an operation whose transaction fails after its entry was appended leaves neither
  const size = th.hub.audit.size('bank-a');
  assert.throws(() =>
    th.hub.store.db.transaction(() => {
      th.hub.store.createTenant('bank-z', Date.now());
      th.hub.audit.append({ log: 'bank-z', actor: { kind: 'hub', id: null }, surface: 'hub', action: 'tenant.create' }, Date.now());
      throw new Error('disk full');
    })(),
  );
  assert.equal(th.hub.audit.size('bank-z'), 0);
  assert.equal(th.hub.store.findTenant('bank-z'), undefined);
  assert.equal(th.hub.audit.size('bank-a'), size);

  // the log tables refuse UPDATE and DELETE
  const rw = new Database(dbPath(th.dataDir));
  assert.throws(() => rw.prepare("UPDATE audit_entries SET at = 0 WHERE log = 'bank-a'").run(), /append-only/);
  assert.throws(() => rw.prepare("DELETE FROM audit_entries WHERE log = 'bank-a'").run(), /append-only/);
  // personal data can be erased without touching the log
  rw.prepare("UPDATE audit_personal SET value = NULL, erased_at = 1 WHERE log = 'bank-a' AND idx = 5").run();
  rw.close();
  assert.equal((await entries(th, 'bank-a'))[5]!.personalValues.operator, null);
});

interface Witnessed {
  th: TestHub;
  dataDir: string;
  agentState: string;
  agentId: string;
  size: number;
  /** The port agents know the hub by; later hubs on copies reuse it. */
  port: number;
}

/** A hub with a tenant log witnessed and cosigned by a running agent; the hub is closed afterwards. */
async function witnessedLog(t: TestContext): Promise<Witnessed> {
  const dataDir = join(tempDir(t), 'hub');
  const th = await startHub(t, { dataDir, checkpointMs: 3_600_000 });
  await tenantWithRoot(th, 'bank-a');
  const agentState = join(tempDir(t), 'agent');
  const e = await run('agent', ['enroll', '--hub', th.url, '--token', await enrollmentToken(th, 'bank-a'), '--state-dir', agentState, '--json']);
  const agentId = JSON.parse(e.stdout).agentId as string;
  for (let i = 0; i < 3; i++) await enrollmentToken(th, 'bank-a');
  const agent = daemon(t, 'agent', ['run', '--state-dir', agentState]);
  await waitFor('connected', async () => (await th.api('GET', `/v1/agents/${agentId}`)).body.status === 'connected');
  const cp = await th.api('POST', '/v1/audit/bank-a/checkpoint');
  assert.equal(cp.status, 200);
  await waitFor('agent cosigned', () => th.hub.audit.lastWitnessed('bank-a', agentId)?.size === cp.body.size, 10_000);
  await agent.stop();
  await th.close();
  return { th, dataDir, agentState, agentId, size: cp.body.size, port: th.hub.port };
}

/** Copies the data dir, tampers with the copy, serves it, and runs `ferry audit verify`. */
async function verifyAfter(t: TestContext, w: Witnessed, tamper: (db: Database.Database, file: string) => void) {
  const copy = join(tempDir(t), 'hub');
  cpSync(w.dataDir, copy, { recursive: true });
  const db = new Database(dbPath(copy));
  db.exec('DROP TRIGGER audit_entries_no_update; DROP TRIGGER audit_entries_no_delete; DROP TRIGGER audit_checkpoints_no_update;');
  tamper(db, dbPath(copy));
  db.close();
  const th = await startHub(t, { dataDir: copy, adminToken: w.th.adminToken, port: w.port });
  try {
    return await run('ferry', ['audit', 'verify', '--tenant', 'bank-a'], { env: { FERRY_HUB: th.url, FERRY_TOKEN: w.th.adminToken, XDG_CONFIG_HOME: tempDir(t) } });
  } finally {
    await th.close();
  }
}

test('verify passes on an intact log witnessed by an agent, and names the first bad entry after tampering', async (t) => {
  const w = await witnessedLog(t);
  assert.ok(w.size >= 8, `size ${w.size}`);
  const clean = await verifyAfter(t, w, () => undefined);
  assert.equal(clean.code, 0, clean.stdout + clean.stderr);
  assert.match(clean.stdout, new RegExp(`ok\\s+bank-a: ${w.size} entries, 1 checkpoints \\(1 witnessed by agents\\)`));

  // edit a row's bytes
  let r = await verifyAfter(t, w, (db) => {
    const row = db.prepare("SELECT data FROM audit_entries WHERE log = 'bank-a' AND idx = 4").get() as { data: Buffer };
    db.prepare("UPDATE audit_entries SET data = ? WHERE log = 'bank-a' AND idx = 4").run(Buffer.from(row.data.toString().replace('"ok"', '"failed"')));
  });
  assert.equal(r.code, 5, r.stdout + r.stderr);
  assert.match(r.stdout, /edited at entry 4/);
  assert.match(r.stderr, /FERRY_E_AUDIT_INCONSISTENT.*first bad entry 4/);

  // edit and recompute the leaf hash too: only the witnessed checkpoint gives it away
  r = await verifyAfter(t, w, (db) => {
    const row = db.prepare("SELECT data FROM audit_entries WHERE log = 'bank-a' AND idx = 6").get() as { data: Buffer };
    const forged = Buffer.from(row.data.toString().replace(/"at":\d+/, '"at":1'));
    db.prepare("UPDATE audit_entries SET data = ?, leaf_hash = ? WHERE log = 'bank-a' AND idx = 6").run(forged, leafHash(forged));
  });
  assert.equal(r.code, 5);
  assert.match(r.stdout, /do not reproduce the checkpoint at size \d+ that agents witnessed/);
  // no check singled out entry 6, so none is named: what is known is the range the checkpoint no longer vouches for
  assert.match(r.stderr, new RegExp(`entries 0\\.\\.${w.size - 1} are no longer vouched for by the checkpoint of size ${w.size} that agents witnessed`));
  assert.doesNotMatch(r.stdout + r.stderr, /first bad entry|at entry/);

  // delete a row, with the sqlite3 tool
  r = await verifyAfter(t, w, (_db, file) => {
    _db.close();
    execFileSync('sqlite3', [file, "DROP TRIGGER IF EXISTS audit_entries_no_delete; DELETE FROM audit_entries WHERE log = 'bank-a' AND idx = 2;"]);
  });
  assert.equal(r.code, 5);
  assert.match(r.stdout, /missing at entry 2: entry 2 is missing/);

  // reorder two rows
  r = await verifyAfter(t, w, (db) => {
    const a = db.prepare("SELECT data, leaf_hash FROM audit_entries WHERE log = 'bank-a' AND idx = 3").get() as { data: Buffer; leaf_hash: Buffer };
    const b = db.prepare("SELECT data, leaf_hash FROM audit_entries WHERE log = 'bank-a' AND idx = 5").get() as { data: Buffer; leaf_hash: Buffer };
    db.prepare("UPDATE audit_entries SET data = ?, leaf_hash = ? WHERE log = 'bank-a' AND idx = 3").run(b.data, b.leaf_hash);
    db.prepare("UPDATE audit_entries SET data = ?, leaf_hash = ? WHERE log = 'bank-a' AND idx = 5").run(a.data, a.leaf_hash);
  });
  assert.equal(r.code, 5);
  assert.match(r.stdout, /moved at entry 3/);

  // truncate the tail
  r = await verifyAfter(t, w, (db) => {
    db.prepare("DELETE FROM audit_entries WHERE log = 'bank-a' AND idx >= ?").run(w.size - 2);
  });
  assert.equal(r.code, 5);
  assert.match(r.stdout, new RegExp(`truncated at entry ${w.size - 2}`));
});

test('a forged checkpoint is detected by verify and refused by the witnessing agent', async (t) => {
  const w = await witnessedLog(t);
  // the hub's own key signs a second root for the same size (a compromised hub forking the log)
  const hubKey = privateKeyFromPem(readFileSync(join(w.dataDir, HUB_KEY_FILE), 'utf8'));
  const forge = (size: number, root: string) => {
    let env = createEnvelope(PAYLOAD_TYPES.checkpoint, canonicalJson({ _type: 'checkpoint', log: 'bank-a', size, root, at: Date.now() }));
    env = addSignature(env, signatureFor(env, hubKey));
    return env;
  };
  const r = await verifyAfter(t, w, (db) => {
    db.prepare('INSERT INTO audit_checkpoints (log, size, root, at, envelope) VALUES (?, ?, ?, ?, ?)').run('bank-a', w.size, Buffer.alloc(32, 1), Date.now(), JSON.stringify(forge(w.size, '01'.repeat(32))));
  });
  assert.equal(r.code, 5);
  assert.match(r.stdout, /forked/);

  // the agent, which witnessed the real log, is shown a rewritten one: it refuses and never cosigns
  const copy = join(tempDir(t), 'hub');
  cpSync(w.dataDir, copy, { recursive: true });
  const db = new Database(dbPath(copy));
  db.exec('DROP TRIGGER audit_entries_no_update;');
  const row = db.prepare("SELECT data FROM audit_entries WHERE log = 'bank-a' AND idx = 1").get() as { data: Buffer };
  const forged = Buffer.from(row.data.toString().replace(/"at":\d+/, '"at":2'));
  db.prepare("UPDATE audit_entries SET data = ?, leaf_hash = ? WHERE log = 'bank-a' AND idx = 1").run(forged, leafHash(forged));
  db.close();
  const th = await startHub(t, { dataDir: copy, adminToken: w.th.adminToken, checkpointMs: 3_600_000, port: w.port });
  await enrollmentToken(th, 'bank-a'); // grow the log so a new checkpoint is due
  const agent = daemon(t, 'agent', ['run', '--state-dir', w.agentState]);
  await waitFor('connected', async () => (await th.api('GET', `/v1/agents/${w.agentId}`)).body.status === 'connected');
  await th.api('POST', '/v1/audit/bank-a/checkpoint');
  await agent.waitFor(/ALARM: the hub presented an audit log inconsistent/);
  // the agent answers the checkpoint with its refusal instead of a cosignature: once the hub has that, no cosignature can follow
  await waitFor('the hub to get the refusal', () => th.logs.some((l) => l.msg === 'agent reported an error' && l.code === 'FERRY_E_AUDIT_INCONSISTENT'));
  assert.equal(th.hub.audit.lastWitnessed('bank-a', w.agentId)?.size, w.size, 'the agent did not cosign the rewritten log');
});

test('witnessed checkpoints survive a hub restart; the agent keeps extending them and shows its entries', async (t) => {
  const w = await witnessedLog(t);
  const th = await startHub(t, { dataDir: w.dataDir, adminToken: w.th.adminToken, checkpointMs: 3_600_000, port: w.port });
  assert.equal(th.hub.audit.lastWitnessed('bank-a', w.agentId)?.size, w.size);
  const agent = daemon(t, 'agent', ['run', '--state-dir', w.agentState]);
  await waitFor('connected', async () => (await th.api('GET', `/v1/agents/${w.agentId}`)).body.status === 'connected');
  await enrollmentToken(th, 'bank-a');
  const cp = await th.api('POST', '/v1/audit/bank-a/checkpoint');
  assert.ok(cp.body.size > w.size);
  await waitFor('agent cosigned the extension', () => th.hub.audit.lastWitnessed('bank-a', w.agentId)?.size === cp.body.size, 10_000);
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

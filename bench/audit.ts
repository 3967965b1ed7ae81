// Audit-log figures on a real sqlite file, opened as the hub opens it
// (hub/store/sqlite.ts: WAL, synchronous=FULL), in a temp dir that is removed at exit:
//   1. appending: the operation's own write (store.fleet.createEnrollmentToken) plus
//      its audit entry (AuditLog.append, with the operator as a salted
//      personal commitment, as hub/http/context.ts `audited` does) in one transaction,
//      against the same write alone and a 1-row INSERT (the commit floor);
//      one operation per transaction (sampled) and BATCH per transaction
//      (which fills the log to N);
//   2. at N entries: AuditLog.tree() cold, inclusion and consistency proofs
//      (generation as the proof route does it, and verification), and
//      AuditLog.checkpoint() (tree catch-up, Ed25519 signing, autocommit INSERT);
//   3. verifyLog (what `ferry audit verify` runs) over the stored entries and
//      checkpoints, against a plain sha256 of the same entry bytes.
//   node dist/bench/audit.js [entries=1000000] [batch=10000] [pertx=2000] [samples=1000] [dir=os.tmpdir()]
// About 4 minutes at the defaults on 2 vCPUs; the batched fill stops at 5
// minutes whatever N is (and says so), and the temp dir goes on exit or ^C.
//
// Samples that are compared are interleaved (one of each per round, order
// rotating) so drift on a noisy host hits each alike; ratios are within one run.

import { hash, createHash, randomBytes, randomInt } from 'node:crypto';
import { mkdtempSync, rmSync, statfsSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { AuditLog, type AuditInput } from '../hub/audit/log.js';
import { loadOrCreateHubKey } from '../hub/hub-key.js';
import { SqliteDb } from '../hub/store/sqlite.js';
import { Store } from '../hub/store/store.js';
import { commitment, parseEntry, type AuditEntry, type Checkpoint } from '../shared/audit.js';
import { verifyLog, type ExportedCheckpoint, type ExportedEntry } from '../shared/audit-verify.js';
import { PAYLOAD_TYPES, createEnvelope, pae, payloadBytes, signatureFor } from '../shared/dsse.js';
import { encodePublicKey, generateKeyPair, keyId, sign } from '../shared/keys.js';
import { silentLogger } from '../shared/logger.js';
import { MerkleTree, leafHash, verifyConsistency, verifyInclusion } from '../shared/merkle.js';
import { canonicalJson } from '../shared/release.js';
import { fmt, quantile, table } from './lib/report.js';

const arg = (i: number, dflt: number, min: number, max: number): number => {
  const v = Number(process.argv[i] ?? dflt);
  return Number.isSafeInteger(v) ? Math.min(max, Math.max(min, v)) : dflt;
};
const N = arg(2, 1_000_000, 1_000, 20_000_000);
const BATCH = arg(3, 10_000, 10, 100_000);
const PER_TX = Math.min(arg(4, 2_000, 10, 100_000), Math.floor(N / 2));
const SAMPLES = arg(5, 1_000, 10, 100_000);
const BASE = process.argv[6] ?? tmpdir();
/** A witness checkpoints now and then; these give verify several roots to match. */
const CHECKPOINT_EVERY = Math.max(BATCH, Math.ceil(N / 10 / BATCH) * BATCH);
/** Checkpoints timed at N, each after one more audited operation. */
const CHECKPOINT_ROUNDS = 50;
/** The fill stops early (and says so) if the disk is far slower than expected. */
const FILL_DEADLINE_MS = 5 * 60_000;
const TENANT = 'bank-a';
const TTL_MS = 3600_000;

// ---- helpers -------------------------------------------------------------------

/** [result, wall ms, process CPU ms]. */
async function time<T>(fn: () => T | Promise<T>): Promise<[T, number, number]> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const out = await fn();
  const c = process.cpuUsage(c0);
  return [out, performance.now() - t0, (c.user + c.system) / 1000];
}
async function timeOnce(fn: () => unknown): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}
const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
const p50 = (xs: number[]): number => quantile(xs, 0.5);
const p99 = (xs: number[]): number => quantile(xs, 0.99);
const us = (x: number): string => `${fmt(x * 1000, 1)} µs`;
const ms = (x: number): string => `${fmt(x, 2)} ms`;
const both = (xs: number[], f: (x: number) => string): string => `${f(p50(xs))} / ${f(p99(xs))}`;
const perSec = (count: number, msTotal: number): number => (count * 1000) / msTotal;
const rate = (x: number): string => `${fmt(x, 0)} /s`;
const mib = (b: number): string => `${fmt(b / 2 ** 20, 0)} MiB`;
const progress = (s: string): void => void process.stderr.write(`  … ${s}\n`);

const FS_TYPES: Record<number, string> = { 0xef53: 'ext2/3/4', 0x01021994: 'tmpfs', 0x58465342: 'xfs', 0x9123683e: 'btrfs', 0x794c7630: 'overlayfs', 0x6969: 'nfs', 0x2fc12fc1: 'zfs', 0x65735546: 'fuse' };

// ---- setup -----------------------------------------------------------------------

const tmp = mkdtempSync(join(BASE, 'ferry-bench-audit-'));
let opened: SqliteDb | undefined;
let cleaned = false;
const cleanup = (): void => {
  if (cleaned) return;
  cleaned = true;
  try {
    if (opened?.isOpen) opened.rawForTests().close();
  } catch {
    /* already closed */
  }
  rmSync(tmp, { recursive: true, force: true });
};
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => process.exit(130));

const dataDir = join(tmp, 'hub');
const sdb = (opened = SqliteDb.open(dataDir, { create: true }));
const db = sdb.rawForTests();
const hubKey = loadOrCreateHubKey(dataDir);
const store = new Store(sdb);
const audit = new AuditLog(store, hubKey, silentLogger());
const operator = await store.tx(() => store.people.createUser({ name: 'alice', kind: 'person', vendorRole: 'admin', passwordHash: null }, null, Date.now()));
await store.tx(() => store.fleet.createTenant(TENANT, Date.now()));
const pragmas = `journal_mode=${db.pragma('journal_mode', { simple: true })}, synchronous=${db.pragma('synchronous', { simple: true })} (2 = FULL), page_size=${db.pragma('page_size', { simple: true })}, cache_size=${db.pragma('cache_size', { simple: true })}`;

// The commit floor: a 1-row INSERT of about an enrollment row's size into a scratch table.
db.exec('CREATE TABLE bench_floor (id INTEGER PRIMARY KEY, v BLOB NOT NULL)');
const floorRow = Buffer.alloc(160, 7);
const floorStmt = db.prepare('INSERT INTO bench_floor (v) VALUES (?)');

/** The operation's own write. */
const operation = (now: number) => store.fleet.createEnrollmentToken(TENANT, TTL_MS, operator.id, now);
/** Its entry, as `audited` builds it for POST /v1/tenants/:tenant/enrollment-tokens from the CLI. */
const entryFor = (t: Awaited<ReturnType<typeof operation>>): AuditInput => ({
  log: t.tenant,
  action: 'enrollment-token.create',
  target: { type: 'enrollment-token', id: t.id },
  details: { expiresAt: t.expiresAt },
  actor: { kind: 'operator', id: operator.id },
  surface: 'cli',
  personal: { operator: 'alice' },
});
const txAudited = (k: number) =>
  store.tx(async () => {
    for (let i = 0; i < k; i++) {
      const now = Date.now();
      await audit.append(entryFor(await operation(now)), now);
    }
  });
const txPlain = (k: number) =>
  store.tx(async () => {
    for (let i = 0; i < k; i++) await operation(Date.now());
  });
/** The floor: straight on the connection, outside the store's queue (nothing else writes meanwhile). */
const txFloor = db.transaction(() => floorStmt.run(floorRow));

// A witnessing agent: cosigns each checkpoint, so verify checks cosignatures too.
const agentKey = generateKeyPair();
const agentPub = encodePublicKey(agentKey.publicKey);
const AGENT_ID = 'agt_benchwitness';
async function checkpointAndCosign(): Promise<void> {
  const cp = await audit.checkpoint(TENANT, Date.now());
  if (!cp) return;
  const sig = Buffer.from(sign(pae(PAYLOAD_TYPES.checkpoint, payloadBytes(cp.envelope)), agentKey.secretKey)).toString('base64');
  if (!(await audit.cosign(TENANT, cp.size, cp.root.toString('hex'), AGENT_ID, agentPub, sig, Date.now()))) throw new Error('cosignature refused');
}

const fsType = FS_TYPES[Number(statfsSync(tmp).type)] ?? `0x${Number(statfsSync(tmp).type).toString(16)}`;
const started = performance.now();
console.log(`ferry bench:audit — node ${process.version}, ${availableParallelism()} cpus (${cpus()[0]?.model.trim() ?? '?'}), sqlite file in ${tmp} (${fsType})`);
console.log(`${pragmas}; N = ${N.toLocaleString('en-US')} entries in log ${TENANT}, batches of ${BATCH.toLocaleString('en-US')}, ${PER_TX.toLocaleString('en-US')} single-operation transactions of each kind, ${SAMPLES} proof samples\n`);

// ---- 1. appending --------------------------------------------------------------------

// Batched fill to N - PER_TX, audited and plain batches alternating (order
// rotating), so both see the same table sizes and the WAL checkpoints alike.
const fillTarget = N - PER_TX;
const batchAudited: number[] = [];
const batchPlain: number[] = [];
let audited = 0;
let plain = 0;
let nextCheckpoint = CHECKPOINT_EVERY;
let stoppedEarly = false;
const fillStart = performance.now();
let nextReport = fillTarget / 10;
while (audited < fillTarget) {
  if (performance.now() - fillStart > FILL_DEADLINE_MS) {
    stoppedEarly = true;
    break;
  }
  const k = Math.min(BATCH, fillTarget - audited);
  const runA = async () => batchAudited.push(await timeOnce(() => txAudited(k)));
  const runP = async () => batchPlain.push(await timeOnce(() => txPlain(k)));
  if (batchAudited.length % 2 === 0) (await runA(), await runP());
  else (await runP(), await runA());
  audited += k;
  plain += k;
  if (audited >= nextCheckpoint) {
    await checkpointAndCosign();
    nextCheckpoint += CHECKPOINT_EVERY;
  }
  if (audited >= nextReport) {
    progress(`filled ${audited.toLocaleString('en-US')} audited + ${plain.toLocaleString('en-US')} plain operations, ${fmt((performance.now() - fillStart) / 1000, 1)} s`);
    nextReport += fillTarget / 10;
  }
}

// Where an audit entry's CPU time goes, without the database: what append
// computes (salted commitment, canonical JSON, parseEntry, leaf hash), and
// what preparing its three statements would cost on every call (the store
// prepares each once per connection; SQL as in hub/store/audit.ts).
const PARTS = 20_000;
const partJs: number[] = [];
const partPrep: number[] = [];
const jsWork = (k: number): void => {
  for (let i = 0; i < k; i++) {
    const now = Date.now();
    const entry: AuditEntry = {
      log: TENANT,
      index: audited + i,
      at: now,
      actor: { kind: 'operator', id: operator.id },
      surface: 'cli',
      action: 'enrollment-token.create',
      target: { type: 'enrollment-token', id: `enr_${randomBytes(10).toString('hex')}` },
      agents: [],
      outcome: 'ok',
      details: { expiresAt: now + TTL_MS },
      personal: { operator: commitment(randomBytes(16), 'alice') },
    };
    const data = canonicalJson(entry);
    parseEntry(data);
    leafHash(data);
  }
};
const prepWork = (k: number): void => {
  for (let i = 0; i < k; i++) {
    db.prepare('SELECT max(idx) AS m FROM audit_entries WHERE log = ?');
    db.prepare('INSERT INTO audit_personal (log, idx, field, salt, value) VALUES (?, ?, ?, ?, ?)');
    db.prepare('INSERT INTO audit_entries (log, idx, at, data, leaf_hash) VALUES (?, ?, ?, ?, ?)');
  }
};
jsWork(1000);
prepWork(1000);
for (let r = 0; r < PARTS / 1000; r++) {
  partJs.push((await timeOnce(() => jsWork(1000))) / 1000);
  partPrep.push((await timeOnce(() => prepWork(1000))) / 1000);
}

// One operation per transaction: the hub's real shape. Rounds rotate the order.
const txA: number[] = [];
const txP: number[] = [];
const txF: number[] = [];
const runs: (() => Promise<number>)[] = [async () => txA.push(await timeOnce(() => txAudited(1))), async () => txP.push(await timeOnce(() => txPlain(1))), async () => txF.push(await timeOnce(() => txFloor()))];
for (let i = 0; i < 20; i++) for (const r of runs) await r(); // warm-up (adds 20 entries)
txA.length = txP.length = txF.length = 0;
for (let i = 0; i < PER_TX; i++) for (let j = 0; j < runs.length; j++) await runs[(i + j) % runs.length]!();
audited += PER_TX + 20;
progress(`per-transaction samples done, ${fmt((performance.now() - started) / 1000, 1)} s`);

await checkpointAndCosign(); // at the full size, so verify below has a root to match at the end
const size = await audit.size(TENANT);
if (size !== audited) throw new Error(`log has ${size} entries, expected ${audited}`);

const appendRows: string[][] = [['appending (WAL, synchronous=FULL)', 'entries/s (ops/s)', 'latency p50 / p99', 'ops timed']];
const rA = perSec(txA.length, sum(txA));
const rP = perSec(txP.length, sum(txP));
const rF = perSec(txF.length, sum(txF));
const bA = perSec(audited - PER_TX - 20, sum(batchAudited));
const bP = perSec(plain, sum(batchPlain));
appendRows.push(['1 op/tx: enrollment token + audit entry', rate(rA), both(txA, ms), fmt(txA.length, 0)]);
appendRows.push(['1 op/tx: enrollment token alone (peer)', rate(rP), both(txP, ms), fmt(txP.length, 0)]);
appendRows.push(['1 op/tx: 1-row INSERT (commit floor)', rate(rF), both(txF, ms), fmt(txF.length, 0)]);
appendRows.push([`${BATCH}/tx: enrollment token + audit entry`, rate(bA), `${both(batchAudited, ms)} per tx`, fmt(audited - PER_TX - 20, 0)]);
appendRows.push([`${BATCH}/tx: enrollment token alone (peer)`, rate(bP), `${both(batchPlain, ms)} per tx`, fmt(plain, 0)]);
appendRows.push(['  part: entry JSON+parseEntry+leafHash+commit.', '', `${us(sum(partJs) / partJs.length)} per entry (mean)`, fmt(PARTS, 0)]);
appendRows.push(["  part: append's 3 db.prepare calls (no run)", '', `${us(sum(partPrep) / partPrep.length)} per entry (mean)`, fmt(PARTS, 0)]);
console.log(table(appendRows));
console.log(`auditing cost, 1 op/tx:   ${fmt(rP / rA, 2)}x (throughput alone / audited); p50 latency +${ms(p50(txA) - p50(txP))} (${fmt(p50(txA) / p50(txP), 2)}x)`);
console.log(`auditing cost, batched:   ${fmt(bP / bA, 2)}x (throughput alone / audited); per op ${us(1 / bA * 1000)} vs ${us(1 / bP * 1000)}, audit entry adds ${us((1 / bA - 1 / bP) * 1000)}`);
console.log(`commit share, 1 op/tx:    floor p50 ${ms(p50(txF))} = ${fmt((100 * p50(txF)) / p50(txA), 0)}% of the audited p50`);
console.log(`batching gain (audited):  ${fmt(bA / rA, 0)}x entries/s at ${BATCH}/tx over 1/tx`);
if (stoppedEarly) console.log(`NOTE: the fill hit its ${FILL_DEADLINE_MS / 60_000} min deadline; the log has ${size.toLocaleString('en-US')} entries, not ${N.toLocaleString('en-US')}`);
console.log();

// ---- 2. tree, proofs, checkpoints at N --------------------------------------------------

// Cold: a fresh AuditLog (as after a hub restart) reads every leaf hash and rebuilds.
const cold: { wall: number; cpu: number }[] = [];
let hub!: AuditLog;
for (let r = 0; r < 3; r++) {
  const a = new AuditLog(store, hubKey, silentLogger());
  const [t, wall, cpu] = await time(() => a.tree(TENANT));
  if (t.size !== size) throw new Error('cold tree has the wrong size');
  cold.push({ wall, cpu });
  hub = a;
}
const tree = await hub.tree(TENANT);
const leafRows = db.prepare('SELECT idx, leaf_hash FROM audit_entries WHERE log = ? AND idx >= ? ORDER BY idx');
const leaves: Buffer[] = [];
const [, readWall] = await time(() => {
  for (const r of leafRows.iterate(TENANT, 0) as Iterable<{ idx: number; leaf_hash: Buffer }>) leaves.push(r.leaf_hash);
});
const [, buildWall] = await time(() => MerkleTree.fromLeafHashes(leaves));
leaves.length = 0;
const root = tree.root();
const rootHex = root.toString('hex');

// Inclusion: as the proof route does (tree catch-up + root + path + JSON), the path alone, and verification.
const incApi: number[] = [];
const incGen: number[] = [];
const incVer: number[] = [];
const incLen: number[] = [];
const incJson: number[] = [];
for (let s = 0; s < SAMPLES; s++) {
  const i = randomInt(size);
  let proof: Buffer[] = [];
  incApi.push(
    await timeOnce(async () => {
      const t = await hub.tree(TENANT);
      incJson.push(JSON.stringify({ log: TENANT, index: i, size, root: t.root(size).toString('hex'), proof: t.inclusionProof(i, size).map((h) => h.toString('hex')) }).length);
    }),
  );
  incGen.push(await timeOnce(() => (proof = tree.inclusionProof(i, size))));
  const leaf = tree.leaf(i);
  incVer.push(
    await timeOnce(() => {
      if (!verifyInclusion(leaf, i, size, proof, root)) throw new Error('inclusion proof did not verify');
    }),
  );
  incLen.push(proof.length);
}

// Consistency from a random older size m to the current size.
const conApi: number[] = [];
const conGen: number[] = [];
const conVer: number[] = [];
const conLen: number[] = [];
const conJson: number[] = [];
for (let s = 0; s < SAMPLES; s++) {
  const m = 1 + randomInt(size - 1);
  const rootM = tree.root(m);
  let proof: Buffer[] = [];
  conApi.push(
    await timeOnce(async () => {
      const t = await hub.tree(TENANT);
      conJson.push(JSON.stringify({ log: TENANT, from: m, size, root: t.root(size).toString('hex'), proof: t.consistencyProof(m, size).map((h) => h.toString('hex')) }).length);
    }),
  );
  conGen.push(await timeOnce(() => (proof = tree.consistencyProof(m, size))));
  conVer.push(
    await timeOnce(() => {
      if (!verifyConsistency(m, size, rootM, root, proof)) throw new Error('consistency proof did not verify');
    }),
  );
  conLen.push(proof.length);
}
const rootTimes: number[] = [];
for (let i = 0; i < SAMPLES; i++) rootTimes.push(await timeOnce(() => tree.root()));

// Checkpoints: one more audited operation, then AuditLog.checkpoint (tree
// catch-up, root, Ed25519 sign with tweetnacl, autocommit INSERT = one fsync,
// re-read); the signature alone on the same payload shape, interleaved.
const cpTotal: number[] = [];
const cpSign: number[] = [];
for (let r = 0; r < CHECKPOINT_ROUNDS; r++) {
  await txAudited(1);
  const now = Date.now();
  let cpSize = 0;
  cpTotal.push(
    await timeOnce(async () => {
      const cp = await audit.checkpoint(TENANT, now);
      if (!cp) throw new Error('no checkpoint signed');
      cpSize = cp.size;
    }),
  );
  const doc: Checkpoint = { _type: 'checkpoint', log: TENANT, size: cpSize, root: rootHex, at: now };
  cpSign.push(await timeOnce(() => signatureFor(createEnvelope(PAYLOAD_TYPES.checkpoint, canonicalJson(doc)), hubKey)));
  const last = (await audit.latestCheckpoint(TENANT))!;
  const sig = Buffer.from(sign(pae(PAYLOAD_TYPES.checkpoint, payloadBytes(last.envelope)), agentKey.secretKey)).toString('base64');
  await audit.cosign(TENANT, last.size, last.root.toString('hex'), AGENT_ID, agentPub, sig, Date.now());
}
const finalSize = await audit.size(TENANT);
progress(`tree, proofs and checkpoints done, ${fmt((performance.now() - started) / 1000, 1)} s`);

const coldWall = cold.map((c) => c.wall);
const treeRows: string[][] = [[`at ${size.toLocaleString('en-US')} entries`, 'p50 / p99', 'size', 'note']];
treeRows.push(['AuditLog.tree() cold (fresh AuditLog)', `${fmt(cold[0]!.wall, 0)} ms (cpu ${fmt(cold[0]!.cpu, 0)})`, '', `${fmt(perSec(size, cold[0]!.wall), 0)} leaves/s; runs: ${coldWall.map((w) => fmt(w, 0)).join(', ')} ms`]);
treeRows.push(['  of which: read leaf hashes (sqlite)', `${fmt(readWall, 0)} ms`, '', 'same query, on its own']);
treeRows.push(['  of which: MerkleTree from leaf hashes', `${fmt(buildWall, 0)} ms`, '', 'in memory, on its own']);
treeRows.push(['root of the warm tree', both(rootTimes, us), '32 B', '']);
treeRows.push(['inclusion: proof route (catch-up+root+path)', both(incApi, us), `${fmt(p50(incJson), 0)} B JSON`, `${SAMPLES} random indexes`]);
treeRows.push(['inclusion: MerkleTree.inclusionProof', both(incGen, us), `${fmt(p50(incLen) * 32, 0)} B (max ${fmt(Math.max(...incLen) * 32, 0)})`, `${fmt(p50(incLen), 0)} hashes`]);
treeRows.push(['inclusion: verifyInclusion', both(incVer, us), '', '']);
treeRows.push(['consistency: proof route', both(conApi, us), `${fmt(p50(conJson), 0)} B JSON`, `${SAMPLES} random m -> ${size.toLocaleString('en-US')}`]);
treeRows.push(['consistency: MerkleTree.consistencyProof', both(conGen, us), `${fmt(p50(conLen) * 32, 0)} B (max ${fmt(Math.max(...conLen) * 32, 0)})`, `${fmt(p50(conLen), 0)} hashes`]);
treeRows.push(['consistency: verifyConsistency', both(conVer, us), '', '']);
treeRows.push(['AuditLog.checkpoint (1 new entry)', both(cpTotal, ms), '', `${CHECKPOINT_ROUNDS} rounds; sign + autocommit INSERT`]);
treeRows.push(['  of which: Ed25519 sign (tweetnacl)', both(cpSign, ms), '64 B sig', 'envelope + signatureFor alone']);
console.log(table(treeRows));
console.log();

// ---- 3. verify -------------------------------------------------------------------------

const hubKeys = new Map([[keyId(hubKey.publicKey), hubKey.publicKey]]);
const checkpoints: ExportedCheckpoint[] = (await audit.checkpoints(TENANT)).map((cp) => ({
  envelope: cp.envelope,
  cosignatures: cp.cosignatures.map((c) => ({ agentId: c.agentId, publicKey: c.agentId === AGENT_ID ? agentPub : null, sig: c.sig })),
}));
const checkReport = (r: ReturnType<typeof verifyLog>, how: string): void => {
  if (!r.ok || r.entries !== finalSize || r.verifiedSize !== finalSize || r.witnessed !== checkpoints.length) {
    throw new Error(`verifyLog (${how}) did not pass: ${JSON.stringify({ ...r, problems: r.problems.slice(0, 3) })}`);
  }
};

const readAll = async (): Promise<ExportedEntry[]> => {
  const out: ExportedEntry[] = [];
  for await (const e of audit.scan(TENANT)) out.push({ index: e.index, data: e.data, leafHash: e.leafHash });
  return out;
};
// Read from the store and verified, as a verifier next to the database would.
const [streamReport, streamWall, streamCpu] = await time(async () => verifyLog(TENANT, await readAll(), checkpoints, hubKeys));
checkReport(streamReport, 'read with AuditLog.scan');
progress(`verify (from the store) done, ${fmt((performance.now() - started) / 1000, 1)} s`);

// In memory, as `ferry audit verify` has them after the export.
const [entries, loadWall] = await time(readAll);
const bytesTotal = sum(entries.map((e) => e.data.length));

// The floor: sha256 of every entry's bytes, one hash per entry (a verifier
// must hash each leaf); also one stream over all bytes. Taken before and
// after verify, the faster run counts.
const floorPerEntry = async (): Promise<number> =>
  (
    await time(() => {
      for (const e of entries) hash('sha256', e.data, 'buffer');
    })
  )[1];
const floorStream = async (): Promise<number> =>
  (
    await time(() => {
      const h = createHash('sha256');
      for (const e of entries) h.update(e.data);
      h.digest();
    })
  )[1];
const sha1 = await floorPerEntry();
const shaS1 = await floorStream();
const [memReport, memWall, memCpu] = await time(() => verifyLog(TENANT, entries, checkpoints, hubKeys));
checkReport(memReport, 'in memory');
const sha2 = await floorPerEntry();
const shaS2 = await floorStream();
const sha = Math.min(sha1, sha2);
const shaS = Math.min(shaS1, shaS2);

// Where verify's time goes, each part on its own over the same entries.
const [, leafWall] = await time(() => {
  for (const e of entries) leafHash(e.data);
});
const [, parseWall] = await time(() => {
  for (const e of entries) parseEntry(e.data);
});
const [, treeWall] = await time(() => MerkleTree.fromLeafHashes(entries.map((e) => e.leafHash)));
progress(`verify (in memory) and its parts done, ${fmt((performance.now() - started) / 1000, 1)} s`);

const n = finalSize;
const vRows: string[][] = [[`verify ${n.toLocaleString('en-US')} entries (${mib(bytesTotal)}, ${fmt(bytesTotal / n, 0)} B avg), ${checkpoints.length} checkpoints`, 'wall', 'entries/s', 'vs sha256 floor']];
vRows.push(['verifyLog, read with AuditLog.scan', `${fmt(streamWall, 0)} ms (cpu ${fmt(streamCpu, 0)})`, rate(perSec(n, streamWall)), `${fmt(streamWall / sha, 1)}x`]);
vRows.push(['verifyLog, entries in memory (as the CLI)', `${fmt(memWall, 0)} ms (cpu ${fmt(memCpu, 0)})`, rate(perSec(n, memWall)), `${fmt(memWall / sha, 1)}x`]);
vRows.push(['  part: leafHash of every entry', `${fmt(leafWall, 0)} ms`, rate(perSec(n, leafWall)), `${fmt(leafWall / sha, 1)}x`]);
vRows.push(['  part: parseEntry (strict JSON + zod)', `${fmt(parseWall, 0)} ms`, rate(perSec(n, parseWall)), `${fmt(parseWall / sha, 1)}x`]);
vRows.push(['  part: MerkleTree from leaf hashes', `${fmt(treeWall, 0)} ms`, rate(perSec(n, treeWall)), `${fmt(treeWall / sha, 1)}x`]);
vRows.push(['AuditLog.scan into memory', `${fmt(loadWall, 0)} ms`, rate(perSec(n, loadWall)), `${fmt(loadWall / sha, 1)}x`]);
vRows.push(['peer: sha256 per entry (floor)', `${fmt(sha, 0)} ms`, rate(perSec(n, sha)), '1.0x']);
vRows.push(['peer: sha256 stream over all bytes', `${fmt(shaS, 0)} ms`, rate(perSec(n, shaS)), `${fmt(shaS / sha, 1)}x`]);
console.log(table(vRows));
console.log(`verify / sha256 floor:  ${fmt(memWall / sha, 1)}x in memory, ${fmt(streamWall / sha, 1)}x from the store (floor runs ${fmt(sha1, 0)}, ${fmt(sha2, 0)} ms)`);
console.log(`verify parts: parseEntry ${fmt((100 * parseWall) / memWall, 0)}%, leafHash ${fmt((100 * leafWall) / memWall, 0)}%, tree ${fmt((100 * treeWall) / memWall, 0)}% of in-memory verifyLog`);
console.log(`tree cold / verify: ${fmt(cold[0]!.wall / memWall, 2)}x (rebuild from stored leaf hashes vs rehash + parse everything)`);

const mem = process.memoryUsage();
console.log(`\nrss ${mib(mem.rss)}, array buffers ${mib(mem.arrayBuffers)}; final log ${finalSize.toLocaleString('en-US')} entries, ${checkpoints.length} checkpoints (each cosigned by one agent)`);
console.log(`took ${fmt((performance.now() - started) / 1000, 1)} s`);
await sdb.close();
cleanup();

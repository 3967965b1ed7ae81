// The console's audit badge (hub/console/browser/audit-check.ts, WebCrypto
// only, served to browsers) against `ferry audit verify`'s check
// (shared/audit-verify.ts, node:crypto): the same exports, as the hub writes
// them (NDJSON), clean and tampered in each way the CLI knows, must get the
// same verdict, the same verified size, and name the same entry. Node's own
// WebCrypto runs the browser module here; the browser test runs it in Chromium.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkExport } from '../../hub/console/browser/audit-check.js';
import { verifyLog, type ExportedCheckpoint, type ExportedEntry } from '../../shared/audit-verify.js';
import { PAYLOAD_TYPES, pae } from '../../shared/dsse.js';
import { encodePublicKey, keyId, sign } from '../../shared/keys.js';
import { MerkleTree, leafHash } from '../../shared/merkle.js';
import { canonicalJson } from '../../shared/release.js';
import { seededKey, signed } from '../helpers/signing.js';

const hub = seededKey('console-audit-hub');
const stranger = seededKey('console-audit-stranger');
const agent = seededKey('console-audit-agent');
const hubKeys = new Map([[keyId(hub.publicKey), hub.publicKey]]);

const entry = (index: number, action = 'agent.enroll', log = 'bank-a'): Buffer =>
  canonicalJson({ log, index, at: 1_700_000_000_000 + index, actor: { kind: 'operator', id: 'usr_1' }, surface: 'console', action, target: { type: 'agent', id: `agt_${index}` }, agents: [`agt_${index}`], outcome: 'ok', details: { n: index }, personal: {} });

function checkpoint(entries: Buffer[], size: number, opts: { by?: typeof hub; badCosignature?: boolean } = {}): ExportedCheckpoint {
  const tree = new MerkleTree();
  for (const e of entries.slice(0, size)) tree.append(leafHash(e));
  const env = signed('checkpoint', { _type: 'checkpoint', log: 'bank-a', size, root: tree.root(size).toString('hex'), at: 1_700_000_100_000 + size }, [opts.by ?? hub]);
  const message = pae(PAYLOAD_TYPES.checkpoint, Buffer.from(env.payload, 'base64'));
  const sig = Buffer.from(sign(opts.badCosignature ? Buffer.from('something else') : message, agent.secretKey)).toString('base64');
  return { envelope: env, cosignatures: [{ agentId: 'agt_1', publicKey: encodePublicKey(agent.publicKey), sig }] };
}

const rows = (data: Buffer[]): ExportedEntry[] => data.map((d, index) => ({ index, data: d, leafHash: leafHash(d) }));

/** The hub's export format (hub/http/routes/audit.ts): checkpoints, then entries. */
const ndjson = (entries: ExportedEntry[], cps: ExportedCheckpoint[]) =>
  [
    ...cps.map((c) => JSON.stringify({ kind: 'checkpoint', envelope: c.envelope, cosignatures: c.cosignatures })),
    ...entries.map((e) => JSON.stringify({ kind: 'entry', index: e.index, data: e.data.toString('base64'), leafHash: e.leafHash.toString('hex') })),
  ].join('\n') + '\n';

// 11 entries: checkpoints at 4, 7 and 11 exercise trees that are not powers of two.
const LOG = Array.from({ length: 11 }, (_x, i) => entry(i));
const CPS = [checkpoint(LOG, 4), checkpoint(LOG, 7), checkpoint(LOG, 11)];

async function both(entries: ExportedEntry[], cps: ExportedCheckpoint[]) {
  const cli = verifyLog('bank-a', entries, cps, hubKeys);
  const browser = await checkExport('bank-a', ndjson(entries, cps), encodePublicKey(hub.publicKey));
  assert.equal(browser.ok, cli.ok, `same verdict: browser ${JSON.stringify(browser.problems)}, cli ${JSON.stringify(cli.problems)}`);
  assert.equal(browser.verifiedSize, cli.verifiedSize, 'same verified size');
  assert.equal(browser.entries, cli.entries);
  assert.equal(browser.witnessed, cli.witnessed);
  return { cli, browser };
}

test('an intact log: both verify it through every checkpoint, witnessed', async () => {
  const { browser } = await both(rows(LOG), CPS);
  assert.deepEqual({ ok: browser.ok, verifiedSize: browser.verifiedSize, checkpoints: browser.checkpoints, witnessed: browser.witnessed, unvouched: browser.unvouched }, { ok: true, verifiedSize: 11, checkpoints: 3, witnessed: 3, unvouched: 0 });
  const newer = [...LOG, entry(11), entry(12)];
  const later = await both(rows(newer), CPS);
  assert.equal(later.browser.unvouched, 2, 'entries after the last checkpoint are counted, not failed');
});

test('an entry edited without its leaf hash: both name it', async () => {
  const r = rows(LOG);
  r[5] = { ...r[5]!, data: entry(5, 'agent.revoke') };
  const { cli, browser } = await both(r, CPS);
  assert.equal(cli.firstBad, 5);
  assert.ok(browser.problems.includes('entry 5 was edited: its bytes no longer hash to its leaf'), JSON.stringify(browser.problems));
  assert.equal(browser.verifiedSize, 4);
});

test('an entry rewritten with its leaf hash: both fail from the checkpoint that no longer matches', async () => {
  const forged = [...LOG];
  forged[8] = entry(8, 'agent.revoke');
  const { browser } = await both(rows(forged), CPS);
  assert.equal(browser.verifiedSize, 7);
  assert.ok(browser.problems.includes('entries up to 10 do not reproduce the checkpoint signed at size 11'), JSON.stringify(browser.problems));
});

test('a missing entry, entries removed after a checkpoint, an entry moved: both fail', async () => {
  const missing = await both(rows(LOG).filter((e) => e.index !== 2), CPS);
  assert.ok(missing.browser.problems.includes('entry 2 is missing'), JSON.stringify(missing.browser.problems));
  assert.equal(missing.cli.firstBad, 2);
  const cut = await both(rows(LOG.slice(0, 9)), CPS);
  assert.ok(cut.browser.problems.some((p) => /entries were removed/.test(p)), JSON.stringify(cut.browser.problems));
  const moved = rows(LOG);
  moved[3] = { index: 3, data: entry(3, 'agent.enroll', 'bank-b'), leafHash: leafHash(entry(3, 'agent.enroll', 'bank-b')) };
  const m = await both(moved, CPS);
  assert.ok(m.browser.problems.some((p) => /^entry 3 says it is entry 3 of log bank-b/.test(p)), JSON.stringify(m.browser.problems));
});

test('a fork, a checkpoint signed by another key, a cosignature that does not verify: both fail', async () => {
  const other = [...LOG];
  other[10] = entry(10, 'agent.revoke');
  const fork = await both(rows(LOG), [...CPS, checkpoint(other, 11)]);
  assert.ok(fork.browser.problems.includes('two different roots are signed for size 11: the log was forked'));
  const foreign = await both(rows(LOG), [checkpoint(LOG, 4), checkpoint(LOG, 11, { by: stranger })]);
  assert.ok(foreign.browser.problems.includes('a checkpoint is not signed by the hub key'));
  assert.equal(foreign.browser.verifiedSize, 4);
  const cosig = await both(rows(LOG), [checkpoint(LOG, 11, { badCosignature: true })]);
  assert.ok(cosig.browser.problems.includes('the cosignature by agent agt_1 on checkpoint 11 does not verify'));
});

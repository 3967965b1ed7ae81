// `ferry audit verify`'s check, pure: a log of real entries, a checkpoint
// signed by the hub key and cosigned by an agent, and tampering with copies.
// A report names an entry as bad only when a check singled that entry out.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { verifyLog, type ExportedCheckpoint, type ExportedEntry } from '../../shared/audit-verify.js';
import { PAYLOAD_TYPES, pae } from '../../shared/dsse.js';
import { encodePublicKey, keyId, sign } from '../../shared/keys.js';
import { MerkleTree, leafHash } from '../../shared/merkle.js';
import { canonicalJson } from '../../shared/release.js';
import { whatIsKnown } from '../../cli/audit-commands.js';
import { seededKey, signed } from '../helpers/signing.js';

const hub = seededKey('audit-verify-hub');
const agent = seededKey('audit-verify-agent');
const hubKeys = new Map([[keyId(hub.publicKey), hub.publicKey]]);

function entry(index: number, action = 'tenant.create'): Buffer {
  return canonicalJson({ log: 'bank-a', index, at: 1_700_000_000_000 + index, actor: { kind: 'hub', id: null }, surface: 'hub', action, target: null, agents: [], outcome: 'ok', details: {}, personal: {} });
}

function checkpoint(entries: Buffer[], size: number, cosigned = true): ExportedCheckpoint {
  const tree = new MerkleTree();
  for (const e of entries.slice(0, size)) tree.append(leafHash(e));
  const env = signed('checkpoint', { _type: 'checkpoint', log: 'bank-a', size, root: tree.root(size).toString('hex'), at: 1_700_000_100_000 }, [hub]);
  const sig = Buffer.from(sign(pae(PAYLOAD_TYPES.checkpoint, Buffer.from(env.payload, 'base64')), agent.secretKey)).toString('base64');
  return { envelope: env, cosignatures: cosigned ? [{ agentId: 'agt_1', publicKey: encodePublicKey(agent.publicKey), sig }] : [] };
}

const exported = (data: Buffer[]): ExportedEntry[] => data.map((d, index) => ({ index, data: d, leafHash: leafHash(d) }));
const LOG = Array.from({ length: 8 }, (_x, i) => entry(i));

test('an intact log verifies through its witnessed checkpoints', () => {
  const r = verifyLog('bank-a', exported(LOG), [checkpoint(LOG, 4), checkpoint(LOG, 8)], hubKeys);
  assert.deepEqual({ ok: r.ok, verifiedSize: r.verifiedSize, witnessed: r.witnessed, firstBad: r.firstBad, unvouched: r.unvouched }, { ok: true, verifiedSize: 8, witnessed: 2, firstBad: null, unvouched: null });
});

test('an entry edited without its leaf hash is named', () => {
  const rows = exported(LOG);
  rows[5] = { ...rows[5]!, data: entry(5, 'tenant.delete') };
  const r = verifyLog('bank-a', rows, [checkpoint(LOG, 8)], hubKeys);
  assert.equal(r.firstBad, 5);
  assert.match(whatIsKnown(r), /^bank-a: first bad entry 5$/);
});

test('an entry rewritten with its leaf hash: no entry is named, the range the checkpoint no longer vouches for is', () => {
  const forged = [...LOG];
  forged[5] = entry(5, 'tenant.delete');
  // checkpoints at 4 and 8: entries 0..3 are still vouched for; 4..7 are not
  const r = verifyLog('bank-a', exported(forged), [checkpoint(LOG, 4), checkpoint(LOG, 8)], hubKeys);
  assert.equal(r.ok, false);
  assert.equal(r.firstBad, null, 'no check singled out an entry');
  assert.equal(r.verifiedSize, 4);
  assert.deepEqual(r.unvouched, { from: 4, to: 7, checkpointSize: 8, witnessed: true });
  const p = r.problems.find((x) => x.kind === 'mismatch')!;
  assert.deepEqual({ index: p.index, range: p.range }, { index: null, range: { from: 4, to: 7 } });
  assert.equal(whatIsKnown(r), 'bank-a: entries 4..7 are no longer vouched for by the checkpoint of size 8 that agents witnessed (one of them was rewritten with its leaf hash; no single entry can be named)');
  assert.doesNotMatch(whatIsKnown(r), /first bad entry/);
  // with only the one checkpoint, the whole log is the range, and entry 0 is not blamed
  const only = verifyLog('bank-a', exported(forged), [checkpoint(LOG, 8, false)], hubKeys);
  assert.equal(only.firstBad, null);
  assert.match(whatIsKnown(only), /^bank-a: entries 0\.\.7 are no longer vouched for by the checkpoint of size 8 \(/);
});

test('a specific check wins over a range: a missing entry is named even though the checkpoint mismatches too', () => {
  const rows = exported(LOG).filter((e) => e.index !== 2);
  const r = verifyLog('bank-a', rows, [checkpoint(LOG, 8)], hubKeys);
  assert.equal(r.firstBad, 2);
  assert.match(whatIsKnown(r), /first bad entry 2$/);
});

test('a fork names no entry', () => {
  const other = [...LOG];
  other[7] = entry(7, 'agent.revoke');
  const r = verifyLog('bank-a', exported(LOG), [checkpoint(LOG, 8), checkpoint(other, 8)], hubKeys);
  assert.equal(r.firstBad, null);
  const fork = r.problems.find((p) => p.kind === 'forked')!;
  assert.deepEqual({ index: fork.index, range: fork.range }, { index: null, range: { from: 0, to: 7 } });
  assert.match(whatIsKnown(r), /two different roots signed for size 8: the log was forked/);
});

// The agent's acceptance checks, one adversarial case per test. Each case
// fails if its check is removed: it asserts the specific error code.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PAYLOAD_TYPES, addSignature, createEnvelope, payloadDigest, signatureFor, type Envelope } from '../../shared/dsse.js';
import { FerryError } from '../../shared/errors.js';
import { encodePublicKey } from '../../shared/keys.js';
import { canonicalJson, type Directive } from '../../shared/release.js';
import { rootFingerprint } from '../../shared/trust.js';
import { NO_POLICY, parsePolicy } from '../../agent/policy.js';
import { EMPTY_STATE, boundTrustedTime, currentRoot, verifyBundle, verifyPrestage, type Bundle, type Facts, type TrustState } from '../../agent/verify.js';
import { checkCheckpoint } from '../../agent/witness.js';
import type { CheckpointMessage } from '../../shared/protocol.js';
import { releaseDoc, rootDoc, seededKey, service, signed } from '../helpers/signing.js';

const L = (1n << 252n) + 27742317777372353535851937790883648493n;
const NOW = 1_800_000_000_000;
const [r1, r2] = ['root-1', 'root-2', 'root-3'].map(seededKey) as [ReturnType<typeof seededKey>, ReturnType<typeof seededKey>, ReturnType<typeof seededKey>];
const [m1, m2, m3] = ['rm-1', 'rm-2', 'rm-3'].map(seededKey) as typeof r1[] as [typeof r1, typeof r1, typeof r1];
const hub = seededKey('hub');
const bankApprover = seededKey('bank-a-approver');

const root1 = signed('root', rootDoc({ root: [r1], release: [m1, m2, m3], releaseThreshold: 2, hub: [hub] }), [r1]);
const rel = (version = '1.0.0', extra = {}, signers = [m1, m2]) => signed('release', releaseDoc('payments', version, extra), signers);

function directive(over: Partial<Directive> = {}, releases: Envelope[] = [rel()]): Envelope {
  const d: Directive = {
    _type: 'directive',
    tenant: 'bank-a',
    agent: 'agt_a',
    seq: 1,
    issuedAt: NOW - 1000,
    expiresAt: NOW + 3600_000,
    rootVersion: 1,
    releases: releases.map((e) => {
      const doc = JSON.parse(Buffer.from(e.payload, 'base64').toString());
      return { stack: doc.stack, version: doc.version, digest: payloadDigest(e) };
    }),
    ...over,
  };
  return signed('directive', d, [hub]);
}

const facts = (over: Partial<Facts> = {}): Facts => ({ agentId: 'agt_a', tenant: 'bank-a', now: NOW, policy: NO_POLICY, ...over });
const bundle = (d: Envelope, releases: Envelope[] = [rel()], roots: Envelope[] = [root1]): Bundle => ({ directive: d, releases, roots });

function refused(code: string, fn: () => unknown) {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof FerryError, String(err));
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`accepted; expected ${code}`);
}

const accept = (state: TrustState, b: Bundle, f = facts()) => verifyBundle(state, b, f);

test('a good directive with a 2-of-3 release is accepted, naming its signers', () => {
  const a = accept(EMPTY_STATE, bundle(directive()));
  assert.equal(a.directive.seq, 1);
  assert.equal(a.releases[0]!.release.version, '1.0.0');
  assert.equal(a.releases[0]!.signers.length, 2);
  assert.equal(a.state.last?.seq, 1);
  assert.equal(a.state.roots.length, 1);
});

test('one flipped payload byte', () => {
  const r = rel();
  const bytes = Buffer.from(r.payload, 'base64');
  const at = bytes.indexOf('"1.0.0"') + 5; // the last digit of the version: still JSON, one byte off
  bytes[at]! ^= 0x01;
  const flipped = { ...r, payload: bytes.toString('base64') };
  refused('FERRY_E_SIG_THRESHOLD', () => accept(EMPTY_STATE, bundle(directive({}, [flipped]), [flipped])));
});

test('right signature but another payloadType', () => {
  const d = directive();
  const asRelease = { ...d, payloadType: PAYLOAD_TYPES.release };
  refused('FERRY_E_PAYLOAD_TYPE', () => accept(EMPTY_STATE, bundle(asRelease)));
  // and a release signature does not carry over to another type
  const r = rel();
  const retyped = { ...r, payloadType: PAYLOAD_TYPES.directive };
  refused('FERRY_E_SIG_THRESHOLD', () => accept(EMPTY_STATE, bundle(retyped)));
});

test('a key not in the root', () => {
  const outsider = seededKey('outsider');
  const r = rel('1.0.0', {}, [m1, outsider]);
  refused('FERRY_E_SIG_THRESHOLD', () => accept(EMPTY_STATE, bundle(directive({}, [r]), [r])));
  const forgedDirective = signed('directive', JSON.parse(Buffer.from(directive().payload, 'base64').toString()), [outsider]);
  refused('FERRY_E_SIG_THRESHOLD', () => accept(EMPTY_STATE, bundle(forgedDirective)));
});

test('the same signature twice toward a threshold', () => {
  const one = signed('release', releaseDoc(), [m1]);
  const twice = { ...one, signatures: [one.signatures[0]!, one.signatures[0]!] };
  refused('FERRY_E_SIG_THRESHOLD', () => accept(EMPTY_STATE, bundle(directive({}, [twice]), [twice])));
});

test('the same key under two key ids', () => {
  // a root that lists one public key under a second, made-up id is refused outright
  const doc = rootDoc({ root: [r1], release: [m1, m2], releaseThreshold: 2, hub: [hub] });
  const fakeId = 'f'.repeat(64);
  doc.keys[fakeId] = { keytype: 'ed25519', public: encodePublicKey(m1.publicKey) };
  doc.roles.release.keyids = [doc.roles.release.keyids[0]!, fakeId];
  const bad = signed('root', doc, [r1]);
  refused('FERRY_E_PAYLOAD_INVALID', () => accept(EMPTY_STATE, bundle(directive(), [rel()], [bad])));
  // and an envelope presenting m1's signature under m2's id does not count twice
  const one = signed('release', releaseDoc(), [m1]);
  const sig = one.signatures[0]!;
  const smuggled = { ...one, signatures: [sig, { keyid: signatureFor(one, m2).keyid, sig: sig.sig }] };
  refused('FERRY_E_SIG_THRESHOLD', () => accept(EMPTY_STATE, bundle(directive({}, [smuggled]), [smuggled])));
});

test('a malleated (R, S+L) copy as the "second approver"', () => {
  const one = signed('release', releaseDoc(), [m1]);
  const raw = Buffer.from(one.signatures[0]!.sig, 'base64');
  const s = BigInt('0x' + Buffer.from(raw.subarray(32)).reverse().toString('hex')) + L;
  const mall = Buffer.concat([raw.subarray(0, 32), Buffer.from(s.toString(16).padStart(64, '0'), 'hex').reverse()]);
  const env = { ...one, signatures: [one.signatures[0]!, { keyid: one.signatures[0]!.keyid, sig: mall.toString('base64') }] };
  refused('FERRY_E_SIG_THRESHOLD', () => accept(EMPTY_STATE, bundle(directive({}, [env]), [env])));
});

test('threshold met plus one garbage signature is accepted', () => {
  const r = rel();
  const withGarbage = { ...r, signatures: [...r.signatures, { keyid: signatureFor(r, m3).keyid, sig: Buffer.alloc(64, 7).toString('base64') }] };
  const a = accept(EMPTY_STATE, bundle(directive({}, [withGarbage]), [withGarbage]));
  assert.equal(a.releases[0]!.signers.length, 2);
});

test('a 63-byte signature or a 31-byte key is refused without a crash', () => {
  const r = rel('1.0.0', {}, [m1]);
  const short = { ...r, signatures: [...r.signatures, { keyid: signatureFor(r, m2).keyid, sig: Buffer.from(signatureFor(r, m2).sig, 'base64').subarray(0, 63).toString('base64') }] };
  refused('FERRY_E_SIG_THRESHOLD', () => accept(EMPTY_STATE, bundle(directive({}, [short]), [short])));
  const doc = rootDoc({ root: [r1], release: [m1], hub: [hub] });
  doc.keys[Object.keys(doc.keys)[1]!]!.public = Buffer.alloc(31).toString('base64');
  refused('FERRY_E_VALIDATION', () => accept(EMPTY_STATE, bundle(directive(), [rel()], [signed('root', doc, [r1])])));
});

test('duplicate JSON keys in a signed payload', () => {
  const text = canonicalJson(JSON.parse(Buffer.from(directive().payload, 'base64').toString())).toString().replace('"seq":1', '"seq":1,"seq":9');
  let env = createEnvelope(PAYLOAD_TYPES.directive, Buffer.from(text));
  env = addSignature(env, signatureFor(env, hub));
  refused('FERRY_E_PAYLOAD_INVALID', () => accept(EMPTY_STATE, bundle(env)));
});

test('a float or 2^53 seq', () => {
  for (const seq of ['1.5', '9007199254740992', '1e3']) {
    const text = canonicalJson(JSON.parse(Buffer.from(directive().payload, 'base64').toString())).toString().replace('"seq":1', `"seq":${seq}`);
    let env = createEnvelope(PAYLOAD_TYPES.directive, Buffer.from(text));
    env = addSignature(env, signatureFor(env, hub));
    refused('FERRY_E_PAYLOAD_INVALID', () => accept(EMPTY_STATE, bundle(env)));
  }
});

test("agent A's directive replayed to agent B and across tenants", () => {
  const d = directive();
  refused('FERRY_E_DIRECTIVE_BINDING', () => accept(EMPTY_STATE, bundle(d), facts({ agentId: 'agt_b' })));
  const rootB = signed('root', rootDoc({ tenant: 'bank-b', root: [r1], release: [m1, m2], releaseThreshold: 2, hub: [hub] }), [r1]);
  refused('FERRY_E_DIRECTIVE_BINDING', () => accept(EMPTY_STATE, bundle(d, [rel()], [rootB]), facts({ tenant: 'bank-b' })));
});

test('older seq, and the same seq with another hash (alarm)', () => {
  const s5 = accept(EMPTY_STATE, bundle(directive({ seq: 5 }))).state;
  refused('FERRY_E_DIRECTIVE_REPLAY', () => accept(s5, bundle(directive({ seq: 4 }))));
  const fork = refused('FERRY_E_DIRECTIVE_FORK', () => accept(s5, bundle(directive({ seq: 5, issuedAt: NOW - 999 }))));
  assert.match(fork.message, /seq 5/);
  // the very same directive again is a harmless duplicate
  assert.equal(accept(s5, bundle(directive({ seq: 5 }))).duplicate, true);
});

test('an expired directive, also with the agent clock set back 30 days', () => {
  refused('FERRY_E_DIRECTIVE_EXPIRED', () => accept(EMPTY_STATE, bundle(directive({ issuedAt: NOW - 7200_000, expiresAt: NOW - 1 }))));
  // seen a directive issued at NOW; the clock is then set back 30 days
  const seen = accept(EMPTY_STATE, bundle(directive({ seq: 1, issuedAt: NOW, expiresAt: NOW + 60_000 }))).state;
  const old = directive({ seq: 2, issuedAt: NOW - 30 * 86400_000, expiresAt: NOW - 30 * 86400_000 + 3600_000 });
  refused('FERRY_E_DIRECTIVE_EXPIRED', () => accept(seen, bundle(old), facts({ now: NOW - 30 * 86400_000 + 60_000 })));
});

test('root rotations: v2 signed only by new keys, only by old, v1 to v3, a removed release key', () => {
  const state = accept(EMPTY_STATE, bundle(directive())).state;
  const v2doc = rootDoc({ version: 2, root: [r2], release: [m1, m2], releaseThreshold: 2, hub: [hub] });
  refused('FERRY_E_SIG_THRESHOLD', () => accept(state, bundle(directive({ seq: 2 }), [rel()], [signed('root', v2doc, [r2])])));
  refused('FERRY_E_SIG_THRESHOLD', () => accept(state, bundle(directive({ seq: 2 }), [rel()], [signed('root', v2doc, [r1])])));
  const v3doc = rootDoc({ version: 3, root: [r2], release: [m1, m2], releaseThreshold: 2, hub: [hub] });
  refused('FERRY_E_ROOT_VERSION', () => accept(state, bundle(directive({ seq: 2 }), [rel()], [signed('root', v3doc, [r1, r2])])));

  // v2 signed by old and new: accepted; it drops m1 from the release role
  const v2 = signed('root', rootDoc({ version: 2, root: [r2], release: [m2, m3], releaseThreshold: 2, hub: [hub] }), [r1, r2]);
  const rotated = accept(state, bundle(directive({ seq: 2 }, [rel('1.0.1', {}, [m2, m3])]), [rel('1.0.1', {}, [m2, m3])], [v2]));
  assert.equal(rotated.root.version, 2);
  const byRemoved = rel('1.0.2', {}, [m1, m2]);
  refused('FERRY_E_SIG_THRESHOLD', () => accept(rotated.state, bundle(directive({ seq: 3 }, [byRemoved]), [byRemoved])));
  // a pinned fingerprint that does not match the first root
  refused('FERRY_E_ROOT_UNTRUSTED', () => accept({ ...EMPTY_STATE, pinnedRootFingerprint: rootFingerprint(v2) }, bundle(directive())));
});

test('an image by tag, or from a registry the policy does not allow', () => {
  const byTag = signed('release', releaseDoc('payments', '1.0.0', {}, { web: service('127.0.0.1:5000/ferry/web:latest') }), [m1, m2]);
  refused('FERRY_E_POLICY_DIGEST', () => accept(EMPTY_STATE, bundle(directive({}, [byTag]), [byTag])));
  const policy = parsePolicy('registries: ["registry.bank-a.internal"]\n', 'policy.yaml');
  refused('FERRY_E_POLICY_REGISTRY', () => accept(EMPTY_STATE, bundle(directive()), facts({ policy })));
  // the registry is matched as host:port, exactly: the same host on another port is another registry
  const pinned = `127.0.0.1:5000/ferry/web@sha256:${'b'.repeat(64)}`;
  const onBank = signed('release', releaseDoc('payments', '1.0.0', {}, { web: service(pinned) }), [m1, m2]);
  const hostOnly = parsePolicy('registries: ["127.0.0.1"]\n', 'policy.yaml');
  refused('FERRY_E_POLICY_REGISTRY', () => accept(EMPTY_STATE, bundle(directive({}, [onBank]), [onBank]), facts({ policy: hostOnly })));
  const ok = parsePolicy('registries: ["127.0.0.1:5000"]\n', 'policy.yaml');
  assert.equal(accept(EMPTY_STATE, bundle(directive({}, [onBank]), [onBank]), facts({ policy: ok })).releases[0]!.release.services.web!.image, pinned);
  // an image without a registry host comes from Docker Hub, which this policy does not list
  const dockerHub = signed('release', releaseDoc('payments', '1.0.0', {}, { web: service(`ferry/web@sha256:${'b'.repeat(64)}`) }), [m1, m2]);
  const e = refused('FERRY_E_POLICY_REGISTRY', () => accept(EMPTY_STATE, bundle(directive({}, [dockerHub]), [dockerHub]), facts({ policy: ok })));
  assert.match(e.message, /registry docker\.io \(allowed: 127\.0\.0\.1:5000\)/);
});

test('a release below the floor', () => {
  const raising = rel('2.0.0', { floor: '2.0.0' });
  const s = accept(EMPTY_STATE, bundle(directive({}, [raising]), [raising])).state;
  assert.equal(s.floors.payments, '2.0.0');
  const below = rel('1.9.9');
  refused('FERRY_E_RELEASE_FLOOR', () => accept(s, bundle(directive({ seq: 2 }, [below]), [below])));
});

test('a missing institution co-signature when the policy requires it', () => {
  const policy = parsePolicy(`cosigners:\n  threshold: 1\n  keys: ["${encodePublicKey(bankApprover.publicKey)}"]\n`, 'policy.yaml');
  refused('FERRY_E_POLICY_COSIGN', () => accept(EMPTY_STATE, bundle(directive()), facts({ policy })));
  const cosigned = rel('1.0.0', {}, [m1, m2, bankApprover]);
  assert.equal(accept(EMPTY_STATE, bundle(directive({}, [cosigned]), [cosigned]), facts({ policy })).releases.length, 1);
});

test('operations and maintenance windows from the local policy', () => {
  refused('FERRY_E_POLICY_OPERATION', () => accept(EMPTY_STATE, bundle(directive()), facts({ policy: parsePolicy('operations:\n  deny: [deploy]\n', 'p') })));
  const at = (hhmm: string) => Date.parse(`2027-01-13T${hhmm}:00Z`); // a Wednesday
  const night = parsePolicy('maintenanceWindows:\n  - days: [wed]\n    start: "22:00"\n    end: "04:00"\n', 'p');
  const d = (now: number) => directive({ issuedAt: now - 1000, expiresAt: now + 3600_000 });
  refused('FERRY_E_POLICY_WINDOW', () => accept(EMPTY_STATE, bundle(d(at('12:00'))), facts({ policy: night, now: at('12:00') })));
  assert.ok(accept(EMPTY_STATE, bundle(d(at('23:30'))), facts({ policy: night, now: at('23:30') })));
  refused('FERRY_E_POLICY_WINDOW', () => accept(EMPTY_STATE, bundle(d(at('01:00'))), facts({ policy: night, now: at('01:00') })));
});

test('a directive naming a release it does not carry, or carrying another', () => {
  refused('FERRY_E_DIRECTIVE_RELEASE', () => accept(EMPTY_STATE, bundle(directive(), [])));
  const other = rel('1.0.1');
  const d = directive({}, [rel()]);
  refused('FERRY_E_DIRECTIVE_RELEASE', () => accept(EMPTY_STATE, bundle(d, [other])));
  refused('FERRY_E_ROOT_MISSING', () => accept(EMPTY_STATE, bundle(d, [rel()], [])));
  refused('FERRY_E_ENVELOPE_INVALID', () => accept(EMPTY_STATE, { directive: { payloadType: 1 }, releases: [], roots: [root1] }));
});

const YEARS_10 = 3652 * 86_400_000;

test('a directive dated beyond the allowed skew is refused, says whose clock is wrong, and never becomes trusted time', () => {
  const s1 = accept(EMPTY_STATE, bundle(directive({ seq: 1, issuedAt: NOW }))).state;
  const future = directive({ seq: 2, issuedAt: NOW + YEARS_10, expiresAt: NOW + YEARS_10 + 3600_000 });
  // the hub's clock agreed with ours at connect: the document is what is wrong
  let e = refused('FERRY_E_CLOCK_AHEAD', () => accept(s1, bundle(future), facts({ hubClockOffsetMs: 200 })));
  assert.match(e.message, /directive seq 2 is dated 2\d{3}-.*, 3652 days ahead of this host's clock \(.*; allowed 5 min\); this host's clock is not at fault: the hub's clock agreed with it at connect \(\+200 ms\)/);
  // the hub said its clock is ten years ahead: the hub's clock (or ours) is wrong
  e = refused('FERRY_E_CLOCK_AHEAD', () => accept(s1, bundle(future), facts({ hubClockOffsetMs: YEARS_10 })));
  assert.match(e.message, /the hub's clock was 3652 days ahead of this host's at connect/);
  e = refused('FERRY_E_CLOCK_AHEAD', () => accept(s1, bundle(future), facts()));
  assert.match(e.message, /could not be compared/);
  // a later directive dated now is accepted as if the future one had never come
  const next = accept(s1, bundle(directive({ seq: 2, issuedAt: NOW + 1000 })));
  assert.equal(next.state.maxIssuedAt, NOW + 1000);
  // within the skew is fine (clocks differ a little); a configured skew is honoured
  assert.equal(accept(s1, bundle(directive({ seq: 2, issuedAt: NOW + 4 * 60_000 }))).state.maxIssuedAt, NOW + 4 * 60_000);
  refused('FERRY_E_CLOCK_AHEAD', () => accept(s1, bundle(directive({ seq: 2, issuedAt: NOW + 2000 })), facts({ maxSkewMs: 1000 })));
});

test('trusted time poisoned by an earlier version is bounded once to the clock plus the skew; a clock set back later is not', () => {
  const { issuedAtBounded: _b, ...old } = accept(EMPTY_STATE, bundle(directive({ seq: 1, issuedAt: NOW }))).state;
  const poisoned: TrustState = { ...old, maxIssuedAt: NOW + YEARS_10 }; // what an earlier version stored after a future directive
  const fresh = directive({ seq: 2, issuedAt: NOW + 1000 });
  refused('FERRY_E_DIRECTIVE_EXPIRED', () => accept(poisoned, bundle(fresh)));
  const b = boundTrustedTime(poisoned, { now: NOW });
  assert.deepEqual({ clampedFrom: b.clampedFrom, maxIssuedAt: b.state.maxIssuedAt, bounded: b.state.issuedAtBounded, changed: b.changed }, { clampedFrom: NOW + YEARS_10, maxIssuedAt: NOW + 300_000, bounded: true, changed: true });
  const after = accept(b.state, bundle(fresh));
  assert.equal(after.directive.seq, 2);
  // an old state within bounds is only marked; a bounded state is left as it is, even with the clock set back 30 days
  assert.deepEqual(boundTrustedTime(old, { now: NOW }), { state: { ...old, issuedAtBounded: true }, clampedFrom: null, changed: true });
  const later = boundTrustedTime(after.state, { now: NOW - 30 * 86_400_000 });
  assert.deepEqual(later, { state: after.state, clampedFrom: null, changed: false });
});

test('an audit checkpoint dated beyond the skew is refused before anything else about it counts', () => {
  const root = currentRoot(accept(EMPTY_STATE, bundle(directive())).state)!;
  const cp = (at: number): CheckpointMessage => ({
    type: 'checkpoint',
    checkpoint: signed('checkpoint', { _type: 'checkpoint', log: 'bank-a', size: 1, root: 'ab'.repeat(32), at }, [hub]),
    fromSize: null,
    consistency: [],
    entries: [],
  });
  assert.equal(checkCheckpoint(null, cp(NOW), root, 'bank-a', { now: NOW }).size, 1);
  const e = refused('FERRY_E_CLOCK_AHEAD', () => checkCheckpoint(null, cp(NOW + YEARS_10), root, 'bank-a', { now: NOW, hubClockOffsetMs: -50 }));
  assert.match(e.message, /audit checkpoint of size 1 is dated .* 3652 days ahead .*this host's clock is not at fault/);
});

test('pre-staging verifies releases as a directive\'s are (threshold, floor, policy) and changes no state', () => {
  const ok = verifyPrestage(EMPTY_STATE, [rel()], [root1], facts());
  assert.deepEqual(ok.map((a) => `${a.release.stack}@${a.release.version}`), ['payments@1.0.0']);
  refused('FERRY_E_SIG_THRESHOLD', () => verifyPrestage(EMPTY_STATE, [rel('1.0.0', {}, [m1])], [root1], facts()));
  refused('FERRY_E_ROOT_MISSING', () => verifyPrestage(EMPTY_STATE, [rel()], [], facts()));
  const floored = accept(EMPTY_STATE, bundle(directive({}, [rel('2.0.0', { floor: '2.0.0' })]), [rel('2.0.0', { floor: '2.0.0' })])).state;
  refused('FERRY_E_RELEASE_FLOOR', () => verifyPrestage(floored, [rel('1.5.0')], [], facts()));
  refused('FERRY_E_POLICY_REGISTRY', () => verifyPrestage(EMPTY_STATE, [rel()], [root1], facts({ policy: parsePolicy('registries: ["registry.bank-a.internal"]\n', 'p') })));
});

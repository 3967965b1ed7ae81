// What the agent pays to accept a directive: verifyBundle on a 20-service
// release (release role 2 of 3) plus a hub-signed directive, with a root
// chain of v1 only and of v1..v3 (every link re-verified, as currentRoot
// does). The time is split into signature checks, strict JSON + schema, and
// envelope decoding, each measured on its own in the same loop; then Ed25519
// signing and verification throughput on the release's PAE bytes, tweetnacl
// against Node's built-in, and what verifyBundle would cost on tweetnacl.
//   node dist/bench/verify.js [runs=2000]
//
// Samples are interleaved (one of each measure per round) so drift on a
// noisy host hits every measure alike; ratios are within one run.
import { createHash, createPrivateKey, sign as nodeSign } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { availableParallelism, cpus } from 'node:os';
import { NO_POLICY } from '../agent/policy.js';
import { verifyBundle, type Bundle, type Facts, type TrustState } from '../agent/verify.js';
import { PAYLOAD_TYPES, decodeEnvelope, pae, payloadBytes, payloadDigest, validSigners, verifyEnvelope, type Envelope } from '../shared/dsse.js';
import { decodeSignature, keyId, signNacl, signNode, verify, verifyNacl, verifyNode, type KeyPair } from '../shared/keys.js';
import { parseDirective, parseRelease, type Directive, type Release, type Service } from '../shared/release.js';
import { parseStrictJson } from '../shared/strict-json.js';
import { parseRoot, rootFingerprint, trustedKeys, type Root } from '../shared/trust.js';
import { rootDoc, seededKey, service, signed } from '../test/helpers/signing.js';
import { fmt, quantile, table } from './lib/report.js';

const RUNS = Math.min(20_000, Math.max(100, Number(process.argv[2] ?? 2000) || 2000));
const WARMUP = 300;
/** tweetnacl is slow on a large message: its loop is sampled every NACL_EVERY rounds. */
const NACL_EVERY = 10;
const THROUGHPUT_MS = 1500;
const THROUGHPUT_MAX_OPS = 200_000;
const NOW = 1_800_000_000_000;
const SERVICES = 20;
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex'); // as in shared/keys.ts

type Verifier = (message: Uint8Array, signature: Uint8Array, pub: Uint8Array) => boolean;

// ---- documents -------------------------------------------------------------

const key = (label: string): KeyPair => seededKey(`bench-verify:${label}`);
const [r1, r2, r3] = ['root-1', 'root-2', 'root-3'].map(key) as [KeyPair, KeyPair, KeyPair];
const [m1, m2, m3] = ['rm-1', 'rm-2', 'rm-3'].map(key) as [KeyPair, KeyPair, KeyPair];
const hub = key('hub');

const digestOf = (s: string) => createHash('sha256').update(s).digest('hex');

/** A service as a compose file would give it: env, ports, a volume, a healthcheck, depends_on. */
function realisticService(name: string, i: number, names: string[]): Service {
  const dependsOn: Service['dependsOn'] = {};
  if (i > 0) dependsOn[names[0]!] = { condition: 'service_healthy' };
  if (i > 1) dependsOn[names[i - 1]!] = { condition: 'service_started' };
  return service(`registry.bank-a.internal/payments/${name}@sha256:${digestOf(name)}`, {
    command: ['node', 'dist/main.js', '--config', `/etc/${name}/config.yaml`],
    environment: {
      NODE_ENV: 'production',
      LOG_LEVEL: 'info',
      SERVICE_NAME: name,
      PORT: String(8080 + i),
      DATABASE_URL: `postgres://${name}@db.internal:5432/${name}?sslmode=verify-full`,
      REDIS_URL: 'redis://cache.internal:6379/0',
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://otel-collector.internal:4318',
      FEATURE_FLAGS: 'ledger-v2,async-settlement,strict-iban',
      TZ: 'Europe/Vienna',
      MAX_CONNECTIONS: '64',
    },
    ports: [
      { target: 8080 + i, published: 18080 + i, protocol: 'tcp', hostIp: '127.0.0.1' },
      { target: 9100, protocol: 'tcp' },
    ],
    volumes: [
      { type: 'volume', source: `${name}-data`, target: `/var/lib/${name}`, readOnly: false },
      { type: 'bind', source: `/etc/ferry/config/${name}`, target: `/etc/${name}`, readOnly: true },
    ],
    networks: ['backend'],
    dependsOn,
    healthcheck: { test: ['CMD', 'curl', '-fsS', `http://127.0.0.1:${8080 + i}/healthz`], intervalMs: 10_000, timeoutMs: 3_000, retries: 3, startPeriodMs: 15_000 },
    restart: 'unless-stopped',
    labels: { 'com.bank-a.team': 'payments', 'com.bank-a.tier': i === 0 ? 'data' : 'app', 'com.bank-a.cost-centre': 'cc-4711' },
    user: '10001:10001',
    workingDir: '/app',
    stopGracePeriodMs: 30_000,
    replicas: 1,
    updateOrder: 'stop-first',
  });
}

function releaseDoc20(): Release {
  const names = Array.from({ length: SERVICES }, (_, i) => (i === 0 ? 'db' : `svc-${String(i).padStart(2, '0')}`));
  const services: Record<string, Service> = {};
  const volumes: Release['volumes'] = {};
  names.forEach((n, i) => {
    services[n] = realisticService(n, i, names);
    volumes[`${n}-data`] = {};
  });
  return { _type: 'release', stack: 'payments', version: '4.2.0', createdAt: 1_700_000_000_000, services, networks: { backend: { internal: true } }, volumes };
}

/** Root v1 (root r1), then v2 (root r2) and v3 (root r3), each signed by the old and new root key. */
function rootChain(length: number): Envelope[] {
  const chain: Envelope[] = [];
  const rootKeys = [r1, r2, r3];
  for (let v = 1; v <= length; v++) {
    const doc = rootDoc({ version: v, root: [rootKeys[v - 1]!], release: [m1, m2, m3], releaseThreshold: 2, hub: [hub] });
    chain.push(signed('root', doc, v === 1 ? [r1] : [rootKeys[v - 2]!, rootKeys[v - 1]!]));
  }
  return chain;
}

const releaseEnv = signed('release', releaseDoc20(), [m1, m2]);
const directiveEnv = signed(
  'directive',
  {
    _type: 'directive',
    tenant: 'bank-a',
    agent: 'agt_bench',
    seq: 7,
    issuedAt: NOW - 1000,
    expiresAt: NOW + 3600_000,
    rootVersion: 1,
    releases: [{ stack: 'payments', version: '4.2.0', digest: payloadDigest(releaseEnv) }],
  } satisfies Directive,
  [hub],
);
const facts: Facts = { agentId: 'agt_bench', tenant: 'bank-a', now: NOW, policy: NO_POLICY };
const releasePayload = payloadBytes(releaseEnv);
const releasePae = pae(releaseEnv.payloadType, releasePayload);
const directivePayload = payloadBytes(directiveEnv);

// ---- the signature loop, replicated ------------------------------------------

/** validSigners (shared/dsse.ts) line for line, with the verifier as a parameter. */
function validSignersWith(env: Envelope, keys: ReadonlyMap<string, Uint8Array>, check: Verifier): string[] {
  const message = pae(env.payloadType, payloadBytes(env));
  const counted = new Set<string>();
  const signers: string[] = [];
  for (const s of env.signatures) {
    const pub = keys.get(s.keyid);
    if (!pub || keyId(pub) !== s.keyid) continue;
    const hex = Buffer.from(pub).toString('hex');
    if (counted.has(hex)) continue;
    const sig = decodeSignature(s.sig);
    if (!sig || !check(message, sig, pub)) continue;
    counted.add(hex);
    signers.push(s.keyid);
  }
  return signers;
}

interface SigCall {
  env: Envelope;
  keys: ReadonlyMap<string, Uint8Array>;
}

/**
 * The validSigners calls verifyBundle makes, in order: root v1 by its own root
 * role; each later root by the previous and by its own root role; the
 * directive by the hub role; the release by the release role. (Roots the
 * bundle repeats are skipped by their version hint; NO_POLICY asks for no
 * co-signers.)
 */
function sigCalls(chain: Envelope[]): SigCall[] {
  const roots: Root[] = chain.map((e) => parseRoot(payloadBytes(e)));
  const calls: SigCall[] = [{ env: chain[0]!, keys: trustedKeys(roots[0]!, 'root').keys }];
  for (let i = 1; i < chain.length; i++) {
    calls.push({ env: chain[i]!, keys: trustedKeys(roots[i - 1]!, 'root').keys });
    calls.push({ env: chain[i]!, keys: trustedKeys(roots[i]!, 'root').keys });
  }
  const current = roots[roots.length - 1]!;
  calls.push({ env: directiveEnv, keys: trustedKeys(current, 'hub').keys });
  calls.push({ env: releaseEnv, keys: trustedKeys(current, 'release').keys });
  return calls;
}

/** The (message, signature, key) triples those calls hand to the verifier. */
function triples(calls: SigCall[]): [Uint8Array, Uint8Array, Uint8Array][] {
  const out: [Uint8Array, Uint8Array, Uint8Array][] = [];
  for (const c of calls) validSignersWith(c.env, c.keys, (m, s, p) => (out.push([m, s, p]), true));
  return out;
}

/** The strict JSON + schema work verifyBundle does, call for call. */
function parseWork(chain: Envelope[]): () => void {
  const payloads = chain.map(payloadBytes);
  return () => {
    parseRoot(payloads[0]!); // acceptInitialRoot
    for (let i = 1; i < payloads.length; i++) {
      parseStrictJson(payloads[i]!); // version hint in followRoots
      parseRoot(payloads[i]!); // acceptRootUpdate
    }
    for (const p of payloads) parseStrictJson(p); // the bundle's copy of the chain: hint only
    parseDirective(directivePayload);
    parseRelease(releasePayload);
  };
}

/** Envelope decoding and size caps for the bundle's envelopes. */
function envelopeWork(bundle: Bundle): () => void {
  return () => {
    for (const e of [bundle.directive, ...bundle.releases]) JSON.stringify(e).length;
    decodeEnvelope(bundle.directive);
    for (const e of bundle.releases) decodeEnvelope(e);
    for (const e of bundle.roots) decodeEnvelope(e);
  };
}

// ---- timing ------------------------------------------------------------------

const ms = (x: number) => `${fmt(x, 3)} ms`;
const p50 = (xs: number[]) => quantile(xs, 0.5);
const p99 = (xs: number[]) => quantile(xs, 0.99);

function timeOnce(fn: () => unknown): number {
  const t0 = performance.now();
  fn();
  return performance.now() - t0;
}

/**
 * Operations per second of each op, measured in alternating slices (so host
 * drift hits every op alike) for about THROUGHPUT_MS each, at most
 * THROUGHPUT_MAX_OPS each.
 */
function rates<K extends string>(ops: Record<K, () => boolean>): Record<K, number> {
  const names = Object.keys(ops) as K[];
  const n = Object.fromEntries(names.map((k) => [k, 0])) as Record<K, number>;
  const spent = Object.fromEntries(names.map((k) => [k, 0])) as Record<K, number>;
  for (const k of names) for (let i = 0; i < 10; i++) if (!ops[k]()) throw new Error(`bench ${k} failed`); // warm-up
  const slices = 15;
  for (let round = 0; round < slices; round++) {
    for (const k of names) {
      const t0 = performance.now();
      let elapsed = 0;
      while ((elapsed < THROUGHPUT_MS / slices || elapsed === 0) && n[k] < THROUGHPUT_MAX_OPS) {
        if (!ops[k]()) throw new Error(`bench ${k} failed`);
        n[k]++;
        elapsed = performance.now() - t0;
      }
      spent[k] += elapsed;
    }
  }
  return Object.fromEntries(names.map((k) => [k, (n[k] / spent[k]) * 1000])) as Record<K, number>;
}

interface ScenarioResult {
  label: string;
  checks: number;
  times: { bundle: number[]; loopNode: number[]; loopNacl: number[]; rawNode: number[]; rawNacl: number[]; parse: number[]; envelopes: number[]; relEnv: number[]; dirEnv: number[] };
  cold: number;
}

function scenario(label: string, chainLength: number): ScenarioResult {
  const chain = rootChain(chainLength);
  const state: TrustState = { roots: chain, pinnedRootFingerprint: rootFingerprint(chain[0]!), maxIssuedAt: 0, last: null, floors: {} };
  // Over the wire the bundle is JSON: decode it as the agent's socket does.
  const bundle = JSON.parse(JSON.stringify({ directive: directiveEnv, releases: [releaseEnv], roots: chain })) as Bundle;
  const calls = sigCalls(chain);
  const checks = triples(calls);
  const run = () => verifyBundle(state, bundle, facts);
  const cold = timeOnce(run);

  // The replica must agree with the real thing before its times mean anything.
  for (const c of calls) {
    const want = validSigners(c.env, c.keys).join();
    if (validSignersWith(c.env, c.keys, verifyNode).join() !== want || validSignersWith(c.env, c.keys, verifyNacl).join() !== want) throw new Error('replica disagrees with validSigners');
  }
  const a = run();
  if (a.releases.length !== 1 || a.root.version !== chainLength || Object.keys(a.releases[0]!.release.services).length !== SERVICES) throw new Error('bundle not accepted as built');

  const loop = (check: Verifier) => () => {
    for (const c of calls) validSignersWith(c.env, c.keys, check);
  };
  const raw = (check: Verifier) => () => {
    for (const [m, s, p] of checks) if (!check(m, s, p)) throw new Error('signature did not verify');
  };
  const measures = {
    bundle: run,
    loopNode: loop(verifyNode),
    loopNacl: loop(verifyNacl),
    rawNode: raw(verifyNode),
    rawNacl: raw(verifyNacl),
    parse: parseWork(chain),
    envelopes: envelopeWork(bundle),
    relEnv: () => verifyEnvelope(releaseEnv, PAYLOAD_TYPES.release, trustedKeys(a.root, 'release'), 'release'),
    dirEnv: () => verifyEnvelope(directiveEnv, PAYLOAD_TYPES.directive, trustedKeys(a.root, 'hub'), 'hub'),
  };
  type Name = keyof typeof measures;
  const names = Object.keys(measures) as Name[];
  const slow = new Set<Name>(['loopNacl', 'rawNacl']);
  const times = Object.fromEntries(names.map((n) => [n, [] as number[]])) as ScenarioResult['times'];
  for (let i = 0; i < WARMUP; i++) for (const n of names) if (!slow.has(n) || i % (3 * NACL_EVERY) === 0) measures[n]();
  for (let i = 0; i < RUNS; i++) {
    for (const n of names) if (!slow.has(n) || i % NACL_EVERY === 0) times[n].push(timeOnce(measures[n]));
  }
  return { label, checks: checks.length, times, cold };
}

// ---- run ---------------------------------------------------------------------

const t0 = performance.now();
if (verify !== verifyNode) throw new Error('shared/keys.ts no longer verifies with verifyNode; the split below assumes it');
console.log(`ferry bench:verify — node ${process.version}, ${availableParallelism()} cpus (${cpus()[0]?.model.trim() ?? '?'}), ${RUNS} runs per measure after ${WARMUP} warm-up (tweetnacl loops every ${NACL_EVERY}th run)`);
console.log(`release: ${SERVICES} services, payload ${fmt(releasePayload.length / 1024, 1)} KiB (PAE ${releasePae.length} B), 2 of 3 release signatures; directive ${directivePayload.length} B, 1 hub signature\n`);

const results = [scenario('root v1', 1), scenario('roots v1..v3', 3)];

const rows: string[][] = [['measure (p50 / p99)', ...results.map((r) => `${r.label} (${r.checks} sig checks)`)]];
const both = (xs: number[]) => `${ms(p50(xs))} / ${ms(p99(xs))}`;
const share = (xs: number[], of: number[]) => `${fmt((100 * p50(xs)) / p50(of), 0)}%`;
const add = (name: string, pick: (r: ScenarioResult) => string) => rows.push([name, ...results.map(pick)]);
add('verifyBundle', (r) => both(r.times.bundle));
add('  signature checks (verifyNode only)', (r) => `${both(r.times.rawNode)}  ${share(r.times.rawNode, r.times.bundle)}`);
add('  signature loop (validSigners, node)', (r) => `${both(r.times.loopNode)}  ${share(r.times.loopNode, r.times.bundle)}`);
add('  strict JSON + schema (all payloads)', (r) => `${both(r.times.parse)}  ${share(r.times.parse, r.times.bundle)}`);
add('  envelope decode + size caps', (r) => `${both(r.times.envelopes)}  ${share(r.times.envelopes, r.times.bundle)}`);
add('  rest (digests, keys, policy, …)', (r) => {
  const rest = p50(r.times.bundle) - p50(r.times.loopNode) - p50(r.times.parse) - p50(r.times.envelopes);
  return `${ms(rest)}  ${fmt((100 * rest) / p50(r.times.bundle), 0)}%`;
});
add('verifyEnvelope(release, 2 of 3)', (r) => both(r.times.relEnv));
add('verifyEnvelope(directive, hub)', (r) => both(r.times.dirEnv));
add('signature checks with verifyNacl', (r) => both(r.times.rawNacl));
add('signature loop with verifyNacl', (r) => both(r.times.loopNacl));
add('verifyBundle on tweetnacl (est.)', (r) => ms(p50(r.times.bundle) - p50(r.times.loopNode) + p50(r.times.loopNacl)));
add('first call (v1: cold process; v3: warm)', (r) => ms(r.cold));
console.log(table(rows));

// Strict JSON + schema on the release payload alone: the part that grows with services.
const parseJson = Array.from({ length: RUNS }, () => timeOnce(() => parseStrictJson(releasePayload)));
const parseRel = Array.from({ length: RUNS }, () => timeOnce(() => parseRelease(releasePayload)));
const nativeJson = Array.from({ length: RUNS }, () => timeOnce(() => JSON.parse(releasePayload.toString('utf8'))));

// Throughput on the release's PAE bytes.
const signer = m1;
// Peer for signNode: the same OpenSSL call with its private KeyObject built once.
const signerKey = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, Buffer.from(signer.secretKey.subarray(0, 32))]), format: 'der', type: 'pkcs8' });
const sig = signNacl(releasePae, signer.secretKey);
if (Buffer.compare(Buffer.from(signNode(releasePae, signer)), Buffer.from(sig)) !== 0) throw new Error('signers disagree');
const thr = rates({
  naclSign: () => signNacl(releasePae, signer.secretKey).length === 64,
  nodeSign: () => signNode(releasePae, signer).length === 64,
  nodeSignKeyReused: () => nodeSign(null, releasePae, signerKey).length === 64,
  naclVerify: () => verifyNacl(releasePae, sig, signer.publicKey),
  nodeVerify: () => verifyNode(releasePae, sig, signer.publicKey),
});

console.log();
console.log(
  table([
    [`release payload (${fmt(releasePayload.length / 1024, 1)} KiB)`, 'p50', 'p99'],
    ['parseStrictJson', ms(p50(parseJson)), ms(p99(parseJson))],
    ['parseRelease (strict JSON + schema)', ms(p50(parseRel)), ms(p99(parseRel))],
    ['peer: JSON.parse', ms(p50(nativeJson)), ms(p99(nativeJson))],
  ]),
);
console.log();
console.log(
  table([
    [`Ed25519 on release PAE (${releasePae.length} B)`, 'tweetnacl', 'node (OpenSSL)', 'node/tweetnacl'],
    ['sign /s (signNode builds a KeyObject per call)', fmt(thr.naclSign, 0), fmt(thr.nodeSign, 0), `${fmt(thr.nodeSign / thr.naclSign, 1)}x`],
    ['sign /s, node KeyObject built once (peer)', '', fmt(thr.nodeSignKeyReused, 0), `${fmt(thr.nodeSignKeyReused / thr.naclSign, 1)}x`],
    ['verify /s (node KeyObject cached)', fmt(thr.naclVerify, 0), fmt(thr.nodeVerify, 0), `${fmt(thr.nodeVerify / thr.naclVerify, 1)}x`],
  ]),
);

console.log();
for (const r of results) {
  const b = r.times.bundle;
  const est = p50(b) - p50(r.times.loopNode) + p50(r.times.loopNacl);
  console.log(`directive verify (${r.label}) p50 ${fmt(p50(b), 2)} ms, p99 ${fmt(p99(b), 2)} ms (${SERVICES} services, ${r.checks} sigs)`);
  console.log(`  signatures ${share(r.times.rawNode, b)} of p50 (${fmt(p50(r.times.rawNode) / r.checks, 3)} ms per check), strict JSON + schema ${share(r.times.parse, b)}, envelope decode ${share(r.times.envelopes, b)}`);
  console.log(`  on tweetnacl: p50 ≈ ${fmt(est, 2)} ms, ${fmt(est / p50(b), 1)}x the node verifier (signature loop ${fmt(p50(r.times.loopNacl) / p50(r.times.loopNode), 1)}x)`);
}
console.log(`v1..v3 / v1 verifyBundle p50 = ${fmt(p50(results[1]!.times.bundle) / p50(results[0]!.times.bundle), 2)}x`);
console.log(`parseRelease / JSON.parse p50 = ${fmt(p50(parseRel) / p50(nativeJson), 1)}x; schema share of parseRelease ${fmt((100 * (p50(parseRel) - p50(parseJson))) / p50(parseRel), 0)}%`);
console.log(`sign node/tweetnacl = ${fmt(thr.nodeSign / thr.naclSign, 1)}x`);
console.log(`verify node/tweetnacl = ${fmt(thr.nodeVerify / thr.naclVerify, 1)}x`);
console.log(`\ntook ${fmt((performance.now() - t0) / 1000, 1)} s`);

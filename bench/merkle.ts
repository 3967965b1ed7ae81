// Merkle audit-log figures: a 1,000,000-leaf tree built by appending, proof
// generation and verification, full-log recomputation, and the RFC 6962
// recursive definition (recompute everything per request) as the peer.
//   node dist/bench/merkle.js [leaves=1000000] [samples=1000]

import { randomBytes, randomInt } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import {
  MapSubtreeCache,
  MerkleTree,
  consistencyProof,
  inclusionProof,
  leafHash,
  nodeHash,
  rootAt,
  rootFromLeafHashes,
  subtreeReader,
  verifyConsistency,
  verifyInclusion,
} from '../shared/merkle.js';
import { fmt, quantile, table } from './lib/report.js';

const N = Number(process.argv[2] ?? 1_000_000);
const SAMPLES = Number(process.argv[3] ?? 1000);
const NAIVE_N = 2 ** 16;

/** [result, wall ms, process CPU ms]; CPU time is the steadier figure on a busy host. */
function time<T>(fn: () => T): [T, number, number] {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const out = fn();
  const c = process.cpuUsage(c0);
  return [out, performance.now() - t0, (c.user + c.system) / 1000];
}

/** Median wall ms of `runs` calls, for calls too quick to time once. */
function median(runs: number, fn: () => unknown): number {
  return quantile(sample(runs, fn), 0.5);
}

/** Per-call times in ms over `count` calls of fn(i). */
function sample(count: number, fn: (i: number) => void): number[] {
  const out: number[] = [];
  for (let i = 0; i < count; i++) out.push(time(() => fn(i))[1]);
  return out;
}

// RFC 6962 §2.1 verbatim, over leaf hashes, by index range instead of slices.
function split(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}
function naiveRoot(l: Buffer[], lo: number, hi: number): Buffer {
  if (hi - lo === 1) return l[lo]!;
  const k = split(hi - lo);
  return nodeHash(naiveRoot(l, lo, lo + k), naiveRoot(l, lo + k, hi));
}
function naivePath(l: Buffer[], m: number, lo: number, hi: number): Buffer[] {
  if (hi - lo <= 1) return [];
  const k = split(hi - lo);
  return m < lo + k
    ? [...naivePath(l, m, lo, lo + k), naiveRoot(l, lo + k, hi)]
    : [...naivePath(l, m, lo + k, hi), naiveRoot(l, lo, lo + k)];
}

const ms = (x: number): string => `${fmt(x, 3)} ms`;
const wallCpu = (wall: number, cpu: number): string => `${fmt(wall, 0)} ms (cpu ${fmt(cpu, 0)})`;
const us = (x: number): string => `${fmt(x * 1000, 1)} µs`;
const p = (xs: number[], f: (x: number) => string = us): string => `${f(quantile(xs, 0.5))} / ${f(quantile(xs, 0.99))}`;
const bytes = (lens: number[]): string => `${fmt(quantile(lens, 0.5) * 32, 0)} B (max ${fmt(Math.max(...lens) * 32, 0)})`;

const data = randomBytes(64 * N);
const leafData = (i: number): Buffer => data.subarray(64 * i, 64 * (i + 1));
const rows: string[][] = [['measure', `n = ${N.toLocaleString('en-US')}`, 'note']];

// Append: leaf hashing included (what the hub does per audit entry), then tree work alone.
const tree = new MerkleTree();
const [, appendMs, appendCpu] = time(() => {
  for (let i = 0; i < N; i++) tree.appendData(leafData(i));
});
const leaves = Array.from({ length: N }, (_, i) => tree.leaf(i));
const [, appendHashMs, appendHashCpu] = time(() => MerkleTree.fromLeafHashes(leaves));
const rate = (wall: number, cpu: number): string => `${fmt(N / (wall / 1000), 0)} leaves/s (cpu ${fmt(N / (cpu / 1000), 0)})`;
rows.push(['append (hash leaf + tree)', rate(appendMs, appendCpu), `${fmt(appendMs, 0)} ms total`]);
rows.push(['append (leaf hash given)', rate(appendHashMs, appendHashCpu), `${fmt(appendHashMs, 0)} ms total`]);

const root = tree.root();
const rootMs = median(101, () => tree.root());
rows.push(['root of cached tree (median)', ms(rootMs), 'O(log n) hashes']);

// Inclusion proofs.
const idx = Array.from({ length: SAMPLES }, () => randomInt(N));
const proofs: Buffer[][] = [];
const incGen = sample(SAMPLES, (i) => proofs.push(tree.inclusionProof(idx[i]!)));
const incVer = sample(SAMPLES, (i) => {
  if (!verifyInclusion(leaves[idx[i]!]!, idx[i]!, N, proofs[i]!, root)) throw new Error('inclusion failed');
});
rows.push(['inclusion proof gen p50/p99', p(incGen), `${SAMPLES} random leaves`]);
rows.push(['inclusion verify p50/p99', p(incVer), '']);
rows.push(['inclusion proof size', bytes(proofs.map((x) => x.length)), '']);

// Consistency proofs from a random older size to N.
const olds = Array.from({ length: SAMPLES }, () => 1 + randomInt(N - 1));
const oldRoots = olds.map((m) => tree.root(m));
const cproofs: Buffer[][] = [];
const conGen = sample(SAMPLES, (i) => cproofs.push(tree.consistencyProof(olds[i]!, N)));
const conVer = sample(SAMPLES, (i) => {
  if (!verifyConsistency(olds[i]!, N, oldRoots[i]!, root, cproofs[i]!)) throw new Error('consistency failed');
});
rows.push(['consistency proof gen p50/p99', p(conGen), 'random m, n = N']);
rows.push(['consistency verify p50/p99', p(conVer), '']);
rows.push(['consistency proof size', bytes(cproofs.map((x) => x.length)), '']);

// A leaf store with a subtree cache (the shape a sqlite-backed hub would use).
// Scoped so its million-entry Map is garbage before the timings below.
{
  const store = subtreeReader((i) => leaves[i]!, new MapSubtreeCache());
  const [, warmMs, warmCpu] = time(() => rootAt(N, store));
  const storeGen = sample(SAMPLES, (i) => inclusionProof(idx[i]!, N, store));
  const storeCon = sample(SAMPLES, (i) => consistencyProof(olds[i]!, N, store));
  rows.push(['leaf store + Map cache: warm-up', wallCpu(warmMs, warmCpu), 'one-time O(n)']);
  rows.push(['leaf store: inclusion gen p50/p99', p(storeGen), '']);
  rows.push(['leaf store: consistency gen p50/p99', p(storeCon), '']);
}

// Verifying the whole log: rehash every entry and recompute the root.
const [full, fullMs, fullCpu] = time(() => rootFromLeafHashes(Array.from({ length: N }, (_, i) => leafHash(leafData(i)))));
if (!full.equals(root)) throw new Error('full recompute disagrees');
const [, foldMs, foldCpu] = time(() => rootFromLeafHashes(leaves));
const [naive, naiveMs, naiveCpu] = time(() => naiveRoot(leaves, 0, N));
if (!naive.equals(root)) throw new Error('naive root disagrees');
rows.push(['verify whole log (rehash entries)', wallCpu(fullMs, fullCpu), 'leafHash × n + rootFromLeafHashes']);
rows.push(['root from leaf hashes (fold)', wallCpu(foldMs, foldCpu), '']);
rows.push(['root, naive recursive MTH', wallCpu(naiveMs, naiveCpu), `${fmt(naiveMs / rootMs, 0)}× cached`]);

// Naive proof generation: the RFC definition recomputes every sibling subtree.
const naiveOne = sample(3, () => naivePath(leaves, randomInt(N), 0, N));
rows.push(['inclusion gen, naive (3 samples)', p(naiveOne, ms), `${fmt(quantile(naiveOne, 0.5) / quantile(incGen, 0.5), 0)}× cached p50`]);
console.log(table(rows));

const small = leaves.slice(0, NAIVE_N);
const smallTree = MerkleTree.fromLeafHashes(small);
const sIdx = Array.from({ length: 100 }, () => randomInt(NAIVE_N));
const sCached = sample(sIdx.length, (i) => smallTree.inclusionProof(sIdx[i]!));
const sNaive = sample(sIdx.length, (i) => naivePath(small, sIdx[i]!, 0, NAIVE_N));
const sRoot = median(101, () => smallTree.root());
const sNaiveRoot = median(11, () => naiveRoot(small, 0, NAIVE_N));
console.log();
console.log(
  table([
    ['peer: naive RFC 6962 recursion', 'naive', 'cached tree', 'ratio'],
    [`inclusion gen p50, n = 2^16`, ms(quantile(sNaive, 0.5)), ms(quantile(sCached, 0.5)), `${fmt(quantile(sNaive, 0.5) / quantile(sCached, 0.5), 0)}×`],
    [`root, n = 2^16`, ms(sNaiveRoot), ms(sRoot), `${fmt(sNaiveRoot / sRoot, 0)}×`],
    [`root, n = ${N.toLocaleString('en-US')}`, ms(naiveMs), ms(rootMs), `${fmt(naiveMs / rootMs, 0)}×`],
  ]),
);
const mem = process.memoryUsage();
console.log(`\nrss ${fmt(mem.rss / 2 ** 20, 0)} MiB, array buffers ${fmt(mem.arrayBuffers / 2 ** 20, 0)} MiB (tree levels ≈ ${fmt((2 * N * 32) / 2 ** 20, 0)} MiB)`);

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  EMPTY_ROOT,
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
} from '../../shared/merkle.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const unhex = (s: string): Buffer => Buffer.from(s, 'hex');

// RFC 6962 §2.1, transcribed literally, over leaf data.
function split(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}
function mth(d: Buffer[]): Buffer {
  if (d.length === 0) return createHash('sha256').digest();
  if (d.length === 1) return leafHash(d[0]!);
  const k = split(d.length);
  return nodeHash(mth(d.slice(0, k)), mth(d.slice(k)));
}
function path(m: number, d: Buffer[]): Buffer[] {
  if (d.length <= 1) return [];
  const k = split(d.length);
  return m < k ? [...path(m, d.slice(0, k)), mth(d.slice(k))] : [...path(m - k, d.slice(k)), mth(d.slice(0, k))];
}
function subproof(m: number, d: Buffer[], b: boolean): Buffer[] {
  if (m === d.length) return b ? [] : [mth(d)];
  const k = split(d.length);
  return m <= k
    ? [...subproof(m, d.slice(0, k), b), mth(d.slice(k))]
    : [...subproof(m - k, d.slice(k), false), mth(d.slice(0, k))];
}

const N = 70;
const DATA = Array.from({ length: N }, (_, i) => Buffer.from(`audit entry ${i}`));
const LEAVES = DATA.map(leafHash);
const ROOTS = Array.from({ length: N + 1 }, (_, n) => mth(DATA.slice(0, n)));
const TREE = MerkleTree.fromLeafHashes(LEAVES);
const leafAt = (i: number): Buffer => LEAVES[i]!;

const flipped = (proof: Buffer[], node: number, byte: number): Buffer[] =>
  proof.map((p, j) => (j === node ? Buffer.from(p.map((x, k) => (k === byte ? x ^ 0x01 : x))) : p));
const without = (proof: Buffer[], node: number): Buffer[] => proof.filter((_, j) => j !== node);

test('hashing primitives match RFC 6962 and SHA-256', () => {
  assert.equal(hex(EMPTY_ROOT), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  assert.equal(hex(leafHash(Buffer.alloc(0))), '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d');
  const [a, b] = [leafHash(Buffer.from('a')), leafHash(Buffer.from('b'))];
  const expected = createHash('sha256').update(Buffer.concat([Buffer.from([1]), a, b])).digest();
  assert.deepEqual(nodeHash(a, b), expected);
  const [x, y] = [Buffer.from('left'), Buffer.from('and right')];
  assert.deepEqual(nodeHash(x, y), createHash('sha256').update(Buffer.from([1])).update(x).update(y).digest());
  assert.notDeepEqual(nodeHash(a, b), nodeHash(b, a));
});

test('roots agree with the recursive definition for n = 0..70, by every route', () => {
  const cached = subtreeReader(leafAt, new MapSubtreeCache());
  for (let n = 0; n <= N; n++) {
    const want = hex(ROOTS[n]!);
    assert.equal(hex(rootFromLeafHashes(LEAVES.slice(0, n))), want, `rootFromLeafHashes ${n}`);
    assert.equal(hex(TREE.root(n)), want, `MerkleTree.root(${n})`);
    assert.equal(hex(rootAt(n, leafAt)), want, `rootAt uncached ${n}`);
    assert.equal(hex(rootAt(n, cached)), want, `rootAt cached ${n}`);
  }
});

test('appending one leaf at a time gives the same roots as rootFromLeafHashes', () => {
  const t = new MerkleTree();
  assert.deepEqual(t.root(), EMPTY_ROOT);
  const leaves = Array.from({ length: 600 }, (_, i) => leafHash(Buffer.from([i & 0xff, i >> 8])));
  for (const [i, h] of leaves.entries()) {
    assert.equal(t.append(h), i);
    assert.equal(t.size, i + 1);
    assert.deepEqual(t.root(), rootFromLeafHashes(leaves.slice(0, i + 1)), `size ${i + 1}`);
  }
  assert.deepEqual(t.leaf(599), leaves[599]);
  // Historical roots are still reachable from the grown tree.
  assert.deepEqual(t.root(300), rootFromLeafHashes(leaves.slice(0, 300)));
  assert.equal(t.appendData(Buffer.from('x')), 600);
  assert.deepEqual(t.leaf(600), leafHash(Buffer.from('x')));
});

test('Certificate Transparency reference vectors', () => {
  const data = ['', '00', '10', '2021', '3031', '40414243', '5051525354555657', '606162636465666768696a6b6c6d6e6f'].map(unhex);
  const roots = [
    'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
    'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
    'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
    'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
    '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
    'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
    '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
  ];
  const t = MerkleTree.fromLeafHashes(data.map(leafHash));
  for (let n = 0; n <= 8; n++) assert.equal(hex(t.root(n)), roots[n], `root ${n}`);

  const inclusion: [number, number, string[]][] = [
    [0, 1, []],
    [0, 8, ['96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7', '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e', '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4']],
    [5, 8, ['bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b', 'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0', 'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7']],
    [2, 3, ['fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125']],
    [1, 5, ['6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d', '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e', 'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b']],
  ];
  for (const [i, n, want] of inclusion) {
    assert.deepEqual(t.inclusionProof(i, n).map(hex), want, `inclusion ${i}/${n}`);
    assert.ok(verifyInclusion(t.leaf(i), i, n, want.map(unhex), unhex(roots[n]!)));
  }

  const consistency: [number, number, string[]][] = [
    [1, 1, []],
    [1, 8, ['96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7', '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e', '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4']],
    [6, 8, ['0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a', 'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0', 'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7']],
    [2, 5, ['5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e', 'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b']],
  ];
  for (const [m, n, want] of consistency) {
    assert.deepEqual(t.consistencyProof(m, n).map(hex), want, `consistency ${m}->${n}`);
    assert.ok(verifyConsistency(m, n, unhex(roots[m]!), unhex(roots[n]!), want.map(unhex)));
  }
});

test('inclusion proofs: every (index, size) up to 70 matches RFC 6962 PATH and verifies; tampering fails', () => {
  const cached = subtreeReader(leafAt, new MapSubtreeCache());
  let checked = 0;
  for (let size = 1; size <= N; size++) {
    const root = ROOTS[size]!;
    for (let index = 0; index < size; index++) {
      const leaf = leafAt(index);
      const proof = TREE.inclusionProof(index, size);
      const want = path(index, DATA.slice(0, size)).map(hex);
      assert.deepEqual(proof.map(hex), want, `PATH ${index}/${size}`);
      assert.deepEqual(inclusionProof(index, size, leafAt).map(hex), want);
      assert.deepEqual(inclusionProof(index, size, cached).map(hex), want);
      assert.ok(verifyInclusion(leaf, index, size, proof, root), `verify ${index}/${size}`);

      const bad = (p: Buffer[], i = index, n = size, r = root, l = leaf): void =>
        assert.equal(verifyInclusion(l, i, n, p, r), false, `tampered proof accepted at ${index}/${size}`);
      for (let j = 0; j < proof.length; j++) {
        for (const byte of [0, 13, 31]) bad(flipped(proof, j, byte));
        bad(without(proof, j));
      }
      bad([...proof, leaf]);
      bad([root, ...proof]);
      if (size > 1) bad(proof, index, size, root, leafAt((index + 1) % size));
      if (index > 0) bad(proof, index - 1);
      if (index + 1 < size) bad(proof, index + 1);
      if (size < N) bad(proof, index, size + 1, ROOTS[size + 1]);
      if (size - 1 > index) bad(proof, index, size - 1, ROOTS[size - 1]);
      bad(proof, index, size, flipped([root], 0, 5)[0]);
      checked++;
    }
  }
  assert.equal(checked, (N * (N + 1)) / 2);
});

test('consistency proofs: every 1 <= m <= n <= 70 matches RFC 6962 PROOF and verifies; tampering fails', () => {
  const cached = subtreeReader(leafAt, new MapSubtreeCache());
  let checked = 0;
  for (let n = 1; n <= N; n++) {
    for (let m = 1; m <= n; m++) {
      const [rm, rn] = [ROOTS[m]!, ROOTS[n]!];
      const proof = TREE.consistencyProof(m, n);
      const want = subproof(m, DATA.slice(0, n), true).map(hex);
      assert.deepEqual(proof.map(hex), want, `PROOF ${m}->${n}`);
      assert.deepEqual(consistencyProof(m, n, leafAt).map(hex), want);
      assert.deepEqual(consistencyProof(m, n, cached).map(hex), want);
      if (m === n) assert.deepEqual(proof, []);
      assert.ok(verifyConsistency(m, n, rm, rn, proof), `verify ${m}->${n}`);

      const bad = (p: Buffer[], a = m, b = n, ra = rm, rb = rn): void =>
        assert.equal(verifyConsistency(a, b, ra, rb, p), false, `tampered proof accepted at ${m}->${n}`);
      for (let j = 0; j < proof.length; j++) {
        for (const byte of [0, 13, 31]) bad(flipped(proof, j, byte));
        bad(without(proof, j));
      }
      bad([...proof, rm]);
      bad([rm, ...proof]);
      bad(proof, m, n, flipped([rm], 0, 7)[0]);
      bad(proof, m, n, rm, flipped([rn], 0, 7)[0]);
      if (m !== n) bad(proof, m, n, rn, rm);
      if (m > 1) bad(proof, m - 1, n, ROOTS[m - 1]);
      if (m < n) bad(proof, m + 1, n, ROOTS[m + 1]);
      if (n < N) bad(proof, m, n + 1, rm, ROOTS[n + 1]);
      if (n > m) bad(proof, m, n - 1, rm, ROOTS[n - 1]);
      checked++;
    }
  }
  assert.equal(checked, (N * (N + 1)) / 2);
});

test('verifiers return false, never throw, on hostile input', () => {
  const [i, n] = [5, 13];
  const proof = TREE.inclusionProof(i, n);
  const root = ROOTS[n]!;
  const leaf = leafAt(i);
  const odd: unknown[] = [-1, 1.5, NaN, Infinity, 2 ** 53, '5', null, undefined, {}];
  const inc = (l: unknown, a: unknown, b: unknown, p: unknown, r: unknown): boolean =>
    (verifyInclusion as (...x: unknown[]) => boolean)(l, a, b, p, r);
  for (const x of odd) {
    assert.equal(inc(leaf, x, n, proof, root), false);
    assert.equal(inc(leaf, i, x, proof, root), false);
  }
  assert.equal(inc(leaf, n, n, proof, root), false);
  assert.equal(inc(leaf, n + 3, n, proof, root), false);
  assert.equal(inc(leaf, 0, 0, [], EMPTY_ROOT), false);
  for (const x of [Buffer.alloc(31), Buffer.alloc(33), 'ab', null, [1, 2]]) {
    assert.equal(inc(x, i, n, proof, root), false);
    assert.equal(inc(leaf, i, n, proof, x), false);
    assert.equal(inc(leaf, i, n, [...proof.slice(1), x], root), false);
  }
  assert.equal(inc(leaf, i, n, 'not a proof', root), false);
  const sparse: Buffer[] = [];
  sparse[proof.length - 1] = proof[proof.length - 1]!;
  assert.equal(inc(leaf, i, n, sparse, root), false);
  assert.equal(inc(leaf, i, n, null, root), false);
  assert.equal(inc(leaf, i, n, Array(1000).fill(leaf), root), false);

  const cproof = TREE.consistencyProof(6, n);
  const con = (a: unknown, b: unknown, ra: unknown, rb: unknown, p: unknown): boolean =>
    (verifyConsistency as (...x: unknown[]) => boolean)(a, b, ra, rb, p);
  const r6 = ROOTS[6]!;
  for (const x of odd) {
    assert.equal(con(x, n, r6, root, cproof), false);
    assert.equal(con(6, x, r6, root, cproof), false);
  }
  assert.equal(con(0, n, EMPTY_ROOT, root, []), false, 'm == 0');
  assert.equal(con(0, 0, EMPTY_ROOT, EMPTY_ROOT, []), false);
  assert.equal(con(n, 6, root, r6, cproof), false, 'm > n');
  assert.equal(con(6, n, r6, root, []), false, 'missing proof');
  assert.equal(con(6, 6, r6, r6, [r6]), false, 'm == n with a non-empty proof');
  assert.equal(con(6, 6, r6, root, []), false, 'm == n with different roots');
  for (const x of [Buffer.alloc(31), Buffer.alloc(33), 'ab', null, [1, 2]]) {
    assert.equal(con(6, n, x, root, cproof), false);
    assert.equal(con(6, n, r6, x, cproof), false);
    assert.equal(con(6, n, r6, root, [...cproof.slice(1), x]), false);
  }
  assert.equal(con(6, n, r6, root, 'not a proof'), false);
  const holes: Buffer[] = [];
  holes[cproof.length - 1] = cproof[cproof.length - 1]!;
  assert.equal(con(6, n, r6, root, holes), false);
  assert.equal(con(6, n, r6, root, Array(1000).fill(r6)), false);
});

test('generators refuse impossible requests', () => {
  assert.throws(() => TREE.inclusionProof(N, N), RangeError);
  assert.throws(() => TREE.inclusionProof(0, N + 1), RangeError);
  assert.throws(() => inclusionProof(-1, 5, leafAt), RangeError);
  assert.throws(() => inclusionProof(0, 0, leafAt), RangeError);
  assert.throws(() => TREE.consistencyProof(0, 5), RangeError);
  assert.throws(() => TREE.consistencyProof(6, 5), RangeError);
  assert.throws(() => TREE.consistencyProof(1, N + 1), RangeError);
  assert.throws(() => TREE.root(N + 1), RangeError);
  assert.throws(() => TREE.perfect(1, N / 2), RangeError);
  assert.throws(() => new MerkleTree().append(Buffer.alloc(31)), RangeError);
  assert.throws(() => rootFromLeafHashes([LEAVES[0]!, Buffer.alloc(33)]), RangeError);
});

test('a cached leaf store reads O(log n) leaves per proof once warm, and stays valid as the log grows', () => {
  const leaves = Array.from({ length: 1024 }, (_, i) => leafHash(Buffer.from(`e${i}`)));
  let reads = 0;
  const counted = (i: number): Buffer => {
    reads++;
    return leaves[i]!;
  };
  const reader = subtreeReader(counted, new MapSubtreeCache());
  assert.deepEqual(rootAt(1000, reader), rootFromLeafHashes(leaves.slice(0, 1000)));
  assert.ok(reads <= 1000, `warm-up read ${reads} leaves`);
  for (const index of [0, 1, 511, 777, 999]) {
    reads = 0;
    const proof = inclusionProof(index, 1000, reader);
    assert.ok(reads <= 2, `proof for ${index} read ${reads} leaves`);
    assert.ok(verifyInclusion(leaves[index]!, index, 1000, proof, rootAt(1000, reader)));
  }
  // Growing the log needs no cache maintenance: old blocks are still valid.
  reads = 0;
  const proof = consistencyProof(1000, 1024, reader);
  assert.ok(reads <= 24 + 10, `growth read ${reads} leaves`);
  assert.ok(verifyConsistency(1000, 1024, rootAt(1000, reader), rootFromLeafHashes(leaves), proof));
});

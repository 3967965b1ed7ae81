// RFC 6962 / RFC 9162 Merkle tree hashing, proofs and proof verification for
// the audit log. SHA-256; leaf = H(0x00 || data), node = H(0x01 || l || r);
// the empty tree's root is H(""). Sizes and indexes are non-negative safe
// integers; no 32-bit bit operations are used, so logs may exceed 2^32.
//
// Proof generation reads only *perfect* subtrees: complete, aligned blocks
// of 2^level leaves starting at index·2^level. Every node of an RFC 6962
// tree of any size is a right fold of O(log n) such blocks, so a proof costs
// O(log n) block lookups plus O(log n) hashes for the one ragged right edge.

import { createHash, hash } from 'node:crypto';

export const HASH_SIZE = 32;
const LEAF_PREFIX = Buffer.from([0x00]);
/** 0x01 || left || right, reused: hashing is synchronous, so never shared. */
const NODE_INPUT = Buffer.from([0x01, ...new Uint8Array(2 * HASH_SIZE)]);

/** Root of the empty tree: SHA-256 of the empty string. */
export const EMPTY_ROOT: Buffer = createHash('sha256').digest();

// One-shot crypto.hash is ~1.6x faster than createHash for 65-byte inputs.
export function leafHash(data: Uint8Array): Buffer {
  return hash('sha256', Buffer.concat([LEAF_PREFIX, data]), 'buffer');
}

export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  if (left.length !== HASH_SIZE || right.length !== HASH_SIZE) {
    return createHash('sha256').update(NODE_INPUT.subarray(0, 1)).update(left).update(right).digest();
  }
  NODE_INPUT.set(left, 1);
  NODE_INPUT.set(right, 1 + HASH_SIZE);
  return hash('sha256', NODE_INPUT, 'buffer');
}

/** Largest power of two strictly less than n (n >= 2). */
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

function isSize(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
}

function isHash(h: unknown): h is Uint8Array {
  return h instanceof Uint8Array && h.length === HASH_SIZE;
}

/** Unlike Array#every, also rejects holes in sparse arrays. */
function isHashList(p: unknown): p is readonly Uint8Array[] {
  if (!Array.isArray(p)) return false;
  for (let i = 0; i < p.length; i++) if (!isHash(p[i])) return false;
  return true;
}

/**
 * MTH(D[n]) of RFC 6962 §2.1, in O(n) hashes. Pairing each level left to
 * right and carrying a lone last node up unchanged builds the same
 * left-balanced tree as the recursive definition with k = largest 2^i < n.
 */
export function rootFromLeafHashes(leaves: readonly Uint8Array[]): Buffer {
  if (!isHashList(leaves)) throw new RangeError(`leaf hashes are ${HASH_SIZE} bytes each`);
  if (leaves.length === 0) return Buffer.from(EMPTY_ROOT);
  // One contiguous buffer, folded in place: parent i overwrites slot i only
  // after its children 2i and 2i+1 (both >= i) have been read.
  const buf = Buffer.alloc(leaves.length * HASH_SIZE);
  leaves.forEach((h, i) => buf.set(h, i * HASH_SIZE));
  const at = (i: number): Buffer => buf.subarray(i * HASH_SIZE, (i + 1) * HASH_SIZE);
  for (let width = leaves.length; width > 1; width = Math.ceil(width / 2)) {
    for (let i = 0; 2 * i + 1 < width; i++) buf.set(nodeHash(at(2 * i), at(2 * i + 1)), i * HASH_SIZE);
    if (width % 2 === 1) at(width - 1).copy(buf, ((width - 1) / 2) * HASH_SIZE);
  }
  return Buffer.from(at(0));
}

/** Read access to perfect subtrees; proofs and roots need nothing else. */
export interface SubtreeReader {
  /**
   * MTH of leaves [index·2^level, (index+1)·2^level); level 0 is the leaf
   * hash. Callers only ask for blocks that lie wholly inside the tree.
   */
  perfect(level: number, index: number): Buffer;
}

/** Optional memo of perfect-subtree hashes, e.g. a Map or a sqlite table. */
export interface SubtreeCache {
  get(level: number, index: number): Uint8Array | undefined;
  set(level: number, index: number, hash: Buffer): void;
}

/** In-memory SubtreeCache; one Map per level. */
export class MapSubtreeCache implements SubtreeCache {
  private readonly levels: Map<number, Uint8Array>[] = [];
  get(level: number, index: number): Uint8Array | undefined {
    return this.levels[level]?.get(index);
  }
  set(level: number, index: number, hash: Buffer): void {
    (this.levels[level] ??= new Map()).set(index, hash);
  }
}

/**
 * A reader over a store of leaf hashes. Perfect blocks never change once
 * complete, so cached entries stay valid as the log grows; with a cache,
 * each block is hashed at most once over the cache's lifetime (O(n) to warm,
 * then O(log n) per proof, and appends need no cache maintenance).
 * Without a cache a proof costs O(n) leaf reads.
 */
export function subtreeReader(leaf: (index: number) => Uint8Array, cache?: SubtreeCache): SubtreeReader {
  const perfect = (level: number, index: number): Buffer => {
    if (level === 0) return Buffer.from(leaf(index));
    const hit = cache?.get(level, index);
    if (hit) return Buffer.from(hit);
    const h = nodeHash(perfect(level - 1, index * 2), perfect(level - 1, index * 2 + 1));
    cache?.set(level, index, h);
    return Buffer.from(h);
  };
  return { perfect };
}

/** A leaf-hash function, or a reader of perfect subtrees. */
export type TreeSource = SubtreeReader | ((index: number) => Uint8Array);

function asReader(src: TreeSource): SubtreeReader {
  return typeof src === 'function' ? subtreeReader(src) : src;
}

/**
 * MTH(D[start:end]). Requires start to be a multiple of every power of two
 * <= end - start, which holds for every node of an RFC 6962 tree; the range
 * then splits into perfect blocks of strictly decreasing size, and MTH is
 * their right fold.
 */
function rangeHash(t: SubtreeReader, start: number, end: number): Buffer {
  if (end === start) return Buffer.from(EMPTY_ROOT);
  const blocks: Buffer[] = [];
  let pos = start;
  let rest = end - start;
  let size = 1;
  let level = 0;
  while (size * 2 <= rest) {
    size *= 2;
    level++;
  }
  for (; rest > 0; size /= 2, level--) {
    if (rest < size) continue;
    blocks.push(t.perfect(level, pos / size));
    pos += size;
    rest -= size;
  }
  let acc = blocks.pop()!;
  while (blocks.length > 0) acc = nodeHash(blocks.pop()!, acc);
  return acc;
}

/** Root of the first `size` leaves. */
export function rootAt(size: number, src: TreeSource): Buffer {
  if (!isSize(size)) throw new RangeError(`bad tree size ${size}`);
  return rangeHash(asReader(src), 0, size);
}

/** Audit path PATH(index, D[size]) of RFC 6962 §2.1.1, leaf end first. */
export function inclusionProof(index: number, size: number, src: TreeSource): Buffer[] {
  if (!isSize(size) || !isSize(index) || index >= size) {
    throw new RangeError(`no leaf ${index} in a tree of size ${size}`);
  }
  const t = asReader(src);
  const path: Buffer[] = [];
  // Invariant: [lo, hi) is the RFC 6962 subtree holding `index`.
  let lo = 0;
  let hi = size;
  while (hi - lo > 1) {
    const k = splitPoint(hi - lo);
    if (index < lo + k) {
      path.push(rangeHash(t, lo + k, hi));
      hi = lo + k;
    } else {
      path.push(rangeHash(t, lo, lo + k));
      lo += k;
    }
  }
  return path.reverse();
}

/** PROOF(m, D[n]) of RFC 6962 §2.1.2 (SUBPROOF with the b flag); [] when m == n. */
export function consistencyProof(m: number, n: number, src: TreeSource): Buffer[] {
  if (!isSize(m) || !isSize(n) || m < 1 || m > n) {
    throw new RangeError(`no consistency proof from size ${m} to ${n}`);
  }
  const t = asReader(src);
  const proof: Buffer[] = [];
  // Invariant: [lo, hi) is an RFC 6962 subtree with lo < m <= hi;
  // `whole` is the b flag: D[0:m] is still a subtree the verifier knows.
  let lo = 0;
  let hi = n;
  let whole = true;
  while (m !== hi) {
    const k = splitPoint(hi - lo);
    if (m - lo <= k) {
      proof.push(rangeHash(t, lo + k, hi));
      hi = lo + k;
    } else {
      proof.push(rangeHash(t, lo, lo + k));
      lo += k;
      whole = false;
    }
  }
  if (!whole) proof.push(rangeHash(t, lo, hi));
  return proof.reverse();
}

/**
 * Compact append-only tree: levels[k] holds, contiguously, the hashes of all
 * complete aligned blocks of 2^k leaves (level 0 = leaf hashes).
 * Invariant: levels[k].count === floor(size / 2^k). Slots are write-once.
 * Append is amortised O(1) hashes; root and proofs are O(log n).
 * Memory is about 2 × 32 bytes per leaf.
 */
export class MerkleTree implements SubtreeReader {
  private readonly levels: { buf: Buffer; count: number }[] = [];

  static fromLeafHashes(leaves: Iterable<Uint8Array>): MerkleTree {
    const t = new MerkleTree();
    for (const h of leaves) t.append(h);
    return t;
  }

  get size(): number {
    return this.levels[0]?.count ?? 0;
  }

  /** Appends a leaf hash; returns its index. */
  append(hash: Uint8Array): number {
    if (!isHash(hash)) throw new RangeError(`a leaf hash is ${HASH_SIZE} bytes`);
    const index = this.size;
    this.put(0, hash);
    // Each odd index completes a block one level up.
    for (let level = 0, i = index; i % 2 === 1; level++, i = (i - 1) / 2) {
      this.put(level + 1, nodeHash(this.slot(level, i - 1), this.slot(level, i)));
    }
    return index;
  }

  /** Hashes `data` as a leaf and appends it; returns its index. */
  appendData(data: Uint8Array): number {
    return this.append(leafHash(data));
  }

  leaf(index: number): Buffer {
    return this.perfect(0, index);
  }

  perfect(level: number, index: number): Buffer {
    const l = this.levels[level];
    if (!l || !isSize(index) || index >= l.count) {
      throw new RangeError(`no complete block ${index} at level ${level} in a tree of size ${this.size}`);
    }
    return Buffer.from(this.slot(level, index));
  }

  root(size = this.size): Buffer {
    this.checkSize(size);
    return rootAt(size, this);
  }

  inclusionProof(index: number, size = this.size): Buffer[] {
    this.checkSize(size);
    return inclusionProof(index, size, this);
  }

  consistencyProof(m: number, n = this.size): Buffer[] {
    this.checkSize(n);
    return consistencyProof(m, n, this);
  }

  private checkSize(size: number): void {
    if (!isSize(size) || size > this.size) throw new RangeError(`tree has ${this.size} leaves, not ${size}`);
  }

  /** A view, valid forever because slots are write-once. */
  private slot(level: number, index: number): Buffer {
    const buf = this.levels[level]!.buf;
    return buf.subarray(index * HASH_SIZE, (index + 1) * HASH_SIZE);
  }

  private put(level: number, hash: Uint8Array): void {
    let l = this.levels[level];
    if (!l) this.levels[level] = l = { buf: Buffer.alloc(HASH_SIZE * 64), count: 0 };
    if ((l.count + 1) * HASH_SIZE > l.buf.length) {
      const bigger = Buffer.alloc(l.buf.length * 2);
      l.buf.copy(bigger);
      l.buf = bigger;
    }
    l.buf.set(hash, l.count * HASH_SIZE);
    l.count++;
  }
}

/**
 * RFC 9162 §2.1.3.2. Never throws: malformed input of any kind is `false`.
 * `leaf` is the leaf hash, not the leaf data.
 */
export function verifyInclusion(leaf: Uint8Array, index: number, size: number, proof: readonly Uint8Array[], root: Uint8Array): boolean {
  if (!isHash(leaf) || !isHash(root) || !isSize(index) || !isSize(size) || index >= size || !isHashList(proof)) return false;
  let fn = index;
  let sn = size - 1;
  let r: Uint8Array = leaf;
  for (const p of proof) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      while (fn % 2 === 0 && fn !== 0) {
        fn /= 2;
        sn = Math.floor(sn / 2);
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && Buffer.from(r).equals(root);
}

/**
 * RFC 9162 §2.1.4.2, plus m == n (proof must be empty and roots equal).
 * m == 0 is refused: there is nothing to be consistent with. Never throws.
 */
export function verifyConsistency(m: number, n: number, rootM: Uint8Array, rootN: Uint8Array, proof: readonly Uint8Array[]): boolean {
  if (!isSize(m) || !isSize(n) || m < 1 || m > n || !isHash(rootM) || !isHash(rootN) || !isHashList(proof)) return false;
  if (m === n) return proof.length === 0 && Buffer.from(rootM).equals(rootN);
  if (proof.length === 0) return false;
  // A power-of-two old tree is itself a node of the new one; its root is implied.
  const path = isPow2(m) ? [rootM, ...proof] : proof;
  let fn = m - 1;
  let sn = n - 1;
  while (fn % 2 === 1) {
    fn = (fn - 1) / 2;
    sn = Math.floor(sn / 2);
  }
  let fr: Uint8Array = path[0]!;
  let sr: Uint8Array = path[0]!;
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      while (fn % 2 === 0 && fn !== 0) {
        fn /= 2;
        sn = Math.floor(sn / 2);
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && Buffer.from(fr).equals(rootM) && Buffer.from(sr).equals(rootN);
}

function isPow2(n: number): boolean {
  while (n > 1 && n % 2 === 0) n /= 2;
  return n === 1;
}

// Releases on the hub: immutable payloads (a stack at a version, images
// pinned by digest) and the signatures release managers upload. The hub
// checks each signature against the key it names but holds no release key;
// whether a release may go to a tenant is decided by that tenant's root.
import { randomBytes } from 'node:crypto';
import semver from 'semver';
import { FerryError } from '../shared/errors.js';
import { PAYLOAD_TYPES, pae, payloadDigest, validSigners, type Envelope } from '../shared/dsse.js';
import { decodePublicKey, decodeSignature, keyId, verify } from '../shared/keys.js';
import { DIGEST_REF, parseRelease, type Release } from '../shared/release.js';
import { trustedKeys, type Root } from '../shared/trust.js';
import type { DB } from './db.js';

interface ReleaseRow {
  id: string;
  stack: string;
  version: string;
  payload: Buffer;
  digest: string;
  created_at: number;
  created_by: string | null;
}

export interface ReleaseRecord {
  id: string;
  stack: string;
  version: string;
  digest: string;
  createdAt: number;
  release: Release;
  envelope: Envelope;
  signers: { keyid: string; at: number; by: string | null }[];
}

export class Releases {
  /** Parsed payloads by digest: a release's bytes never change once stored. */
  private readonly parsed = new Map<string, Release>();
  /** Threshold verdicts by (digest, signature count, root): signatures are only ever added. */
  private readonly verdicts = new Map<string, { met: boolean; have: number; threshold: number; signers: string[] }>();

  constructor(private readonly db: DB) {}

  /** Stores an unsigned release payload. Refuses tags, duplicates and anything not strict. */
  create(payload: Buffer, by: string | null, now: number): ReleaseRecord {
    const rel = parseRelease(payload);
    for (const [name, svc] of Object.entries(rel.services)) {
      if (!DIGEST_REF.test(svc.image)) throw new FerryError('FERRY_E_POLICY_DIGEST', `${name}: ${svc.image}`);
    }
    if (this.find(rel.stack, rel.version)) throw new FerryError('FERRY_E_RELEASE_EXISTS', `${rel.stack}@${rel.version}`);
    const id = `rel_${randomBytes(10).toString('hex')}`;
    const env: Envelope = { payloadType: PAYLOAD_TYPES.release, payload: payload.toString('base64'), signatures: [] };
    this.db
      .prepare('INSERT INTO releases (id, stack, version, payload, digest, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?)')
      .run(id, rel.stack, rel.version, payload, payloadDigest(env), now, by);
    return this.get(rel.stack, rel.version);
  }

  find(stack: string, version: string): ReleaseRecord | undefined {
    const row = this.db.prepare('SELECT * FROM releases WHERE stack = ? AND version = ?').get(stack, version) as ReleaseRow | undefined;
    return row ? this.record(row) : undefined;
  }

  get(stack: string, version: string): ReleaseRecord {
    const r = this.find(stack, version);
    if (!r) throw new FerryError('FERRY_E_NOT_FOUND', `release ${stack}@${version}`);
    return r;
  }

  byDigest(digest: string): ReleaseRecord | undefined {
    const row = this.db.prepare('SELECT * FROM releases WHERE digest = ?').get(digest) as ReleaseRow | undefined;
    return row ? this.record(row) : undefined;
  }

  list(stack?: string): ReleaseRecord[] {
    const rows = (stack ? this.db.prepare('SELECT * FROM releases WHERE stack = ?').all(stack) : this.db.prepare('SELECT * FROM releases').all()) as ReleaseRow[];
    return rows.map((r) => this.record(r)).sort((a, b) => a.stack.localeCompare(b.stack) || semver.compare(a.version, b.version));
  }

  /** Adds one key's signature after checking it verifies over this release. */
  sign(stack: string, version: string, input: { publicKey: string; sig: string }, by: string | null, now: number): ReleaseRecord {
    const rec = this.get(stack, version);
    const pub = decodePublicKey(input.publicKey);
    const sig = decodeSignature(input.sig);
    if (!sig || !verify(pae(PAYLOAD_TYPES.release, Buffer.from(rec.envelope.payload, 'base64')), sig, pub)) {
      throw new FerryError('FERRY_E_SIG_THRESHOLD', `the signature does not verify over ${stack}@${version} with that key`);
    }
    this.db
      .prepare('INSERT OR REPLACE INTO release_signatures (release_id, keyid, public_key, sig, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?)')
      .run(rec.id, keyId(pub), input.publicKey, input.sig, now, by);
    return this.get(stack, version);
  }

  /** Whether a tenant's root would accept this release, and who counted. */
  thresholdFor(rec: ReleaseRecord, root: Root): { met: boolean; have: number; threshold: number; signers: string[] } {
    // A rollout asks this once per agent for the same release: verify once per distinct input.
    const key = `${rec.digest}|${rec.envelope.signatures.map((s) => s.keyid + s.sig).join(',')}|${root.tenant}|${root.version}`;
    const hit = this.verdicts.get(key);
    if (hit) return hit;
    const keys = trustedKeys(root, 'release');
    const signers = validSigners(rec.envelope, keys.keys);
    const verdict = { met: signers.length >= keys.threshold, have: signers.length, threshold: keys.threshold, signers };
    if (this.verdicts.size > 10_000) this.verdicts.clear();
    this.verdicts.set(key, verdict);
    return verdict;
  }

  private parse(row: ReleaseRow): Release {
    let rel = this.parsed.get(row.digest);
    if (!rel) {
      rel = parseRelease(row.payload);
      if (this.parsed.size > 1000) this.parsed.clear();
      this.parsed.set(row.digest, rel);
    }
    return rel;
  }

  private record(row: ReleaseRow): ReleaseRecord {
    const sigs = this.db.prepare('SELECT keyid, sig, created_at, created_by FROM release_signatures WHERE release_id = ? ORDER BY created_at').all(row.id) as {
      keyid: string;
      sig: string;
      created_at: number;
      created_by: string | null;
    }[];
    return {
      id: row.id,
      stack: row.stack,
      version: row.version,
      digest: row.digest,
      createdAt: row.created_at,
      release: this.parse(row),
      envelope: { payloadType: PAYLOAD_TYPES.release, payload: row.payload.toString('base64'), signatures: sigs.map((s) => ({ keyid: s.keyid, sig: s.sig })) },
      signers: sigs.map((s) => ({ keyid: s.keyid, at: s.created_at, by: s.created_by })),
    };
  }
}

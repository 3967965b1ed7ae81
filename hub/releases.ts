// Releases on the hub: immutable payloads (a stack at a version, images
// pinned by digest) and the signatures release managers upload. The hub
// checks each signature against the key it names but holds no release key;
// whether a release may go to a tenant is decided by that tenant's root.
import { randomBytes } from 'node:crypto';
import semver from 'semver';
import { FerryError } from '../shared/errors.js';
import { MAX_SIGNATURES, PAYLOAD_TYPES, pae, payloadDigest, validSigners, type Envelope } from '../shared/dsse.js';
import { decodePublicKey, decodeSignature, keyId, verify } from '../shared/keys.js';
import { DIGEST_REF, parseRelease, type Release } from '../shared/release.js';
import { trustedKeys, type Root } from '../shared/trust.js';
import type { ReleaseRow } from './store/signed.js';
import type { Store } from './store/store.js';


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

  constructor(private readonly store: Store) {}

  /** Stores an unsigned release payload. Refuses tags, duplicates and anything not strict. */
  async create(payload: Buffer, by: string | null, now: number): Promise<ReleaseRecord> {
    const rel = parseRelease(payload);
    for (const [name, svc] of Object.entries(rel.services)) {
      if (!DIGEST_REF.test(svc.image)) throw new FerryError('FERRY_E_POLICY_DIGEST', `${name}: ${svc.image}`);
    }
    if (await this.store.releases.find(rel.stack, rel.version)) throw new FerryError('FERRY_E_RELEASE_EXISTS', `${rel.stack}@${rel.version}`);
    const id = `rel_${randomBytes(10).toString('hex')}`;
    const env: Envelope = { payloadType: PAYLOAD_TYPES.release, payload: payload.toString('base64'), signatures: [] };
    await this.store.releases.insert({ id, stack: rel.stack, version: rel.version, payload, digest: payloadDigest(env) }, by, now);
    return this.get(rel.stack, rel.version);
  }

  async find(stack: string, version: string): Promise<ReleaseRecord | undefined> {
    const row = await this.store.releases.find(stack, version);
    return row ? this.record(row) : undefined;
  }

  async get(stack: string, version: string): Promise<ReleaseRecord> {
    const r = await this.find(stack, version);
    if (!r) throw new FerryError('FERRY_E_NOT_FOUND', `release ${stack}@${version}`);
    return r;
  }

  async byDigest(digest: string): Promise<ReleaseRecord | undefined> {
    const row = await this.store.releases.byDigest(digest);
    return row ? this.record(row) : undefined;
  }

  /** Releases, sorted by stack then semver; with `tenants`, only those delivered to one of them. */
  async list(opts: { stack?: string; tenants?: readonly string[] | null } = {}): Promise<ReleaseRecord[]> {
    const out: ReleaseRecord[] = [];
    for (const r of await this.store.releases.list(opts)) out.push(await this.record(r));
    return out.sort((a, b) => a.stack.localeCompare(b.stack) || semver.compare(a.version, b.version));
  }

  /**
   * Adds one key's signature after checking it verifies over this release,
   * that the key is one some tenant's root names for releases (unless an
   * institution's approver uploads it: their co-signing keys live in the
   * bank's own policy, not in a root), and that the release stays within the
   * signatures an agent accepts (MAX_SIGNATURES).
   */
  async sign(
    stack: string,
    version: string,
    input: { publicKey: string; sig: string },
    keys: { named: ReadonlySet<string>; anyKey: boolean },
    by: string | null,
    now: number,
  ): Promise<ReleaseRecord> {
    const rec = await this.get(stack, version);
    const pub = decodePublicKey(input.publicKey);
    const sig = decodeSignature(input.sig);
    if (!sig || !verify(pae(PAYLOAD_TYPES.release, Buffer.from(rec.envelope.payload, 'base64')), sig, pub)) {
      throw new FerryError('FERRY_E_SIG_THRESHOLD', `the signature does not verify over ${stack}@${version} with that key`);
    }
    const id = keyId(pub);
    if (!keys.anyKey && !keys.named.has(id)) throw new FerryError('FERRY_E_SIG_UNKNOWN_KEY', `key ${id.slice(0, 12)}… on ${stack}@${version}`);
    if (!rec.envelope.signatures.some((s) => s.keyid === id) && rec.envelope.signatures.length >= MAX_SIGNATURES) {
      throw new FerryError('FERRY_E_SIG_LIMIT', `${stack}@${version} already carries ${rec.envelope.signatures.length}`);
    }
    await this.store.releases.upsertSignature(rec.id, { keyid: id, publicKey: input.publicKey, sig: input.sig }, by, now);
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

  private async record(row: ReleaseRow): Promise<ReleaseRecord> {
    const sigs = await this.store.releases.signatures(row.id);
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

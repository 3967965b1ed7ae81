// Agent bundles on the hub: an uploaded archive is checked against its own
// bundle.json (every file's digest), stored, and described by a statement
// the hub writes (version, archive digest and size, manifest digest, state
// formats, floor, the tenants it is for) — which the tenant's release role
// then signs, N of M, exactly as a release. The hub holds no release key:
// whether a tenant's agents may install a bundle is decided by that tenant's
// root (the same threshold and keys as its releases), here for the CLI's
// view and when a directive names it, and again by every agent.
import semver from 'semver';
import { AGENT_STACK, MANIFEST_FILE, checkEntries, parseAgentBundle, sha256, type AgentBundle, type BundleManifest } from '../../shared/agent-bundle.js';
import { MAX_SIGNATURES, PAYLOAD_TYPES, pae, payloadDigest, validSigners, type Envelope } from '../../shared/dsse.js';
import { FerryError } from '../../shared/errors.js';
import { decodePublicKey, decodeSignature, keyId, verify } from '../../shared/keys.js';
import { canonicalJson } from '../../shared/release.js';
import { readTarGz } from '../../shared/tar.js';
import { trustedKeys, type Root } from '../../shared/trust.js';
import type { BundleRow } from '../store/bundles.js';
import type { Store } from '../store/store.js';

export interface BundleRecord {
  version: string;
  /** The archive's sha256. */
  digest: string;
  size: number;
  statement: AgentBundle;
  /** The statement envelope (payload and the signatures so far); its payload digest is what directives name. */
  envelope: Envelope;
  statementDigest: string;
  manifest: Pick<BundleManifest, 'node' | 'stateFormat' | 'minStateFormat'> & { files: number };
  tenants: string[];
  signers: { keyid: string; at: number; by: string | null }[];
  createdAt: number;
}

export class AgentBundles {
  constructor(private readonly store: Store) {}

  /** Checks an archive, writes its statement and stores both. Call inside the audited transaction. */
  async upload(archive: Buffer, o: { tenants: string[]; floor?: string }, by: string | null, now: number): Promise<BundleRecord> {
    const entries = readTarGz(archive);
    const mf = entries.find((e) => e.path === MANIFEST_FILE);
    if (!mf?.data) throw new FerryError('FERRY_E_BUNDLE_INVALID', `no ${MANIFEST_FILE} in the archive`);
    const manifest = checkEntries(entries, sha256(mf.data));
    if (!entries.some((e) => e.path === 'dist/agent/main.js')) throw new FerryError('FERRY_E_BUNDLE_INVALID', 'the archive holds no dist/agent/main.js');
    if (o.floor && (semver.valid(o.floor) !== o.floor || semver.gt(o.floor, manifest.version))) throw new FerryError('FERRY_E_VALIDATION', `floor ${o.floor}: a semver version no higher than ${manifest.version}`);
    const tenants = [...new Set(o.tenants)].sort();
    for (const t of tenants) await this.store.fleet.tenant(t); // FERRY_E_NOT_FOUND
    if (await this.store.bundles.find(manifest.version)) throw new FerryError('FERRY_E_BUNDLE_EXISTS', `ferry-agent ${manifest.version}`);
    const digest = sha256(archive);
    if (await this.store.bundles.byDigest(digest)) throw new FerryError('FERRY_E_BUNDLE_EXISTS', `that archive (${digest}) is already uploaded`);
    const statement: AgentBundle = {
      _type: 'agent-bundle',
      version: manifest.version,
      tenants,
      archive: { sha256: digest, size: archive.length },
      manifest: sha256(mf.data),
      stateFormat: manifest.stateFormat,
      minStateFormat: manifest.minStateFormat,
      ...(o.floor ? { floor: o.floor } : {}),
      createdAt: now,
    };
    const payload = canonicalJson(statement);
    parseAgentBundle(payload); // what agents will parse
    const env: Envelope = { payloadType: PAYLOAD_TYPES.agentBundle, payload: payload.toString('base64'), signatures: [] };
    const summary = { node: manifest.node, stateFormat: manifest.stateFormat, minStateFormat: manifest.minStateFormat, files: Object.keys(manifest.files).length };
    await this.store.bundles.insert({ version: manifest.version, digest, size: archive.length, statement: payload, statement_digest: payloadDigest(env), manifest: JSON.stringify(summary) }, tenants, archive, by, now);
    return this.get(manifest.version);
  }

  async find(version: string): Promise<BundleRecord | undefined> {
    const row = await this.store.bundles.find(version);
    return row ? this.record(row) : undefined;
  }

  async get(version: string): Promise<BundleRecord> {
    const r = await this.find(version);
    if (!r) throw new FerryError('FERRY_E_NOT_FOUND', `agent bundle ${version}`);
    return r;
  }

  /** Bundles sorted by version; with `tenants`, only those for one of them. */
  async list(tenants: readonly string[] | null): Promise<BundleRecord[]> {
    const out: BundleRecord[] = [];
    for (const r of await this.store.bundles.list(tenants)) out.push(await this.record(r));
    return out.sort((a, b) => semver.compare(a.version, b.version));
  }

  /** Adds one key's signature after checking it verifies over the statement (see Releases.sign for the key rules). */
  async sign(version: string, input: { publicKey: string; sig: string }, keys: { named: ReadonlySet<string>; anyKey: boolean }, by: string | null, now: number): Promise<BundleRecord> {
    const rec = await this.get(version);
    const pub = decodePublicKey(input.publicKey);
    const sig = decodeSignature(input.sig);
    if (!sig || !verify(pae(PAYLOAD_TYPES.agentBundle, Buffer.from(rec.envelope.payload, 'base64')), sig, pub)) {
      throw new FerryError('FERRY_E_SIG_THRESHOLD', `the signature does not verify over ferry-agent ${version} with that key`);
    }
    const id = keyId(pub);
    if (!keys.anyKey && !keys.named.has(id)) throw new FerryError('FERRY_E_SIG_UNKNOWN_KEY', `key ${id.slice(0, 12)}… on ferry-agent ${version}`);
    if (!rec.envelope.signatures.some((s) => s.keyid === id) && rec.envelope.signatures.length >= MAX_SIGNATURES) throw new FerryError('FERRY_E_SIG_LIMIT', `ferry-agent ${version}`);
    await this.store.bundles.upsertSignature(version, { keyid: id, publicKey: input.publicKey, sig: input.sig }, by, now);
    return this.get(version);
  }

  /** Whether a tenant's root would accept this bundle, and who counted. */
  thresholdFor(rec: BundleRecord, root: Root): { met: boolean; have: number; threshold: number } {
    const keys = trustedKeys(root, 'release');
    const have = validSigners(rec.envelope, keys.keys).length;
    return { met: have >= keys.threshold && rec.tenants.includes(root.tenant), have, threshold: keys.threshold };
  }

  /** What a directive for `tenant` may name: the bundle, for that tenant, with the tenant's threshold met. */
  checkFor(rec: BundleRecord, tenant: string, root: Root): void {
    if (!rec.tenants.includes(tenant)) throw new FerryError('FERRY_E_BUNDLE_TENANT', `ferry-agent ${rec.version} is for ${rec.tenants.join(', ')}, not ${tenant}`);
    const t = this.thresholdFor(rec, root);
    if (!t.met) throw new FerryError('FERRY_E_SIG_THRESHOLD', `ferry-agent ${rec.version}: ${t.have} of ${t.threshold} release signatures trusted by tenant ${tenant}`);
  }

  private async record(row: BundleRow): Promise<BundleRecord> {
    const sigs = await this.store.bundles.signatures(row.version);
    const statement = parseAgentBundle(row.statement);
    return {
      version: row.version,
      digest: row.digest,
      size: Number(row.size),
      statement,
      envelope: { payloadType: PAYLOAD_TYPES.agentBundle, payload: Buffer.from(row.statement).toString('base64'), signatures: sigs.map((s) => ({ keyid: s.keyid, sig: s.sig })) },
      statementDigest: row.statement_digest,
      manifest: JSON.parse(row.manifest) as BundleRecord['manifest'],
      tenants: statement.tenants,
      signers: sigs.map((s) => ({ keyid: s.keyid, at: Number(s.created_at), by: s.created_by })),
      createdAt: Number(row.created_at),
    };
  }
}

export { AGENT_STACK };

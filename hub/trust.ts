// Tenants' trust roots on the hub. The hub drafts roots (it knows its own
// online key) but cannot activate one: a root becomes active only when the
// signatures uploaded by the key holders meet the thresholds an agent will
// check — v1 by its own root role, v(n+1) by v(n)'s and its own. Private
// root and release keys never reach the hub; only signatures do.
import { FerryError } from '../shared/errors.js';
import { PAYLOAD_TYPES, pae, validSigners, type Envelope, type Signature } from '../shared/dsse.js';
import { decodePublicKey, decodeSignature, encodePublicKey, keyId, verify, type KeyPair } from '../shared/keys.js';
import { canonicalJson } from '../shared/release.js';
import { ROLE_NAMES, acceptInitialRoot, acceptRootUpdate, checkRoot, parseRoot, rootFingerprint, trustedKeys, type RoleName, type Root } from '../shared/trust.js';
import type { RootRow } from './store/signed.js';
import type { Store } from './store/store.js';

export interface KeySpec {
  public: string;
  name?: string;
}

export interface RootChange {
  add?: { role: Exclude<RoleName, 'hub'>; key: KeySpec }[];
  remove?: { role: Exclude<RoleName, 'hub'>; keyid: string }[];
  thresholds?: Partial<Record<Exclude<RoleName, 'hub'>, number>>;
}

export interface TrustView {
  active: RootView | null;
  pending: RootView | null;
  fingerprint: string | null;
  chain: Envelope[];
}

export interface RootView {
  version: number;
  root: Root;
  envelope: Envelope;
  active: boolean;
  /** Per threshold that must be met, how many distinct keys have signed. */
  needs: { role: string; have: number; threshold: number }[];
}

function envelopeOf(row: RootRow): Envelope {
  return { payloadType: PAYLOAD_TYPES.root, payload: row.payload.toString('base64'), signatures: JSON.parse(row.signatures) as Signature[] };
}

function countSigners(env: Envelope, root: Root): number {
  return validSigners(env, trustedKeys(root, 'root').keys).length;
}

export class TrustRoots {
  constructor(
    private readonly store: Store,
    private readonly hubKey: KeyPair,
  ) {}

  private async rows(tenantId: string): Promise<RootRow[]> {
    return this.store.roots.list(tenantId);
  }

  /** Active roots, v1 first: what an agent needs to reach the current one. */
  async chain(tenant: string): Promise<Envelope[]> {
    return (await this.rows((await this.store.fleet.tenant(tenant)).id)).filter((r) => r.activated_at !== null).map(envelopeOf);
  }

  private readonly parsedRoots = new Map<string, Root>();

  async active(tenant: string): Promise<Root | null> {
    const chain = await this.chain(tenant);
    const last = chain[chain.length - 1];
    if (!last) return null;
    // Root payloads never change once stored: parse each once.
    let root = this.parsedRoots.get(last.payload);
    if (!root) {
      root = parseRoot(Buffer.from(last.payload, 'base64'));
      if (this.parsedRoots.size > 1000) this.parsedRoots.clear();
      this.parsedRoots.set(last.payload, root);
    }
    return root;
  }

  async show(tenant: string): Promise<TrustView> {
    const rows = await this.rows((await this.store.fleet.tenant(tenant)).id);
    const activeRows = rows.filter((r) => r.activated_at !== null);
    const view = (row: RootRow | undefined, prev: Root | null): RootView | null => {
      if (!row) return null;
      const root = parseRoot(row.payload);
      const env = envelopeOf(row);
      const needs = [{ role: `root v${root.version}`, have: countSigners(env, root), threshold: root.roles.root.threshold }];
      if (prev && row.activated_at === null) needs.unshift({ role: `root v${prev.version}`, have: countSigners(env, prev), threshold: prev.roles.root.threshold });
      return { version: row.version, root, envelope: env, active: row.activated_at !== null, needs };
    };
    const lastActive = activeRows[activeRows.length - 1];
    const activeRoot = lastActive ? parseRoot(lastActive.payload) : null;
    return {
      active: view(lastActive, null),
      pending: view(rows.find((r) => r.activated_at === null), activeRoot),
      fingerprint: activeRows[0] ? rootFingerprint(envelopeOf(activeRows[0])) : null,
      chain: activeRows.map(envelopeOf),
    };
  }

  /** Drafts root v1 for a tenant that has none. */
  async init(tenant: string, spec: { root: KeySpec[]; rootThreshold: number; release: KeySpec[]; releaseThreshold: number }, by: string | null, now: number): Promise<RootView> {
    const t = await this.store.fleet.tenant(tenant);
    if ((await this.rows(t.id)).some((r) => r.activated_at !== null)) throw new FerryError('FERRY_E_CONFLICT', `tenant ${tenant} already has a trust root; propose a change instead`);
    const keys: Root['keys'] = {};
    const ids = (list: KeySpec[]) =>
      list.map((k) => {
        const pub = decodePublicKey(k.public);
        const id = keyId(pub);
        keys[id] = { keytype: 'ed25519', public: encodePublicKey(pub), ...(k.name ? { name: k.name } : {}) };
        return id;
      });
    const hubId = keyId(this.hubKey.publicKey);
    const root: Root = {
      _type: 'root',
      tenant,
      version: 1,
      createdAt: now,
      keys,
      roles: {
        root: { keyids: ids(spec.root), threshold: spec.rootThreshold },
        release: { keyids: ids(spec.release), threshold: spec.releaseThreshold },
        hub: { keyids: [hubId], threshold: 1 },
      },
    };
    keys[hubId] = { keytype: 'ed25519', public: encodePublicKey(this.hubKey.publicKey), name: 'ferry-hub' };
    return this.draft(t.id, root, by, now);
  }

  /** Drafts root v(n+1) from the active root with a change applied. */
  async propose(tenant: string, change: RootChange, by: string | null, now: number): Promise<RootView> {
    const t = await this.store.fleet.tenant(tenant);
    const current = await this.active(tenant);
    if (!current) throw new FerryError('FERRY_E_ROOT_MISSING', tenant);
    const next: Root = structuredClone({ ...current, version: current.version + 1, createdAt: now });
    for (const { role, key } of change.add ?? []) {
      const pub = decodePublicKey(key.public);
      const id = keyId(pub);
      next.keys[id] = { keytype: 'ed25519', public: encodePublicKey(pub), ...(key.name ? { name: key.name } : {}) };
      if (!next.roles[role].keyids.includes(id)) next.roles[role].keyids.push(id);
    }
    for (const { role, keyid } of change.remove ?? []) {
      if (!next.roles[role].keyids.includes(keyid)) throw new FerryError('FERRY_E_NOT_FOUND', `key ${keyid.slice(0, 12)}… in role ${role}`);
      next.roles[role].keyids = next.roles[role].keyids.filter((k) => k !== keyid);
    }
    for (const [role, n] of Object.entries(change.thresholds ?? {})) next.roles[role as RoleName].threshold = n;
    const used = new Set(ROLE_NAMES.flatMap((r) => next.roles[r].keyids));
    for (const id of Object.keys(next.keys)) if (!used.has(id)) delete next.keys[id];
    return this.draft(t.id, next, by, now);
  }

  private async draft(tenantId: string, root: Root, by: string | null, now: number): Promise<RootView> {
    try {
      checkRoot(root);
    } catch (err) {
      throw new FerryError('FERRY_E_VALIDATION', (err as FerryError).detail ?? (err as Error).message);
    }
    for (const r of ROLE_NAMES) if (root.roles[r].keyids.length === 0) throw new FerryError('FERRY_E_VALIDATION', `role ${r} would have no keys`);
    const payload = canonicalJson(root);
    await this.store.roots.draft(tenantId, root.version, payload, by, now);
    const row = (await this.rows(tenantId)).find((r) => r.version === root.version)!;
    return { version: root.version, root, envelope: envelopeOf(row), active: false, needs: [] };
  }

  /**
   * Adds one key holder's signature to the pending root; activates it when
   * an agent would accept it. Returns whether it is now active.
   */
  async sign(tenant: string, version: number, s: Signature, now: number): Promise<{ active: boolean; view: TrustView }> {
    const t = await this.store.fleet.tenant(tenant);
    const row = (await this.rows(t.id)).find((r) => r.version === version && r.activated_at === null);
    if (!row) throw new FerryError('FERRY_E_NOT_FOUND', `pending root v${version} for tenant ${tenant}`);
    const next = parseRoot(row.payload);
    const current = await this.active(tenant);
    const pub = next.keys[s.keyid]?.public ?? current?.keys[s.keyid]?.public;
    const eligible = next.roles.root.keyids.includes(s.keyid) || current?.roles.root.keyids.includes(s.keyid);
    if (!pub || !eligible) throw new FerryError('FERRY_E_SIG_THRESHOLD', `key ${s.keyid.slice(0, 12)}… is not a root key of v${version} or the active root`);
    const sig = decodeSignature(s.sig);
    if (!sig || !verify(pae(PAYLOAD_TYPES.root, row.payload), sig, decodePublicKey(pub))) {
      throw new FerryError('FERRY_E_SIG_THRESHOLD', `signature by ${s.keyid.slice(0, 12)}… does not verify over root v${version}`);
    }
    const sigs = (JSON.parse(row.signatures) as Signature[]).filter((x) => x.keyid !== s.keyid).concat(s);
    const env: Envelope = { ...envelopeOf(row), signatures: sigs };
    let active = false;
    try {
      if (current) acceptRootUpdate(current, env);
      else acceptInitialRoot(env, { tenant });
      active = true;
    } catch (err) {
      if (!(err instanceof FerryError) || err.code !== 'FERRY_E_SIG_THRESHOLD') throw err;
    }
    await this.store.roots.setSignatures(t.id, version, sigs, active ? now : null);
    return { active, view: await this.show(tenant) };
  }
}

/** Key ids any active root of any tenant names for `role` (what an uploaded signature must come from to count anywhere). */
export async function keysNamedByRoots(store: Store, role: Exclude<RoleName, 'hub'>): Promise<Set<string>> {
  const out = new Set<string>();
  for (const payload of await store.roots.activePayloads()) {
    const root = parseRoot(payload);
    for (const id of root.roles[role].keyids) out.add(id);
  }
  return out;
}

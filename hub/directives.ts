// Directives: the hub's signed "agent A of tenant T runs releases R1..Rn
// now". Each agent has its own strictly increasing seq; a directive is stored
// before it is sent, redelivered on reconnect until the agent acknowledges
// it, and re-issued under a new seq if it expired undelivered.
import { FerryError, asFerryError } from '../shared/errors.js';
import { PAYLOAD_TYPES, addSignature, createEnvelope, payloadDigest, signatureFor, type Envelope } from '../shared/dsse.js';
import type { KeyPair } from '../shared/keys.js';
import type { Logger } from '../shared/logger.js';
import type { Ack, DirectiveMessage } from '../shared/protocol.js';
import { canonicalJson, type Directive, type ReleaseRef } from '../shared/release.js';
import type { Root } from '../shared/trust.js';
import type { ReleaseRecord, Releases } from './releases.js';
import type { DirectiveRecord, UpgradeRef } from './store/signed.js';
import type { AgentBundles, BundleRecord } from './upgrades/bundles.js';
import type { Store } from './store/store.js';
import type { TrustRoots } from './trust.js';

export type { DirectiveRecord, DirectiveStatus } from './store/signed.js';

export const DIRECTIVE_TTL_MS = 3600_000;

/**
 * What the directives of one batch share, looked up once per batch rather
 * than once per agent: each tenant's active root and chain, each release.
 * Make a fresh one per transaction (a root may rotate between batches).
 */
export class IssueMemo {
  readonly roots = new Map<string, Root | null>();
  readonly chains = new Map<string, Envelope[]>();
  readonly releases = new Map<string, ReleaseRecord>();
  readonly byDigest = new Map<string, ReleaseRecord | undefined>();
  /** The encoded end of a directive frame (its releases and roots), per tenant and releases. */
  readonly tails = new Map<string, string>();
  /** (tenant, release) deliveries already recorded in this batch. */
  readonly delivered = new Set<string>();
  /** Agent bundles by version and by statement digest. */
  readonly bundles = new Map<string, BundleRecord | undefined>();
}

export class Directives {
  /** Agent bundles (self-upgrade), set by the hub once assembled. */
  bundles: AgentBundles | null = null;

  constructor(
    private readonly store: Store,
    private readonly roots: TrustRoots,
    private readonly releases: Releases,
    private readonly hubKey: KeyPair,
    private readonly log: Logger,
  ) {}

  latest(agentId: string): Promise<DirectiveRecord | undefined> {
    return this.store.directives.latest(agentId);
  }

  get(agentId: string, seq: number): Promise<DirectiveRecord> {
    return this.store.directives.get(agentId, seq);
  }

  /** The releases the agent last accepted (its desired state as the hub knows it). */
  accepted(agentId: string): Promise<DirectiveRecord | undefined> {
    return this.store.directives.accepted(agentId);
  }

  /**
   * Issues a directive putting `stack@version` on the agent, keeping its
   * other stacks as last directed. Refuses what the agent would refuse for
   * reasons the hub can see (no root, release threshold not met). Call in a
   * transaction; send only after it commits.
   */
  async deploy(agentId: string, stack: string, version: string, by: string | null, now: number, memo = new IssueMemo()): Promise<DirectiveRecord> {
    const d = (await this.deployMany([agentId], stack, version, by, now, memo)).get(agentId)!;
    if (d instanceof FerryError) throw d;
    return d;
  }

  /**
   * `deploy` for many agents at once, in a few statements whatever their
   * number (a rollout's chunk): each agent's directive, or why the hub cannot
   * issue it to that agent (the others go on). Call in a transaction.
   */
  async deployMany(agentIds: readonly string[], stack: string, version: string, by: string | null, now: number, memo = new IssueMemo()): Promise<Map<string, DirectiveRecord | FerryError>> {
    const out = new Map<string, DirectiveRecord | FerryError>();
    const key = `${stack}@${version}`;
    let rec = memo.releases.get(key);
    try {
      if (!rec) memo.releases.set(key, (rec = await this.releases.get(stack, version)));
    } catch (err) {
      const e = asFerryError(err);
      for (const id of agentIds) out.set(id, e);
      return out;
    }
    const agents = await this.store.fleet.agentTenants(agentIds);
    const ok: { agentId: string; tenant: string; root: Root }[] = [];
    for (const agentId of agentIds) {
      const agent = agents.get(agentId);
      if (!agent) out.set(agentId, new FerryError('FERRY_E_NOT_FOUND', `agent ${agentId}`));
      else if (agent.revokedAt !== null) out.set(agentId, new FerryError('FERRY_E_AGENT_REVOKED', agentId));
      else {
        const root = await this.activeRoot(agent.tenant, memo);
        const t = root && this.releases.thresholdFor(rec, root);
        if (!root) out.set(agentId, new FerryError('FERRY_E_ROOT_MISSING', `tenant ${agent.tenant}`));
        else if (!t!.met) out.set(agentId, new FerryError('FERRY_E_SIG_THRESHOLD', `${stack}@${version}: ${t!.have} of ${t!.threshold} release signatures trusted by tenant ${agent.tenant}`));
        else ok.push({ agentId, tenant: agent.tenant, root });
      }
    }
    if (!ok.length) return out;
    await this.store.tx(async () => {
      const ids = ok.map((o) => o.agentId);
      // Build on the last directive each agent did not refuse: a refused one must not be carried forward.
      const last = await this.store.directives.lastDirectedOf(ids);
      const seqs = await this.store.directives.nextSeqs(ids);
      const recs = ok.map((o) => {
        const base = last.get(o.agentId);
        const refs = [...(base?.releases ?? []).filter((r) => r.stack !== stack), { stack, version, digest: rec.digest }].sort((a, b) => a.stack.localeCompare(b.stack));
        return this.sign(o.agentId, seqs.get(o.agentId)!, o.tenant, refs, o.root.version, now, base?.upgrade ?? null);
      });
      await this.store.directives.insertMany(recs, by);
      recs.forEach((d) => out.set(d.agentId, d));
      // From now on the tenants' people see this release (once per tenant and release in a batch).
      for (const tenant of new Set(ok.map((o) => o.tenant))) {
        const seen = `${tenant}\n${rec.id}`;
        if (memo.delivered.has(seen)) continue;
        memo.delivered.add(seen);
        await this.store.releases.deliveredTo(rec.id, tenant, now);
      }
    });
    return out;
  }

  /**
   * Issues a directive naming ferry-agent `version` for the agent (its
   * releases as last directed): the bundle must be for the agent's tenant
   * and signed by its release role's threshold. Call in a transaction; send
   * only after it commits.
   */
  async upgrade(agentId: string, version: string, by: string | null, now: number, memo = new IssueMemo()): Promise<DirectiveRecord> {
    const agent = await this.store.fleet.agentTenant(agentId);
    if (agent.revokedAt !== null) throw new FerryError('FERRY_E_AGENT_REVOKED', agentId);
    const root = await this.activeRoot(agent.tenant, memo);
    if (!root) throw new FerryError('FERRY_E_ROOT_MISSING', `tenant ${agent.tenant}`);
    const base = (await this.store.directives.lastDirectedOf([agentId])).get(agentId)?.releases ?? [];
    const rec = await this.bundle(version, memo);
    if (!rec) {
      // Back to a version that came from a package (no bundle here): only for an agent that runs it already.
      if ((await this.store.bundles.versionOf(agentId))?.status.installed === version) return this.issue(agentId, agent.tenant, base, root.version, by, now, null);
      throw new FerryError('FERRY_E_NOT_FOUND', `agent bundle ${version}`);
    }
    this.bundles!.checkFor(rec, agent.tenant, root);
    return this.issue(agentId, agent.tenant, base, root.version, by, now, { version, digest: rec.statementDigest });
  }

  private async bundle(version: string, memo: IssueMemo): Promise<BundleRecord | undefined> {
    if (!this.bundles) throw new FerryError('FERRY_E_INTERNAL', 'agent bundles are not set up');
    if (!memo.bundles.has(version)) memo.bundles.set(version, await this.bundles.find(version));
    return memo.bundles.get(version);
  }

  /** Stores directive seq+1 for the agent, in the caller's transaction (or its own). */
  private issue(agentId: string, tenant: string, refs: ReleaseRef[], rootVersion: number, by: string | null, now: number, upgrade: UpgradeRef | null = null): Promise<DirectiveRecord> {
    return this.store.tx(async () => {
      const rec = this.sign(agentId, await this.store.directives.nextSeq(agentId), tenant, refs, rootVersion, now, upgrade);
      await this.store.directives.insert(rec, by);
      return rec;
    });
  }

  /** The directive `seq` for the agent, signed by the hub. */
  private sign(agentId: string, seq: number, tenant: string, refs: ReleaseRef[], rootVersion: number, now: number, upgrade: UpgradeRef | null): DirectiveRecord {
    const doc: Directive = { _type: 'directive', tenant, agent: agentId, seq, issuedAt: now, expiresAt: now + DIRECTIVE_TTL_MS, rootVersion, releases: refs, ...(upgrade ? { upgrade } : {}) };
    let env = createEnvelope(PAYLOAD_TYPES.directive, canonicalJson(doc));
    env = addSignature(env, signatureFor(env, this.hubKey));
    return { agentId, seq, digest: payloadDigest(env), releases: refs, issuedAt: now, expiresAt: doc.expiresAt, status: 'pending', code: null, message: null, ackedAt: null, envelope: env, upgrade };
  }

  private async activeRoot(tenant: string, memo: IssueMemo): Promise<Root | null> {
    let root = memo.roots.get(tenant);
    if (root === undefined) memo.roots.set(tenant, (root = await this.roots.active(tenant)));
    return root;
  }

  /** What to send the agent now, if anything: its latest directive while unacknowledged (re-issued if expired). */
  async pendingFor(agentId: string, now: number): Promise<DirectiveMessage | null> {
    let d = await this.latest(agentId);
    if (!d || d.status !== 'pending') return null;
    if (d.expiresAt <= now) {
      const agent = await this.store.fleet.agent(agentId);
      const root = await this.roots.active(agent.tenant);
      if (!root) return null;
      this.log.info({ agentId, seq: d.seq }, 'directive expired undelivered; re-issuing');
      const stale = d;
      // Only if it is still the newest (another replica may have re-issued it already).
      d = await this.store.tx(async () => {
        const now2 = await this.store.directives.latest(agentId);
        return now2 && now2.seq === stale.seq && now2.status === 'pending' ? this.issue(agentId, agent.tenant, stale.releases, root.version, 'hub:reissue', now, stale.upgrade ?? null) : now2;
      });
      if (!d || d.status !== 'pending') return null;
    }
    return this.message(d);
  }

  /** The frame carrying a directive: it, its releases and the tenant's root chain. */
  async message(d: DirectiveRecord, memo = new IssueMemo(), tenant?: string): Promise<DirectiveMessage> {
    const t = tenant ?? (await this.store.fleet.agentTenant(d.agentId)).tenant;
    const releases: Envelope[] = [];
    for (const r of d.releases) {
      let rec = memo.byDigest.get(r.digest);
      if (!memo.byDigest.has(r.digest)) memo.byDigest.set(r.digest, (rec = await this.releases.byDigest(r.digest)));
      if (!rec) throw new FerryError('FERRY_E_INTERNAL', `release ${r.stack}@${r.version} vanished`);
      releases.push(rec.envelope);
    }
    let roots = memo.chains.get(t);
    if (!roots) memo.chains.set(t, (roots = await this.roots.chain(t)));
    if (!d.upgrade) return { type: 'directive', directive: d.envelope, releases, roots };
    const b = await this.bundle(d.upgrade.version, memo);
    if (!b || b.statementDigest !== d.upgrade.digest) throw new FerryError('FERRY_E_INTERNAL', `agent bundle ${d.upgrade.version} vanished`);
    return { type: 'directive', directive: d.envelope, releases, roots, bundle: b.envelope };
  }

  /**
   * `encode(message(d))`, with the part directives of one tenant and releases
   * share (release envelopes, root chain: most of the bytes) encoded once.
   */
  async encodedMessage(d: DirectiveRecord, memo: IssueMemo, tenant: string): Promise<string> {
    const key = `${tenant}\n${d.releases.map((r) => r.digest).join(',')}\n${d.upgrade?.digest ?? ''}`;
    let tail = memo.tails.get(key);
    if (tail === undefined) {
      const m = await this.message(d, memo, tenant);
      tail = JSON.stringify({ releases: m.releases, roots: m.roots, ...(m.bundle ? { bundle: m.bundle } : {}) }).slice(1);
      memo.tails.set(key, tail);
    }
    return `{"type":"directive","directive":${JSON.stringify(d.envelope)},${tail}`;
  }

  /** Records an agent's acknowledgement. Only the directive it names changes. */
  async recordAck(agentId: string, ack: Ack, now: number): Promise<DirectiveRecord | undefined> {
    const changed = await this.store.directives.ack(agentId, { seq: ack.seq, digest: ack.digest, accepted: ack.accepted, code: ack.code ?? null, message: ack.message ?? null }, now);
    if (!changed) {
      this.log.warn({ agentId, seq: ack.seq, digest: ack.digest }, 'ack for no pending directive (duplicate or stale)');
      return undefined;
    }
    return this.get(agentId, ack.seq);
  }
}

// Directives: the hub's signed "agent A of tenant T runs releases R1..Rn
// now". Each agent has its own strictly increasing seq; a directive is stored
// before it is sent, redelivered on reconnect until the agent acknowledges
// it, and re-issued under a new seq if it expired undelivered.
import { FerryError } from '../shared/errors.js';
import { PAYLOAD_TYPES, addSignature, createEnvelope, payloadDigest, signatureFor, type Envelope } from '../shared/dsse.js';
import type { KeyPair } from '../shared/keys.js';
import type { Logger } from '../shared/logger.js';
import type { Ack, DirectiveMessage } from '../shared/protocol.js';
import { canonicalJson, type Directive, type ReleaseRef } from '../shared/release.js';
import type { Root } from '../shared/trust.js';
import { stmt, type DB } from './db.js';
import type { ReleaseRecord, Releases } from './releases.js';
import type { Store } from './store.js';
import type { TrustRoots } from './trust.js';

export const DIRECTIVE_TTL_MS = 3600_000;

export type DirectiveStatus = 'pending' | 'accepted' | 'refused';

interface DirectiveRow {
  agent_id: string;
  seq: number;
  digest: string;
  envelope: string;
  releases: string;
  issued_at: number;
  expires_at: number;
  created_by: string | null;
  status: DirectiveStatus;
  code: string | null;
  message: string | null;
  acked_at: number | null;
}

export interface DirectiveRecord {
  agentId: string;
  seq: number;
  digest: string;
  releases: ReleaseRef[];
  issuedAt: number;
  expiresAt: number;
  status: DirectiveStatus;
  code: string | null;
  message: string | null;
  ackedAt: number | null;
  envelope: Envelope;
}

const toRecord = (r: DirectiveRow): DirectiveRecord => ({
  agentId: r.agent_id,
  seq: r.seq,
  digest: r.digest,
  releases: JSON.parse(r.releases) as ReleaseRef[],
  issuedAt: r.issued_at,
  expiresAt: r.expires_at,
  status: r.status,
  code: r.code,
  message: r.message,
  ackedAt: r.acked_at,
  envelope: JSON.parse(r.envelope) as Envelope,
});

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
}

export class Directives {
  constructor(
    private readonly db: DB,
    private readonly store: Store,
    private readonly roots: TrustRoots,
    private readonly releases: Releases,
    private readonly hubKey: KeyPair,
    private readonly log: Logger,
  ) {}

  latest(agentId: string): DirectiveRecord | undefined {
    const r = stmt(this.db, 'SELECT * FROM directives WHERE agent_id = ? ORDER BY seq DESC LIMIT 1').get(agentId) as DirectiveRow | undefined;
    return r ? toRecord(r) : undefined;
  }

  get(agentId: string, seq: number): DirectiveRecord {
    const r = stmt(this.db, 'SELECT * FROM directives WHERE agent_id = ? AND seq = ?').get(agentId, seq) as DirectiveRow | undefined;
    if (!r) throw new FerryError('FERRY_E_NOT_FOUND', `directive ${seq} of agent ${agentId}`);
    return toRecord(r);
  }

  /** The releases the agent last accepted (its desired state as the hub knows it). */
  accepted(agentId: string): DirectiveRecord | undefined {
    const r = stmt(this.db, "SELECT * FROM directives WHERE agent_id = ? AND status = 'accepted' ORDER BY seq DESC LIMIT 1").get(agentId) as DirectiveRow | undefined;
    return r ? toRecord(r) : undefined;
  }

  /**
   * Issues a directive putting `stack@version` on the agent, keeping its
   * other stacks as last directed. Refuses what the agent would refuse for
   * reasons the hub can see (no root, release threshold not met).
   */
  deploy(agentId: string, stack: string, version: string, by: string | null, now: number, memo = new IssueMemo()): DirectiveRecord {
    const agent = this.store.agentTenant(agentId);
    if (agent.revokedAt !== null) throw new FerryError('FERRY_E_AGENT_REVOKED', agentId);
    const root = this.activeRoot(agent.tenant, memo);
    if (!root) throw new FerryError('FERRY_E_ROOT_MISSING', `tenant ${agent.tenant}`);
    const key = `${stack}@${version}`;
    let rec = memo.releases.get(key);
    if (!rec) memo.releases.set(key, (rec = this.releases.get(stack, version)));
    const t = this.releases.thresholdFor(rec, root);
    if (!t.met) throw new FerryError('FERRY_E_SIG_THRESHOLD', `${stack}@${version}: ${t.have} of ${t.threshold} release signatures trusted by tenant ${agent.tenant}`);
    // Build on the last directive the agent did not refuse: a refused one must not be carried forward.
    const last = stmt(this.db, "SELECT releases FROM directives WHERE agent_id = ? AND status != 'refused' ORDER BY seq DESC LIMIT 1").get(agentId) as
      | { releases: string }
      | undefined;
    const base = last ? (JSON.parse(last.releases) as ReleaseRef[]) : [];
    const refs = [...base.filter((r) => r.stack !== stack), { stack, version, digest: rec.digest }].sort((a, b) => a.stack.localeCompare(b.stack));
    return this.issue(agentId, agent.tenant, refs, root.version, by, now);
  }

  /**
   * Stores directive seq+1 for the agent. In the caller's transaction when
   * there is one (a batch: seqs stay strictly increasing per agent because
   * the batch is one synchronous writer), else in its own.
   */
  private issue(agentId: string, tenant: string, refs: ReleaseRef[], rootVersion: number, by: string | null, now: number): DirectiveRecord {
    const write = () => {
      const seq = ((stmt(this.db, 'SELECT max(seq) AS s FROM directives WHERE agent_id = ?').get(agentId) as { s: number | null }).s ?? 0) + 1;
      const doc: Directive = { _type: 'directive', tenant, agent: agentId, seq, issuedAt: now, expiresAt: now + DIRECTIVE_TTL_MS, rootVersion, releases: refs };
      let env = createEnvelope(PAYLOAD_TYPES.directive, canonicalJson(doc));
      env = addSignature(env, signatureFor(env, this.hubKey));
      const digest = payloadDigest(env);
      stmt(this.db, 'INSERT INTO directives (agent_id, seq, digest, envelope, releases, issued_at, expires_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)').run(
        agentId,
        seq,
        digest,
        JSON.stringify(env),
        JSON.stringify(refs),
        now,
        doc.expiresAt,
        by,
      );
      const rec: DirectiveRecord = { agentId, seq, digest, releases: refs, issuedAt: now, expiresAt: doc.expiresAt, status: 'pending', code: null, message: null, ackedAt: null, envelope: env };
      return rec;
    };
    return this.db.inTransaction ? write() : this.db.transaction(write).immediate();
  }

  private activeRoot(tenant: string, memo: IssueMemo): Root | null {
    let root = memo.roots.get(tenant);
    if (root === undefined) memo.roots.set(tenant, (root = this.roots.active(tenant)));
    return root;
  }

  /** What to send the agent now, if anything: its latest directive while unacknowledged (re-issued if expired). */
  pendingFor(agentId: string, now: number): DirectiveMessage | null {
    let d = this.latest(agentId);
    if (!d || d.status !== 'pending') return null;
    if (d.expiresAt <= now) {
      const agent = this.store.agent(agentId);
      const root = this.roots.active(agent.tenant);
      if (!root) return null;
      this.log.info({ agentId, seq: d.seq }, 'directive expired undelivered; re-issuing');
      d = this.issue(agentId, agent.tenant, d.releases, root.version, 'hub:reissue', now);
    }
    return this.message(d);
  }

  /** The frame carrying a directive: it, its releases and the tenant's root chain. */
  message(d: DirectiveRecord, memo = new IssueMemo(), tenant = this.store.agent(d.agentId).tenant): DirectiveMessage {
    const releases = d.releases.map((r) => {
      let rec = memo.byDigest.get(r.digest);
      if (!memo.byDigest.has(r.digest)) memo.byDigest.set(r.digest, (rec = this.releases.byDigest(r.digest)));
      if (!rec) throw new FerryError('FERRY_E_INTERNAL', `release ${r.stack}@${r.version} vanished`);
      return rec.envelope;
    });
    let roots = memo.chains.get(tenant);
    if (!roots) memo.chains.set(tenant, (roots = this.roots.chain(tenant)));
    return { type: 'directive', directive: d.envelope, releases, roots };
  }

  /**
   * `encode(message(d))`, with the part directives of one tenant and releases
   * share (release envelopes, root chain: most of the bytes) encoded once.
   */
  encodedMessage(d: DirectiveRecord, memo: IssueMemo, tenant: string): string {
    const key = `${tenant}\n${d.releases.map((r) => r.digest).join(',')}`;
    let tail = memo.tails.get(key);
    if (tail === undefined) {
      const m = this.message(d, memo, tenant);
      tail = JSON.stringify({ releases: m.releases, roots: m.roots }).slice(1);
      memo.tails.set(key, tail);
    }
    return `{"type":"directive","directive":${JSON.stringify(d.envelope)},${tail}`;
  }

  /** Records an agent's acknowledgement. Only the directive it names changes. */
  recordAck(agentId: string, ack: Ack, now: number): DirectiveRecord | undefined {
    const r = stmt(this.db, "UPDATE directives SET status = ?, code = ?, message = ?, acked_at = ? WHERE agent_id = ? AND seq = ? AND digest = ? AND status = 'pending'")
      .run(ack.accepted ? 'accepted' : 'refused', ack.code ?? null, ack.message ?? null, now, agentId, ack.seq, ack.digest);
    if (r.changes === 0) {
      this.log.warn({ agentId, seq: ack.seq, digest: ack.digest }, 'ack for no pending directive (duplicate or stale)');
      return undefined;
    }
    return this.get(agentId, ack.seq);
  }
}

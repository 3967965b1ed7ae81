// Turns hub messages carrying signed state into accepted state on disk and
// an acknowledgement on the wire. Verification is agent/verify.ts (pure);
// this does the I/O around it, in the order that matters: verify, persist
// with fsync, then acknowledge. A refusal is logged locally and reported.
import { EventEmitter } from 'node:events';
import { PAYLOAD_TYPES, decodeEnvelope, payloadDigest, verifyEnvelope } from '../shared/dsse.js';
import { asFerryError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import type { AgentMessage, DirectiveMessage, RootsMessage } from '../shared/protocol.js';
import { parseDirective } from '../shared/release.js';
import { trustedKeys } from '../shared/trust.js';
import type { Policy } from './policy.js';
import { appendRefusal, loadTrust, saveTrust, type Persisted, type Refusal } from './trust-store.js';
import { acceptRoots, boundTrustedTime, currentRoot, span, verifyBundle, type Accepted } from './verify.js';

export interface AcceptorOptions {
  stateDir: string;
  agentId: string;
  tenant: string;
  policy: Policy;
  log: Logger;
  send: (msg: AgentMessage) => boolean;
  now?: () => number;
  /** How far ahead of the local clock a directive may be dated (default 5 min). */
  maxSkewMs?: number;
  /** The hub's clock minus this host's, from the hub's welcome (null before one). */
  hubClockOffsetMs?: () => number | null;
  /** Told of every refusal once it is on record (alarms among them). */
  onRefusal?: (r: Refusal) => void;
}

/** Emits 'accepted' (Accepted) after a new directive is persisted, and 'verified' (Accepted) after any directive is acknowledged as accepted. */
export class Acceptor extends EventEmitter {
  private persisted: Persisted;
  private readonly now: () => number;

  constructor(private readonly opts: AcceptorOptions) {
    super();
    this.now = opts.now ?? Date.now;
    this.persisted = loadTrust(opts.stateDir);
    // Trusted time from an earlier version may lie in the future: bound it once, and say so.
    const now = this.now();
    const bounded = boundTrustedTime(this.persisted.state, { now, maxSkewMs: opts.maxSkewMs });
    if (bounded.changed) {
      this.persist({ ...this.persisted, state: bounded.state });
      if (bounded.clampedFrom !== null) {
        opts.log.warn(
          { code: 'FERRY_E_CLOCK_AHEAD', storedTrustedTime: new Date(bounded.clampedFrom).toISOString(), trustedTime: new Date(bounded.state.maxIssuedAt).toISOString(), localClock: new Date(now).toISOString() },
          `stored trusted time was ${span(bounded.clampedFrom - now)} ahead of this host's clock (an earlier version believed a future-dated directive); bounded to the clock plus the allowed skew, so later directives are accepted again`,
        );
      }
    }
  }

  private clock() {
    return { now: this.now(), maxSkewMs: this.opts.maxSkewMs, hubClockOffsetMs: this.opts.hubClockOffsetMs?.() ?? null };
  }

  get current(): Persisted {
    return this.persisted;
  }

  onRoots(msg: RootsMessage): void {
    try {
      const { state, root } = acceptRoots(this.persisted.state, msg.roots, this.opts.tenant);
      if (state.roots.length !== this.persisted.state.roots.length) {
        this.persist({ ...this.persisted, state });
        this.opts.log.info({ rootVersion: root?.version }, 'trust root accepted');
      }
    } catch (err) {
      const e = asFerryError(err);
      this.refused({ at: new Date(this.now()).toISOString(), kind: 'roots', seq: null, digest: null, code: e.code, message: e.message });
      this.opts.log.error({ code: e.code, detail: e.detail }, 'refused trust root from hub');
      this.opts.send({ type: 'error', code: e.code, message: e.message.slice(0, 2048) });
    }
  }

  onDirective(msg: DirectiveMessage): void {
    const digest = safeDigest(msg);
    const seq = this.claimedSeq(msg);
    let accepted: Accepted;
    try {
      accepted = verifyBundle(this.persisted.state, msg, { agentId: this.opts.agentId, tenant: this.opts.tenant, policy: this.opts.policy, ...this.clock() });
    } catch (err) {
      const e = asFerryError(err);
      this.refused({ at: new Date(this.now()).toISOString(), kind: 'directive', seq, digest, code: e.code, message: e.message });
      const alarm = e.code === 'FERRY_E_DIRECTIVE_FORK';
      this.opts.log[alarm ? 'fatal' : 'warn']({ code: e.code, detail: e.detail, seq, digest }, alarm ? 'ALARM: conflicting directives for one seq' : 'refused directive');
      if (seq !== null && digest) this.opts.send({ type: 'ack', seq, digest, accepted: false, code: e.code, message: e.message.slice(0, 2048) });
      else this.opts.send({ type: 'error', code: e.code, message: e.message.slice(0, 2048) });
      return;
    }
    if (!accepted.duplicate) {
      this.persist({
        format: 1,
        state: accepted.state,
        desired: {
          directive: decodeEnvelope(msg.directive),
          releases: accepted.releases.map((r) => r.envelope),
          seq: accepted.directive.seq,
          acceptedAt: new Date(this.now()).toISOString(),
          ...(accepted.agentBundle ? { bundle: accepted.agentBundle.envelope } : {}),
        },
      });
      this.opts.log.info(
        { seq: accepted.directive.seq, releases: accepted.releases.map((r) => `${r.release.stack}@${r.release.version}`), rootVersion: accepted.root.version },
        'directive accepted',
      );
    }
    this.opts.send({ type: 'ack', seq: accepted.directive.seq, digest: accepted.digest, accepted: true, duplicate: accepted.duplicate });
    if (!accepted.duplicate) this.emit('accepted', accepted);
    // A directive verified with this version's own code, new or again (a new version's health check waits for one).
    this.emit('verified', accepted);
  }

  private refused(r: Omit<Refusal, 'alarm'>): void {
    this.opts.onRefusal?.(appendRefusal(this.opts.stateDir, r));
  }

  private persist(p: Persisted): void {
    saveTrust(this.opts.stateDir, p);
    this.persisted = p;
  }

  /** The seq of a directive we may refuse, read only from a hub-signed payload (else null). */
  private claimedSeq(msg: DirectiveMessage): number | null {
    try {
      const root = currentRoot(this.persisted.state) ?? acceptRoots(this.persisted.state, msg.roots, this.opts.tenant).root;
      if (!root) return null;
      return parseDirective(verifyEnvelope(msg.directive, PAYLOAD_TYPES.directive, trustedKeys(root, 'hub'), 'hub').payload).seq;
    } catch {
      return null;
    }
  }
}

function safeDigest(msg: DirectiveMessage): string | null {
  try {
    return payloadDigest(msg.directive);
  } catch {
    return null;
  }
}

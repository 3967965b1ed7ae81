// Hub-issued nonces for the agent handshake. A nonce is self-authenticating
// (random || issuedAt || HMAC tag under a secret), so issuing one stores
// nothing; redeeming one records it until it expires, so each nonce works
// once.
//
// One replica: the secret is made per process and used nonces are kept in
// memory, so a restart voids every outstanding nonce (a replay across a
// restart fails too). Several replicas: an agent may fetch its challenge
// from one and connect to another, so the secret is shared (derived from the
// hub key every replica holds) and used nonces are claimed in the database.
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { FerryError } from '../../shared/errors.js';

export const NONCE_TTL_MS = 60_000;

/** The challenge secret replicas share: derived from the hub's signing seed, never the seed itself. */
export function sharedChallengeSecret(hubSeed: Uint8Array): Buffer {
  return createHash('sha256').update('ferry-challenge-v1\0').update(hubSeed).digest();
}

/**
 * Claims nonces in the database together: the handshakes of one turn of the
 * event loop (a reconnect storm brings hundreds a second) share one
 * transaction instead of four round trips each.
 */
export class NonceClaims {
  private pending: { nonce: string; expiresAt: number; done: (ok: boolean) => void; fail: (err: unknown) => void }[] = [];
  private scheduled = false;

  constructor(private readonly write: (claims: { nonce: string; expiresAt: number }[]) => Promise<Set<string>>) {}

  /** False for a nonce already used (here, or by another handshake in the same batch). */
  claim = (nonce: string, expiresAt: number): Promise<boolean> =>
    new Promise((done, fail) => {
      this.pending.push({ nonce, expiresAt, done, fail });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => void this.flush());
      }
    });

  private async flush(): Promise<void> {
    const batch = this.pending;
    this.pending = [];
    this.scheduled = false;
    const first = new Map<string, { nonce: string; expiresAt: number }>();
    for (const c of batch) if (!first.has(c.nonce)) first.set(c.nonce, c);
    try {
      const claimed = await this.write([...first.values()]);
      const given = new Set<string>();
      for (const c of batch) {
        const ok = claimed.has(c.nonce) && !given.has(c.nonce);
        if (ok) given.add(c.nonce);
        c.done(ok);
      }
    } catch (err) {
      for (const c of batch) c.fail(err);
    }
  }
}

export class Challenges {
  private readonly used = new Map<string, number>();
  private lastSweep = 0;

  /** `claim`: the database's record of used nonces (several replicas); false for one already used. */
  constructor(
    private readonly secret: Buffer = randomBytes(32),
    private readonly claim?: (nonce: string, expiresAt: number) => Promise<boolean>,
  ) {}

  issue(now: number): { nonce: string; expiresAt: number } {
    const body = Buffer.alloc(24);
    randomBytes(16).copy(body, 0);
    body.writeBigUInt64BE(BigInt(now), 16);
    const tag = this.tag(body);
    return { nonce: Buffer.concat([body, tag]).toString('base64url'), expiresAt: now + NONCE_TTL_MS };
  }

  /** Checks a nonce is ours, fresh and unused, and marks it used. Throws FerryError. */
  async redeem(nonce: string, now: number): Promise<void> {
    const raw = Buffer.from(nonce, 'base64url');
    if (raw.length !== 40 || raw.toString('base64url') !== nonce) {
      throw new FerryError('FERRY_E_AGENT_AUTH_REPLAYED', 'not a nonce issued by this hub');
    }
    const body = raw.subarray(0, 24);
    if (!timingSafeEqual(raw.subarray(24), this.tag(body))) {
      throw new FerryError('FERRY_E_AGENT_AUTH_REPLAYED', 'not a nonce issued by this hub process');
    }
    const issuedAt = Number(body.readBigUInt64BE(16));
    if (now - issuedAt > NONCE_TTL_MS || issuedAt - now > 5_000) {
      throw new FerryError('FERRY_E_AGENT_AUTH_REPLAYED', 'nonce expired');
    }
    this.sweep(now);
    if (this.used.has(nonce)) throw new FerryError('FERRY_E_AGENT_AUTH_REPLAYED', 'nonce already used');
    this.used.set(nonce, issuedAt + NONCE_TTL_MS);
    if (this.claim && !(await this.claim(nonce, issuedAt + NONCE_TTL_MS))) throw new FerryError('FERRY_E_AGENT_AUTH_REPLAYED', 'nonce already used (on another replica)');
  }

  get outstanding(): number {
    return this.used.size;
  }

  private tag(body: Buffer): Buffer {
    return createHmac('sha256', this.secret).update(body).digest().subarray(0, 16);
  }

  private sweep(now: number): void {
    if (now - this.lastSweep < 5_000) return;
    this.lastSweep = now;
    for (const [n, exp] of this.used) if (exp < now) this.used.delete(n);
  }
}

// The alert webhook: every alert notice POSTed as JSON to one URL, signed
// with HMAC-SHA256 over the timestamp and the body (header
// `x-ferry-signature: t=<ms>,v1=<hex>`), from the outbox table, by the leader
// only. A notice is retried with backoff until the receiver answers 2xx (at
// least once: a leader that dies between the POST and recording it sends it
// again, with the same `x-ferry-delivery` id, for the receiver to drop).
import { createHmac, timingSafeEqual } from 'node:crypto';
import { asFerryError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import type { Cluster } from '../cluster/cluster.js';
import type { Store } from '../store/store.js';

export interface WebhookOptions {
  url: string;
  secret: string;
  /** Per POST (default 5 s). */
  timeoutMs?: number;
  /** Attempts before a notice is given up (default 20, about a day of backoff). */
  maxAttempts?: number;
}

export const SIGNATURE_HEADER = 'x-ferry-signature';
const BACKOFF_CAP_MS = 3600_000;

/** The signature header's value for a body sent at `t` (ms). */
export function signWebhook(secret: string, t: number, body: string): string {
  return `t=${t},v1=${createHmac('sha256', secret).update(`${t}.${body}`).digest('hex')}`;
}

/** What a receiver checks: the signature over exactly these bytes, made within `toleranceMs` of `now`. */
export function verifyWebhook(secret: string, header: string | undefined, body: string, now: number, toleranceMs = 300_000): boolean {
  const m = /^t=(\d{1,15}),v1=([0-9a-f]{64})$/.exec(header ?? '');
  if (!m) return false;
  const t = Number(m[1]);
  if (Math.abs(now - t) > toleranceMs) return false;
  const want = Buffer.from(createHmac('sha256', secret).update(`${t}.${body}`).digest('hex'));
  const got = Buffer.from(m[2]!);
  return want.length === got.length && timingSafeEqual(want, got);
}

export class WebhookSender {
  private timer: NodeJS.Timeout | undefined;
  private busy = false;
  /** Notices delivered and failed attempts (figures for /metrics). */
  readonly counts = { delivered: 0, failed: 0 };

  constructor(
    private readonly store: Store,
    private readonly cluster: Cluster,
    private readonly log: Logger,
    private readonly o: WebhookOptions,
    private readonly now: () => number = Date.now,
  ) {}

  start(everyMs = 1000): void {
    this.timer = setInterval(() => this.kick(), everyMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  kick(): void {
    if (this.busy || !this.cluster.leader) return;
    this.busy = true;
    void this.store
      .detached(() => this.pass())
      .catch((err: unknown) => this.log.warn({ err: asFerryError(err).message }, 'alert webhook pass failed'))
      .finally(() => (this.busy = false));
  }

  private async pass(): Promise<void> {
    for (const row of await this.store.checks.dueDeliveries(this.now(), 20)) {
      if (!this.cluster.leader) return;
      const t = this.now();
      let error: string | null = null;
      try {
        const res = await fetch(this.o.url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'user-agent': 'ferry-hub', 'x-ferry-event': row.event, 'x-ferry-delivery': String(row.id), [SIGNATURE_HEADER]: signWebhook(this.o.secret, t, row.body) },
          body: row.body,
          signal: AbortSignal.timeout(this.o.timeoutMs ?? 5000),
          redirect: 'error',
        });
        await res.arrayBuffer().catch(() => undefined);
        if (res.status < 200 || res.status > 299) error = `HTTP ${res.status}`;
      } catch (err) {
        error = (err as Error).cause ? `${(err as Error).message}: ${((err as Error).cause as Error).message}` : (err as Error).message;
      }
      if (error === null) {
        await this.store.checks.delivered(row.id, this.now());
        this.counts.delivered++;
        continue;
      }
      this.counts.failed++;
      const attempts = row.attempts + 1;
      const giveUp = attempts >= (this.o.maxAttempts ?? 20);
      await this.store.checks.failedDelivery(row.id, error, giveUp ? null : this.now() + Math.min(BACKOFF_CAP_MS, 1000 * 2 ** attempts), this.now());
      this.log[giveUp ? 'error' : 'warn']({ code: 'FERRY_E_WEBHOOK_FAILED', delivery: row.id, event: row.event, attempts, err: error }, giveUp ? 'alert webhook gave up on a notice' : 'alert webhook did not accept a notice; retrying');
    }
  }
}

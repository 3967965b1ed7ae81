// Rollout transitions as a durable, resumable event stream: GET /v1/events,
// Server-Sent Events (wire format in shared/events.ts).
//
// Events are rows of `rollout_events`, written by the store in the
// transaction of the transition itself (hub/store/rollouts.ts), so an event
// exists exactly when its transition committed, and ids commit in order. The
// scheduler's 'transition' event (or, from another replica, an 'events'
// wake-up) is only a doorbell: each stream keeps a cursor (the last id it
// wrote) and reads what follows from the table, so any replica serves any
// stream, and a missed doorbell is caught by the next heartbeat.
//
// Invariants:
// - a stream writes events in id order, each once; `id:` is the row id, so a
//   client resuming with Last-Event-ID (or ?since=) gets exactly what it missed;
// - a stream shows only what its reader may see: a tenant's people get their
//   own agents' events and the rollout-wide ones of rollouts reaching them;
// - a stream holds at most one batch in memory: it reads the next batch only
//   once the socket has drained, so a slow reader falls behind in the table,
//   not in the hub's memory; one that reads nothing for `stallMs` is sent a
//   final `end` event and closed, and resumes from its Last-Event-ID;
// - events are kept for `retentionMs` and at most `maxEvents`; a client that
//   resumes from before the oldest kept is told so with a `gap` event.
import type { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { FerryError, errorBody } from '../../shared/errors.js';
import { EVENT_KINDS, SSE_CONTENT_TYPE, SSE_HEARTBEAT, encodeSse, type EventKind, type RolloutEvent } from '../../shared/events.js';
import type { Logger } from '../../shared/logger.js';
import type { Cluster } from '../cluster/cluster.js';
import type { EventRow } from '../store/rollouts.js';
import type { Store } from '../store/store.js';

export interface EventStreamOptions {
  /** A comment line this often keeps idle streams open through proxies. */
  heartbeatMs: number;
  /** A client that reads nothing for this long is closed (it resumes with Last-Event-ID). */
  stallMs: number;
  /** Events older than this are pruned (hourly)... */
  retentionMs: number;
  /** ...and only the newest this many are kept. */
  maxEvents: number;
  /** Events read and written per batch: the most a stream holds in memory. */
  batch: number;
  /** What clients wait before reconnecting (the SSE `retry:` field). */
  retryMs: number;
}

export const EVENT_DEFAULTS: EventStreamOptions = Object.freeze({
  heartbeatMs: 15_000,
  stallMs: 60_000,
  retentionMs: 7 * 86_400_000,
  maxEvents: 1_000_000,
  batch: 200,
  retryMs: 2_000,
});

const PRUNE_EVERY_MS = 3600_000;
const QUERY_PARAMS = new Set(['rollout', 'kind', 'since']);

export interface EventFilter {
  /** Rollout number (R-17 is 17), or null for every rollout. */
  rollout: number | null;
  kinds: EventKind[] | null;
  /** Resume after this event id; null: from now. */
  after: number | null;
}

const bad = (detail: string) => new FerryError('FERRY_E_EVENT_FILTER', detail);

function eventId(raw: string, what: string): number {
  if (!/^\d{1,15}$/.test(raw)) throw bad(`${what} ${JSON.stringify(raw.slice(0, 40))}: an event id, a whole number`);
  return Number(raw);
}

/**
 * Reads GET /v1/events' query: `rollout=R-17`, `kind=target,directive`,
 * `since=<id>`. A Last-Event-ID header wins over `since`: a browser's
 * EventSource reconnects to the same URL, adding the header.
 */
export function parseEventQuery(query: URLSearchParams, lastEventId?: string | string[]): EventFilter {
  for (const k of new Set(query.keys())) {
    if (!QUERY_PARAMS.has(k)) throw bad(`unknown parameter ${JSON.stringify(k.slice(0, 40))}; use rollout, kind or since`);
    if (query.getAll(k).length > 1) throw bad(`${k} given more than once`);
  }
  let rollout: number | null = null;
  const r = query.get('rollout');
  if (r !== null) {
    const m = /^R-(\d{1,9})$/.exec(r);
    if (!m) throw bad(`rollout ${JSON.stringify(r.slice(0, 40))}: ids look like R-17`);
    rollout = Number(m[1]);
  }
  let kinds: EventKind[] | null = null;
  const k = query.get('kind');
  if (k !== null) {
    const list = k.split(',').map((s) => s.trim());
    for (const x of list) if (!(EVENT_KINDS as readonly string[]).includes(x)) throw bad(`kind ${JSON.stringify(x.slice(0, 40))}: one or more of ${EVENT_KINDS.join(', ')}`);
    kinds = [...new Set(list as EventKind[])];
  }
  const header = Array.isArray(lastEventId) ? lastEventId[0] : lastEventId;
  const since = query.get('since');
  const after = header !== undefined && header !== '' ? eventId(header, 'Last-Event-ID') : since !== null ? eventId(since, 'since') : null;
  return { rollout, kinds, after };
}

/** A stored row as the API shows it. */
export function eventView(r: EventRow): RolloutEvent {
  const base = { id: r.id, rollout: `R-${r.rollout}`, at: new Date(r.at).toISOString() };
  const detail = (): Record<string, unknown> => {
    try {
      return r.detail ? (JSON.parse(r.detail) as Record<string, unknown>) : {};
    } catch {
      return {};
    }
  };
  switch (r.kind) {
    case 'alert':
      return { id: r.id, kind: 'alert', at: base.at, rollout: r.rollout === null ? null : base.rollout, event: r.code ?? '', state: r.to_state === 'resolved' ? 'resolved' : 'firing', tenant: r.tenant, agentId: r.agent_id, summary: r.reason ?? '', detail: detail() };
    case 'scale': {
      const d = detail();
      return { id: r.id, kind: 'scale', at: base.at, rollout: null, agentId: r.agent_id ?? '', tenant: r.tenant ?? '', stack: String(d.stack ?? ''), service: String(d.service ?? ''), from: Number(d.from ?? 0), to: Number(d.to ?? 0), reason: r.reason ?? '' };
    }
    case 'rollout':
      return { ...base, kind: 'rollout', from: r.from_state, to: r.to_state ?? '', reason: r.reason };
    case 'wave':
      return { ...base, kind: 'wave', wave: r.wave ?? 0 };
    case 'target':
      return { ...base, kind: 'target', agentId: r.agent_id ?? '', tenant: r.tenant ?? '', from: r.from_state ?? '', to: r.to_state ?? '', code: r.code };
    case 'directive':
      return { ...base, kind: 'directive', agentId: r.agent_id ?? '', tenant: r.tenant ?? '', from: r.from_state ?? '', to: r.to_state ?? '', seq: r.seq ?? 0, version: r.version };
    default: {
      const never: never = r.kind;
      return never;
    }
  }
}

interface Stream {
  res: ServerResponse;
  filter: EventFilter;
  /** The tenants this reader may see (null: all). */
  tenants: readonly string[] | null;
  /** Who reads (caps streams per person). */
  owner: string;
  cursor: number;
  /** Since when the socket has not drained (null: it has). */
  blockedSince: number | null;
  closed: boolean;
  /** A read is in flight: the next ring waits for it. */
  pumping: boolean;
  again: boolean;
}

export class EventStreams {
  readonly opts: EventStreamOptions;
  private readonly streams = new Set<Stream>();
  private readonly timers: NodeJS.Timeout[] = [];
  private rung = false;
  private closed = false;
  private readonly ring = () => {
    if (this.rung) return;
    this.rung = true;
    // A tick makes many transitions: one read per stream after it.
    setImmediate(() => {
      this.rung = false;
      for (const s of this.streams) this.pump(s);
    });
  };

  constructor(
    private readonly store: Store,
    private readonly doorbell: EventEmitter,
    private readonly cluster: Cluster,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
    opts: Partial<EventStreamOptions> = {},
  ) {
    this.opts = Object.freeze({ ...EVENT_DEFAULTS, ...opts });
    doorbell.on('transition', this.ring);
    cluster.on('events', this.ring);
    this.timers.push(
      setInterval(() => this.heartbeat(), this.opts.heartbeatMs),
      setInterval(() => {
        if (cluster.leader) void this.prune().catch((err: unknown) => this.log.warn({ err: (err as Error).message }, 'could not prune rollout events'));
      }, PRUNE_EVERY_MS),
    );
    for (const t of this.timers) t.unref();
  }

  /** Something else wrote events (alerts, autoscale changes): every stream reads what follows its cursor. */
  wake(): void {
    this.ring();
  }

  /** The newest event id ever written (0: none yet). */
  head(): Promise<number> {
    return this.store.rollouts.head();
  }

  get size(): number {
    return this.streams.size;
  }

  /** Open streams of one reader. */
  count(owner: string): number {
    let n = 0;
    for (const s of this.streams) if (s.owner === owner) n++;
    return n;
  }

  /**
   * Answers GET /v1/events with a stream that lasts until the client or the
   * hub closes it. `tenants`: what the reader may see (null: all).
   */
  async open(req: IncomingMessage, res: ServerResponse, filter: EventFilter, who: { owner: string; tenants: readonly string[] | null }): Promise<void> {
    if (this.closed) throw new FerryError('FERRY_E_UNAVAILABLE', 'the hub is stopping');
    const head = await this.head();
    const oldest = await this.store.rollouts.oldest();
    let after = filter.after ?? head;
    let gap: { after: number; oldest: number | null } | null = null;
    if (after > head) {
      gap = { after, oldest }; // an id from another database: from now on
      after = head;
    } else if (after < head && (oldest === null || after + 1 < oldest)) {
      gap = { after, oldest };
    }
    res.writeHead(200, {
      'content-type': `${SSE_CONTENT_TYPE}; charset=utf-8`,
      'cache-control': 'no-store',
      'x-accel-buffering': 'no', // nginx: do not hold events back
    });
    req.socket.setNoDelay(true);
    const s: Stream = { res, filter, tenants: who.tenants, owner: who.owner, cursor: after, blockedSince: null, closed: false, pumping: false, again: false };
    this.streams.add(s);
    res.on('close', () => {
      s.closed = true;
      this.streams.delete(s);
      this.log.debug({ cursor: s.cursor, streams: this.streams.size }, 'event stream closed');
    });
    res.on('drain', () => {
      s.blockedSince = null;
      this.pump(s);
    });
    let first = `retry: ${this.opts.retryMs}\n\n` + encodeSse({ id: after, event: 'ready', data: { after, head } });
    if (gap) first += encodeSse({ event: 'gap', data: { error: errorBody('FERRY_E_EVENTS_EXPIRED', `after event ${gap.after}; the oldest kept is ${gap.oldest ?? 'none'}`), ...gap } });
    this.log.debug({ after, rollout: filter.rollout, kinds: filter.kinds, gap: gap !== null }, 'event stream opened');
    if (this.write(s, first)) this.pump(s);
  }

  /** Writes what follows the stream's cursor, a batch at a time, while the socket takes it; one read at a time per stream. */
  private pump(s: Stream): void {
    if (s.pumping) {
      s.again = true;
      return;
    }
    s.pumping = true;
    void this.pumpAll(s)
      .catch((err: unknown) => this.log.warn({ err: (err as Error).message, cursor: s.cursor }, 'could not read rollout events'))
      .finally(() => {
        s.pumping = false;
        if (s.again && !s.closed) {
          s.again = false;
          this.pump(s);
        }
      });
  }

  private async pumpAll(s: Stream): Promise<void> {
    while (!s.closed && s.blockedSince === null) {
      s.again = false;
      const rows = await this.store.rollouts.events({ after: s.cursor, rollout: s.filter.rollout, kinds: s.filter.kinds, tenants: s.tenants, limit: this.opts.batch });
      if (s.closed || !rows.length) return;
      let text = '';
      for (const r of rows) text += encodeSse({ id: r.id, event: 'transition', data: eventView(r) });
      s.cursor = rows[rows.length - 1]!.id;
      if (!this.write(s, text) || rows.length < this.opts.batch) return;
    }
  }

  /** false when the socket is full: the stream waits for 'drain'. */
  private write(s: Stream, text: string): boolean {
    if (s.res.write(text)) return true;
    s.blockedSince ??= this.now();
    return false;
  }

  private heartbeat(): void {
    const now = this.now();
    for (const s of this.streams) {
      if (s.blockedSince === null) {
        this.write(s, SSE_HEARTBEAT);
        this.pump(s); // catches anything a missed doorbell left behind
      } else if (now - s.blockedSince >= this.opts.stallMs) {
        this.log.warn({ cursor: s.cursor, blockedMs: now - s.blockedSince }, 'event stream client stopped reading; closing it');
        this.end(s, 'FERRY_E_EVENTS_SLOW', `nothing read for ${Math.round((now - s.blockedSince) / 1000)} s; resume after event ${s.cursor}`);
      }
    }
  }

  /** Closes a stream with a final `end` event; a client that never reads it is cut off shortly after. */
  private end(s: Stream, code: 'FERRY_E_EVENTS_SLOW' | 'FERRY_E_UNAVAILABLE', detail: string): void {
    s.closed = true;
    this.streams.delete(s);
    s.res.end(encodeSse({ event: 'end', data: { error: errorBody(code, detail) } }));
    setTimeout(() => s.res.destroy(), 2000).unref();
  }

  /** Drops events past the retention (age and count); never the newest. */
  async prune(): Promise<number> {
    const head = await this.head();
    const kept = (await this.store.rollouts.firstAtOrAfter(this.now() - this.opts.retentionMs)) ?? head + 1;
    const below = Math.max(kept, head - this.opts.maxEvents + 1);
    const n = await this.store.rollouts.prune(below);
    if (n) this.log.info({ pruned: n, oldestKept: below }, 'rollout events pruned');
    return n;
  }

  /** Ends every stream (the hub is stopping) and stops listening. */
  close(): void {
    this.closed = true;
    this.doorbell.off('transition', this.ring);
    this.cluster.off('events', this.ring);
    for (const t of this.timers) clearInterval(t);
    for (const s of [...this.streams]) this.end(s, 'FERRY_E_UNAVAILABLE', 'the hub is stopping; reconnect with Last-Event-ID');
  }
}

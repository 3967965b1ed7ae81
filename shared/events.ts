// The event stream's wire format (GET /v1/events), shared by the hub, which
// writes it, and the CLI, which reads it: Server-Sent Events as the WHATWG
// HTML standard defines them, carrying rollout transitions, alerts and
// autoscale changes as JSON.
//
// Event types on the stream:
//   transition  a rollout transition, with `id:` (the durable, increasing event id)
//   ready       first on every connection: the stream is live after `after`;
//               its `id:` is that position, so a client that reconnects before any
//               transition arrives still resumes from the right place
//   gap         events the client asked for were pruned (or its id is from another
//               database): re-read current state, then carry on
//   end         last on a connection the hub closes itself (shutting down, client
//               not reading): reconnect with Last-Event-ID
import type { ErrorBody } from './errors.js';

export const EVENT_KINDS = ['rollout', 'wave', 'target', 'directive', 'alert', 'scale'] as const;
export type EventKind = (typeof EVENT_KINDS)[number];

interface Base {
  /** The event id: increasing, never reused; what Last-Event-ID / ?since= resume after. */
  id: number;
  rollout: string;
  /** ISO time of the transition. */
  at: string;
}
/** The rollout's own state: `from` is null when it was created. */
export interface RolloutStateEvent extends Base {
  kind: 'rollout';
  from: string | null;
  to: string;
  reason: string | null;
}
/** A wave started (1-based); its agents now wait for their directives. */
export interface WaveEvent extends Base {
  kind: 'wave';
  wave: number;
}
/** An agent's target state changed (done, failed with a code, ...). */
export interface TargetEvent extends Base {
  kind: 'target';
  agentId: string;
  tenant: string;
  from: string;
  to: string;
  code: string | null;
}
/** A directive was issued to an agent: `to` is issued (deploy) or reverting (rollback). */
export interface DirectiveEvent extends Base {
  kind: 'directive';
  agentId: string;
  tenant: string;
  from: string;
  to: string;
  seq: number;
  version: string | null;
}
/**
 * An alert (hub/checks/alerts.ts): `event` says what happened (check.failing,
 * check.recovered, check.flapping, agent.offline, agent.online, rollout.stuck,
 * rollout.moving, audit.alarm), `state` whether it is firing or resolved;
 * `repeat` marks a reminder of one still firing. `rollout` is set for rollout
 * alerts only.
 */
export interface AlertEvent {
  id: number;
  kind: 'alert';
  at: string;
  rollout: string | null;
  event: string;
  state: 'firing' | 'resolved';
  tenant: string | null;
  agentId: string | null;
  summary: string;
  detail: Record<string, unknown>;
}
/** An autoscaled service's replicas changed on an agent. */
export interface ScaleEvent {
  id: number;
  kind: 'scale';
  at: string;
  rollout: null;
  agentId: string;
  tenant: string;
  stack: string;
  service: string;
  from: number;
  to: number;
  reason: string;
}
export type RolloutEvent = RolloutStateEvent | WaveEvent | TargetEvent | DirectiveEvent | AlertEvent | ScaleEvent;

export interface ReadyData {
  /** Events after this id follow. */
  after: number;
  /** The newest event id when the stream opened. */
  head: number;
}
export interface GapData {
  error: ErrorBody;
  /** The id the client resumed after. */
  after: number;
  /** The oldest event still kept (null: none). */
  oldest: number | null;
}
export interface EndData {
  error: ErrorBody;
}

export const SSE_CONTENT_TYPE = 'text/event-stream';

/** One SSE message. `data` must be one line (JSON.stringify output is). */
export function encodeSse(m: { id?: number; event: string; data: unknown }): string {
  return `${m.id !== undefined ? `id: ${m.id}\n` : ''}event: ${m.event}\ndata: ${JSON.stringify(m.data)}\n\n`;
}

/** A comment line: ignored by clients, keeps proxies from cutting an idle stream. */
export const SSE_HEARTBEAT = ': keep-alive\n\n';

export interface SseMessage {
  /** The last event id seen on the stream so far (set by this or an earlier message). */
  lastEventId: string;
  event: string;
  data: string;
}

/**
 * Incremental SSE parser: feed it text chunks as they arrive (split anywhere,
 * CRLF, LF or CR line ends), get the complete messages. A line longer than
 * `maxLine` characters is refused, so a broken server cannot grow it forever.
 */
export class SseDecoder {
  #buf = '';
  #data: string[] = [];
  #event = '';
  #lastId = '';
  #retry: number | undefined;
  #skipLf = false;

  constructor(private readonly maxLine = 1 << 20) {}

  /** The reconnection time the server asked for with `retry:`, if any. */
  get retry(): number | undefined {
    return this.#retry;
  }

  get lastEventId(): string {
    return this.#lastId;
  }

  push(chunk: string): SseMessage[] {
    const out: SseMessage[] = [];
    let text = this.#buf + chunk;
    this.#buf = '';
    if (this.#skipLf && text.startsWith('\n')) text = text.slice(1);
    this.#skipLf = false;
    let start = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      this.#line(text.slice(start, i), out);
      if (c === 13) {
        if (i + 1 < text.length) {
          if (text.charCodeAt(i + 1) === 10) i++;
        } else this.#skipLf = true;
      }
      start = i + 1;
    }
    this.#buf = text.slice(start);
    if (this.#buf.length > this.maxLine) throw new Error(`event stream line longer than ${this.maxLine} characters`);
    return out;
  }

  #line(line: string, out: SseMessage[]): void {
    if (line === '') {
      if (this.#data.length) out.push({ lastEventId: this.#lastId, event: this.#event || 'message', data: this.#data.join('\n') });
      this.#data = [];
      this.#event = '';
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'data':
        this.#data.push(value);
        return;
      case 'event':
        this.#event = value;
        return;
      case 'id':
        if (!value.includes('\0')) this.#lastId = value;
        return;
      case 'retry':
        if (/^\d+$/.test(value)) this.#retry = Number(value);
        return;
      default:
        return; // unknown fields are ignored, as the standard says
    }
  }
}

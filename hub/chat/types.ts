// What the chat engine and its transports exchange. Every transport —
// console, Matrix, Slack, DingTalk, Feishu/Lark, WeCom, the generic webhook —
// turns its platform's messages into an `Inbound`, hands the engine a
// `ReplySink` for the answers to that message, and sends notices and late
// replies to a room with `send`.
import type { RoomRecord } from '../store/chat.js';
import type { Platform } from './limits.js';

export interface Inbound {
  /** The transport's name (`ferry chat transport ls`). */
  transport: string;
  platform: Platform;
  /** The platform's room (Matrix room id, Slack channel, DingTalk conversationId, …). */
  room: string;
  /** The platform's account of the sender (Matrix user id, Slack user id, …). */
  account: string;
  text: string;
  /** The platform's message id (the audit entry names it; replays are refused by it). */
  messageId: string;
  /** Where replies go: a thread root, when the platform threads. */
  thread?: string | null;
}

export type ReplyKind = 'ack' | 'result' | 'error' | 'help' | 'confirm' | 'notice';

export interface OutMessage {
  kind: ReplyKind;
  text: string;
  /** A request waiting for a decision: buttons where the platform has them, text commands everywhere. */
  confirm?: { code: string; actions: ('confirm' | 'approve' | 'cancel')[]; planHash: string };
  /** The audit entry this reply is about. */
  audit?: { log: string; index: number };
  link?: string;
  thread?: string | null;
  /** Idempotency key: the same key is the same message (Matrix transaction ids). */
  key?: string;
}

export type ReplySink = (m: OutMessage) => Promise<void>;

/** A platform said no; `retryAfterMs` when it asked to wait (429, rate-limit error codes). */
export class TransportError extends Error {
  constructor(
    message: string,
    readonly retryAfterMs: number | null = null,
    readonly permanent = false,
  ) {
    super(message);
    this.name = 'TransportError';
  }
}

export interface Transport {
  readonly name: string;
  readonly platform: Platform;
  /** Sends to a bound room (notices, late replies); throws TransportError. */
  send(room: RoomRecord, m: OutMessage): Promise<void>;
  /** Long-running work on the leader (Matrix /sync). */
  start?(): void;
  stop?(): Promise<void>;
}

/** A reply as plain text with its audit reference and link, for platforms without rich messages. */
export function plainText(m: OutMessage): string {
  const parts = [m.text];
  if (m.confirm) {
    const how = m.confirm.actions.map((a) => `\`ferry ${a} ${m.confirm!.code}\``).join(' · ');
    parts.push(how);
  }
  const tail = [m.audit ? `audit ${m.audit.log}#${m.audit.index}` : null, m.link ?? null].filter(Boolean);
  if (tail.length) parts.push(`[${tail.join(' · ')}]`);
  return parts.join('\n');
}

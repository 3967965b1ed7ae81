// DingTalk. Notices: the group's custom robot webhook, signed (HmacSHA256 of
// "timestamp\nsecret" keyed by the secret, milliseconds, base64, URL-encoded:
// hub/chat/signing.ts); 20 messages a minute (errcode 410100 when exceeded).
// Commands: the robot's outgoing callback (@the robot in a group), signed in
// its `timestamp` and `sign` headers with the robot's AppSecret; the first
// reply answers the callback itself, later ones go to its sessionWebhook
// while it lasts, else to the group's webhook.
import type { RoomRecord } from '../../store/chat.js';
import type { Settings } from '../config.js';
import { dingtalkUrl } from '../signing.js';
import { plainText, TransportError, type Inbound, type OutMessage, type Transport } from '../types.js';
import { refusedBy, sendJson } from './http.js';

/** errcodes DingTalk uses for "too fast". */
const RATE_CODES = new Set([410100, 130101]);

export function dingtalkMessage(m: OutMessage): Record<string, unknown> {
  return { msgtype: 'markdown', markdown: { title: 'Ferry', text: plainText(m) } };
}

export class DingtalkTransport implements Transport {
  readonly platform = 'dingtalk' as const;
  readonly appSecret: string;

  constructor(
    readonly name: string,
    settings: Settings,
    private readonly roomSettings: (room: RoomRecord) => Settings,
    private readonly now: () => number,
  ) {
    this.appSecret = settings.secret('appSecret');
  }

  async send(room: RoomRecord, m: OutMessage): Promise<void> {
    const s = this.roomSettings(room);
    await this.post(dingtalkUrl(s.secret('webhook'), s.secret('secret', true), this.now()), m);
  }

  /** Posts to a robot URL (the room's, signed, or a callback's sessionWebhook). */
  async post(url: string, m: OutMessage): Promise<void> {
    const a = await sendJson(url, dingtalkMessage(m));
    const code = Number(a.body.errcode ?? 0);
    if (RATE_CODES.has(code)) throw new TransportError(`${this.name}: errcode ${code} (rate limit)`, 60_000);
    if (a.status >= 400 || code !== 0) throw refusedBy('dingtalk', { ...a, status: a.status >= 400 ? a.status : 400 }, `errcode ${code} ${String(a.body.errmsg ?? '')}`);
  }
}

interface DingtalkCallback {
  msgtype?: string;
  text?: { content?: string };
  msgId?: string;
  conversationId?: string;
  senderId?: string;
  senderStaffId?: string;
  sessionWebhook?: string;
  sessionWebhookExpiredTime?: number;
}

export function dingtalkInbound(transport: string, body: DingtalkCallback, now: number): { inbound: Inbound; sessionWebhook: string | null } | null {
  if (body.msgtype !== 'text' || !body.text?.content || !body.conversationId || !body.msgId) return null;
  const live = body.sessionWebhook && (body.sessionWebhookExpiredTime ?? 0) > now;
  return {
    inbound: { transport, platform: 'dingtalk', room: body.conversationId, account: body.senderStaffId || body.senderId || '', text: body.text.content.trim(), messageId: body.msgId, thread: null },
    sessionWebhook: live ? body.sessionWebhook! : null,
  };
}

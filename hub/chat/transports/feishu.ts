// Feishu / Lark. Notices: the group's custom bot webhook, signed (HmacSHA256
// keyed by "timestamp\nsecret" over an empty message, seconds, base64:
// hub/chat/signing.ts); 5 a second and 100 a minute (code 9499 when
// exceeded). Commands: the app's event subscription (im.message.receive_v1),
// with the Verification Token, and — with an Encrypt Key — an encrypted body
// and X-Lark-Signature; the URL check (url_verification) is answered with its
// challenge. Replies go to the group's webhook.
import type { RoomRecord } from '../../store/chat.js';
import type { Settings } from '../config.js';
import { feishuSigned } from '../signing.js';
import { plainText, TransportError, type Inbound, type OutMessage, type Transport } from '../types.js';
import { refusedBy, sendJson } from './http.js';

const RATE_CODES = new Set([9499, 11232, 11233]);

export class FeishuTransport implements Transport {
  readonly platform = 'feishu' as const;
  readonly verificationToken: string;
  readonly encryptKey: string | undefined;

  constructor(
    readonly name: string,
    settings: Settings,
    private readonly roomSettings: (room: RoomRecord) => Settings,
    private readonly now: () => number,
  ) {
    this.verificationToken = settings.secret('verificationToken');
    this.encryptKey = settings.secret('encryptKey', true);
  }

  async send(room: RoomRecord, m: OutMessage): Promise<void> {
    const s = this.roomSettings(room);
    const a = await sendJson(s.secret('webhook'), { ...feishuSigned(s.secret('secret', true), this.now()), msg_type: 'text', content: { text: plainText(m) } });
    const code = Number(a.body.code ?? a.body.StatusCode ?? 0);
    if (RATE_CODES.has(code)) throw new TransportError(`${this.name}: code ${code} (rate limit)`, 1000);
    if (a.status >= 400 || code !== 0) throw refusedBy('feishu', { ...a, status: a.status >= 400 ? a.status : 400 }, `code ${code} ${String(a.body.msg ?? '')}`);
  }
}

export interface FeishuEvent {
  type?: string;
  challenge?: string;
  token?: string;
  schema?: string;
  header?: { event_id?: string; token?: string; event_type?: string; create_time?: string };
  event?: { sender?: { sender_id?: { open_id?: string; user_id?: string }; sender_type?: string }; message?: { message_id?: string; chat_id?: string; message_type?: string; content?: string; root_id?: string } };
}

export function feishuInbound(transport: string, e: FeishuEvent): Inbound | null {
  const msg = e.event?.message;
  if (e.header?.event_type !== 'im.message.receive_v1' || msg?.message_type !== 'text' || !msg.chat_id || !msg.message_id || e.event?.sender?.sender_type === 'app') return null;
  let text = '';
  try {
    text = String((JSON.parse(msg.content ?? '{}') as { text?: string }).text ?? '');
  } catch {
    return null;
  }
  // Mentions arrive as @_user_1 placeholders.
  text = text.replace(/@_user_\d+\s*/g, '').trim();
  return { transport, platform: 'feishu', room: msg.chat_id, account: e.event?.sender?.sender_id?.open_id ?? e.event?.sender?.sender_id?.user_id ?? '', text, messageId: msg.message_id, thread: msg.root_id ?? null };
}

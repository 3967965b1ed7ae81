// WeCom (企业微信). Notices: the group robot's webhook (the key is in its
// URL); 20 messages a minute (errcode 45009 when exceeded). Commands: a
// callback signed and encrypted as WeCom does (WXBizMsgCrypt: msg_signature
// over token, timestamp, nonce and the ciphertext; AES-256-CBC with the
// EncodingAESKey; hub/chat/signing.ts) — an app's XML messages or an
// intelligent robot's JSON ones. The URL check (GET with echostr) is answered
// with the decrypted echostr. Replies go to the robot's response_url when the
// message has one, else to the group's webhook.
import type { RoomRecord } from '../../store/chat.js';
import type { Settings } from '../config.js';
import { plainText, TransportError, type Inbound, type OutMessage, type Transport } from '../types.js';
import { refusedBy, sendJson } from './http.js';

const RATE_CODES = new Set([45009]);

export class WecomTransport implements Transport {
  readonly platform = 'wecom' as const;
  readonly token: string;
  readonly encodingAesKey: string;
  readonly receiveId: string | undefined;

  constructor(
    readonly name: string,
    settings: Settings,
    private readonly roomSettings: (room: RoomRecord) => Settings,
  ) {
    this.token = settings.secret('token');
    this.encodingAesKey = settings.secret('encodingAesKey');
    this.receiveId = settings.text('receiveId');
  }

  async send(room: RoomRecord, m: OutMessage): Promise<void> {
    await this.post(this.roomSettings(room).secret('webhook'), m);
  }

  async post(url: string, m: OutMessage): Promise<void> {
    const a = await sendJson(url, { msgtype: 'markdown', markdown: { content: plainText(m) } });
    const code = Number(a.body.errcode ?? 0);
    if (RATE_CODES.has(code)) throw new TransportError(`${this.name}: errcode ${code} (rate limit)`, 60_000);
    if (a.status >= 400 || code !== 0) throw refusedBy('wecom', { ...a, status: a.status >= 400 ? a.status : 400 }, `errcode ${code} ${String(a.body.errmsg ?? '')}`);
  }
}

/** One field of WeCom's flat XML (CDATA or plain). */
export function xmlField(xml: string, name: string): string | undefined {
  const m = new RegExp(`<${name}>\\s*(?:<!\\[CDATA\\[([\\s\\S]*?)\\]\\]>|([^<]*))\\s*</${name}>`).exec(xml);
  return m ? (m[1] ?? m[2] ?? '').trim() : undefined;
}

/** The ciphertext of a callback body: XML <Encrypt> or JSON {"encrypt"}. */
export function wecomCiphertext(body: string): string | undefined {
  const t = body.trim();
  if (t.startsWith('<')) return xmlField(t, 'Encrypt');
  try {
    const v = JSON.parse(t) as { encrypt?: unknown };
    return typeof v.encrypt === 'string' ? v.encrypt : undefined;
  } catch {
    return undefined;
  }
}

export function wecomInbound(transport: string, message: string): { inbound: Inbound; responseUrl: string | null } | null {
  const t = message.trim();
  if (t.startsWith('<')) {
    if (xmlField(t, 'MsgType') !== 'text') return null;
    const text = xmlField(t, 'Content');
    const msgId = xmlField(t, 'MsgId');
    if (!text || !msgId) return null;
    return { inbound: { transport, platform: 'wecom', room: `agent-${xmlField(t, 'AgentID') ?? '0'}`, account: xmlField(t, 'FromUserName') ?? '', text, messageId: msgId, thread: null }, responseUrl: null };
  }
  const v = JSON.parse(t) as { msgid?: string; chatid?: string; chattype?: string; from?: { userid?: string }; msgtype?: string; text?: { content?: string }; response_url?: string };
  if (v.msgtype !== 'text' || !v.text?.content || !v.msgid) return null;
  const text = v.text.content.replace(/^@\S+\s*/, '').trim();
  return { inbound: { transport, platform: 'wecom', room: v.chatid ?? `user-${v.from?.userid ?? ''}`, account: v.from?.userid ?? '', text, messageId: v.msgid, thread: null }, responseUrl: v.response_url ?? null };
}

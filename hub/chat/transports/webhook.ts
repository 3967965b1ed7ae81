// A generic signed webhook for anything else. In: POST /v1/chat/hooks/webhook/NAME
// with {"room","user","text","id"} signed in x-ferry-timestamp (ms) and
// x-ferry-signature (v1=hex HMAC-SHA256 of "timestamp.body" with the
// transport's secret); the answer carries every reply. Out: notices POSTed
// to the room's URL as {"room","kind","text","audit","link","confirm"},
// signed the same way.
import type { RoomRecord } from '../../store/chat.js';
import type { Settings } from '../config.js';
import { WEBHOOK_HEADERS, webhookSignature } from '../signing.js';
import { plainText, TransportError, type OutMessage, type Transport } from '../types.js';
import { refusedBy, sendJson } from './http.js';

export class WebhookTransport implements Transport {
  readonly platform = 'webhook' as const;
  readonly secret: string;

  constructor(
    readonly name: string,
    settings: Settings,
    private readonly roomSettings: (room: RoomRecord) => Settings,
    private readonly now: () => number,
  ) {
    this.secret = settings.secret('secret');
  }

  async send(room: RoomRecord, m: OutMessage): Promise<void> {
    const url = this.roomSettings(room).secret('url', true);
    if (!url) throw new TransportError(`${this.name}: room ${room.room} has no url for notices`, null, true);
    const body = JSON.stringify({ room: room.room, kind: m.kind, text: m.text, plain: plainText(m), audit: m.audit ?? null, link: m.link ?? null, confirm: m.confirm ?? null, key: m.key ?? null });
    const ts = this.now();
    const a = await sendJson(url, JSON.parse(body), { headers: { [WEBHOOK_HEADERS.timestamp]: String(ts), [WEBHOOK_HEADERS.signature]: webhookSignature(this.secret, ts, body) } });
    if (a.status >= 400) throw refusedBy('webhook', a, String(a.body.error ?? ''));
  }
}

// Each chat platform's signing and encryption, as the platform documents it.
// Pure (time is an input). Outgoing robots: DingTalk, Feishu/Lark, WeCom,
// Ferry's own webhook. Incoming callbacks: Slack, DingTalk, Feishu/Lark,
// WeCom, Ferry's own webhook.
//
// DingTalk and Feishu both sign `timestamp + "\n" + secret` with HmacSHA256,
// but DingTalk keys the HMAC with the secret and signs that string
// (milliseconds), while Feishu keys it with that string and signs nothing
// (seconds). test/unit/chat-signing.test.ts fails if the two are swapped.
import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { FerryError } from '../../shared/errors.js';

const hmac = (key: string | Buffer, msg: string | Buffer) => createHmac('sha256', key).update(msg).digest();

export function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

const refused = (why: string) => new FerryError('FERRY_E_CHAT_SIGNATURE', why);

/** Refuses a request stamped outside `windowMs` of now (stale or from the future). */
export function checkFresh(stampMs: number, now: number, windowMs: number, what: string): void {
  if (!Number.isFinite(stampMs)) throw refused(`${what}: no timestamp`);
  if (Math.abs(now - stampMs) > windowMs) throw refused(`${what}: timestamp ${Math.round((now - stampMs) / 1000)} s from the hub's clock, more than ${windowMs / 1000} s`);
}

// ---- Slack: v0 signatures over the raw body, 5 minutes --------------------------------------

export const SLACK_WINDOW_MS = 5 * 60_000;

export function slackSignature(signingSecret: string, timestamp: string, body: string): string {
  return `v0=${hmac(signingSecret, `v0:${timestamp}:${body}`).toString('hex')}`;
}

export function verifySlack(signingSecret: string, headers: { timestamp?: string; signature?: string }, body: string, now: number): void {
  if (!headers.timestamp || !/^\d{1,12}$/.test(headers.timestamp)) throw refused('Slack: no X-Slack-Request-Timestamp');
  checkFresh(Number(headers.timestamp) * 1000, now, SLACK_WINDOW_MS, 'Slack');
  if (!headers.signature || !safeEqual(headers.signature, slackSignature(signingSecret, headers.timestamp, body))) throw refused('Slack: X-Slack-Signature does not match');
}

// ---- DingTalk: HmacSHA256(key = secret, "timestamp\nsecret"), milliseconds, base64 ---------------

/** DingTalk documents an hour for callbacks; requests carry a msgId the hub remembers for replays. */
export const DINGTALK_WINDOW_MS = 60 * 60_000;

export function dingtalkSign(secret: string, timestampMs: number): string {
  return hmac(secret, `${timestampMs}\n${secret}`).toString('base64');
}

/** The robot webhook URL with `timestamp` and the URL-encoded `sign`. */
export function dingtalkUrl(webhook: string, secret: string | undefined, now: number): string {
  if (!secret) return webhook;
  const u = new URL(webhook);
  u.searchParams.set('timestamp', String(now));
  u.searchParams.set('sign', dingtalkSign(secret, now));
  return u.toString();
}

/** An outgoing-robot callback: headers `timestamp` (ms) and `sign`, keyed with the robot's AppSecret. */
export function verifyDingtalk(appSecret: string, headers: { timestamp?: string; sign?: string }, now: number): void {
  if (!headers.timestamp || !/^\d{1,15}$/.test(headers.timestamp)) throw refused('DingTalk: no timestamp header');
  checkFresh(Number(headers.timestamp), now, DINGTALK_WINDOW_MS, 'DingTalk');
  if (!headers.sign || !safeEqual(headers.sign, dingtalkSign(appSecret, Number(headers.timestamp)))) throw refused('DingTalk: sign does not match');
}

// ---- Feishu/Lark: HmacSHA256(key = "timestamp\nsecret", ""), seconds, base64 -------------------

export const FEISHU_WINDOW_MS = 5 * 60_000;

export function feishuSign(secret: string, timestampS: number): string {
  return hmac(`${timestampS}\n${secret}`, '').toString('base64');
}

/** The fields a signed Feishu custom-bot message carries. */
export function feishuSigned(secret: string | undefined, now: number): Record<string, string> {
  if (!secret) return {};
  const ts = Math.floor(now / 1000);
  return { timestamp: String(ts), sign: feishuSign(secret, ts) };
}

/** Event callbacks: X-Lark-Signature = hex sha256(timestamp + nonce + encryptKey + body). */
export function feishuCallbackSignature(timestamp: string, nonce: string, encryptKey: string, body: string): string {
  return createHash('sha256').update(timestamp + nonce + encryptKey + body).digest('hex');
}

export function verifyFeishu(encryptKey: string, headers: { timestamp?: string; nonce?: string; signature?: string }, body: string, now: number): void {
  if (!headers.timestamp || !/^\d{1,12}$/.test(headers.timestamp) || !headers.nonce) throw refused('Feishu: no X-Lark-Request-Timestamp / X-Lark-Request-Nonce');
  checkFresh(Number(headers.timestamp) * 1000, now, FEISHU_WINDOW_MS, 'Feishu');
  if (!headers.signature || !safeEqual(headers.signature, feishuCallbackSignature(headers.timestamp, headers.nonce, encryptKey, body))) throw refused('Feishu: X-Lark-Signature does not match');
}

/** `{"encrypt": …}`: AES-256-CBC, key sha256(encryptKey), the IV the first 16 bytes, PKCS#7. */
export function feishuDecrypt(encryptKey: string, encrypt: string): string {
  const key = createHash('sha256').update(encryptKey).digest();
  const buf = Buffer.from(encrypt, 'base64');
  if (buf.length < 32 || buf.length % 16 !== 0) throw refused('Feishu: encrypt is not AES-CBC ciphertext');
  try {
    const d = createDecipheriv('aes-256-cbc', key, buf.subarray(0, 16));
    return Buffer.concat([d.update(buf.subarray(16)), d.final()]).toString('utf8');
  } catch {
    throw refused('Feishu: cannot decrypt (wrong Encrypt Key?)');
  }
}

/** What Feishu does (tests and the bench play Feishu with it). */
export function feishuEncrypt(encryptKey: string, plain: string, iv = randomBytes(16)): string {
  const c = createCipheriv('aes-256-cbc', createHash('sha256').update(encryptKey).digest(), iv);
  return Buffer.concat([iv, c.update(plain, 'utf8'), c.final()]).toString('base64');
}

// ---- WeCom: the key is in the robot URL; callbacks are WXBizMsgCrypt -------------------------

export const WECOM_WINDOW_MS = 5 * 60_000;

/** msg_signature = sha1 of token, timestamp, nonce and the ciphertext, sorted and joined. */
export function wecomSignature(token: string, timestamp: string, nonce: string, encrypted: string): string {
  return createHash('sha1').update([token, timestamp, nonce, encrypted].sort().join('')).digest('hex');
}

export function verifyWecom(token: string, q: { msg_signature?: string; timestamp?: string; nonce?: string }, encrypted: string, now: number): void {
  if (!q.timestamp || !/^\d{1,12}$/.test(q.timestamp) || !q.nonce) throw refused('WeCom: no timestamp / nonce');
  checkFresh(Number(q.timestamp) * 1000, now, WECOM_WINDOW_MS, 'WeCom');
  if (!q.msg_signature || !safeEqual(q.msg_signature, wecomSignature(token, q.timestamp, q.nonce, encrypted))) throw refused('WeCom: msg_signature does not match');
}

function wecomKey(encodingAesKey: string): Buffer {
  const key = Buffer.from(`${encodingAesKey}=`, 'base64');
  if (encodingAesKey.length !== 43 || key.length !== 32) throw new FerryError('FERRY_E_CHAT_SECRET', 'WeCom EncodingAESKey: 43 characters');
  return key;
}

/**
 * AES-256-CBC with the key base64(EncodingAESKey + "="), the IV its first 16
 * bytes and PKCS#7 padding to 32 bytes, over random(16) + length(4, network
 * order) + message + receiveid. Returns the message and its receiveid.
 */
export function wecomDecrypt(encodingAesKey: string, encrypted: string): { message: string; receiveId: string } {
  const key = wecomKey(encodingAesKey);
  let plain: Buffer;
  try {
    const d = createDecipheriv('aes-256-cbc', key, key.subarray(0, 16));
    d.setAutoPadding(false);
    plain = Buffer.concat([d.update(Buffer.from(encrypted, 'base64')), d.final()]);
  } catch {
    throw refused('WeCom: cannot decrypt (wrong EncodingAESKey?)');
  }
  const pad = plain[plain.length - 1]!;
  if (pad < 1 || pad > 32 || plain.length < 20 + pad) throw refused('WeCom: bad padding');
  plain = plain.subarray(0, plain.length - pad);
  const len = plain.readUInt32BE(16);
  if (20 + len > plain.length) throw refused('WeCom: bad length');
  return { message: plain.subarray(20, 20 + len).toString('utf8'), receiveId: plain.subarray(20 + len).toString('utf8') };
}

/** What WeCom does (tests play WeCom with it). */
export function wecomEncrypt(encodingAesKey: string, message: string, receiveId: string, random = randomBytes(16)): string {
  const key = wecomKey(encodingAesKey);
  const msg = Buffer.from(message, 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(msg.length);
  const body = Buffer.concat([random, len, msg, Buffer.from(receiveId, 'utf8')]);
  const pad = 32 - (body.length % 32);
  const c = createCipheriv('aes-256-cbc', key, key.subarray(0, 16));
  c.setAutoPadding(false);
  return Buffer.concat([c.update(Buffer.concat([body, Buffer.alloc(pad, pad)])), c.final()]).toString('base64');
}

// ---- Ferry's own webhook: v1=hex HMAC-SHA256(secret, timestamp "." body), milliseconds -------------

export const WEBHOOK_WINDOW_MS = 5 * 60_000;
export const WEBHOOK_HEADERS = { timestamp: 'x-ferry-timestamp', signature: 'x-ferry-signature' } as const;

export function webhookSignature(secret: string, timestampMs: number | string, body: string): string {
  return `v1=${hmac(secret, `${timestampMs}.${body}`).toString('hex')}`;
}

export function verifyWebhook(secret: string, headers: { timestamp?: string; signature?: string }, body: string, now: number): void {
  if (!headers.timestamp || !/^\d{1,15}$/.test(headers.timestamp)) throw refused(`webhook: no ${WEBHOOK_HEADERS.timestamp}`);
  checkFresh(Number(headers.timestamp), now, WEBHOOK_WINDOW_MS, 'webhook');
  if (!headers.signature || !safeEqual(headers.signature, webhookSignature(secret, headers.timestamp, body))) throw refused(`webhook: ${WEBHOOK_HEADERS.signature} does not match`);
}

// Transport and room settings per platform, validated once (zod, strict),
// secrets sealed before they are stored (hub/chat/secrets.ts) and shown only
// as "set (encrypted)" or "file PATH".
import { z } from 'zod';
import { FerryError } from '../../shared/errors.js';
import { parseWith } from '../../shared/validation.js';
import type { Platform } from './limits.js';
import { isStoredSecret, secretView, type SecretBox, type StoredSecret } from './secrets.js';

/** A secret as given to the API: its value, or a file on the hub's host to read it from. */
const Secret = z.union([z.strictObject({ value: z.string().min(1).max(4096) }), z.strictObject({ file: z.string().min(1).max(1024) })]);
const Url = z.string().url().max(2000);

export const TRANSPORT_CONFIG = {
  console: z.strictObject({}),
  /** A bot account on a Matrix homeserver (client-server API, access token). */
  matrix: z.strictObject({ homeserver: Url, accessToken: Secret, userId: z.string().max(255).optional() }),
  /** A Slack app: slash command and interactivity request URLs point at the hub; replies through response_url, notices by chat.postMessage. */
  slack: z.strictObject({ signingSecret: Secret, botToken: Secret.optional(), apiUrl: Url.optional() }),
  /** A DingTalk robot receiving @messages (outgoing robot); AppSecret signs its callbacks. */
  dingtalk: z.strictObject({ appSecret: Secret }),
  /** A Feishu/Lark app's event subscription: Verification Token, and the Encrypt Key when events are encrypted. */
  feishu: z.strictObject({ verificationToken: Secret, encryptKey: Secret.optional() }),
  /** A WeCom app or intelligent robot callback: Token and EncodingAESKey; receiveId is the CorpID (empty for robots). */
  wecom: z.strictObject({ token: Secret, encodingAesKey: Secret, receiveId: z.string().max(128).optional() }),
  /** Anything else: requests in and notices out signed with HMAC-SHA256 over timestamp and body. */
  webhook: z.strictObject({ secret: Secret }),
} satisfies Record<Platform, z.ZodType>;

export const ROOM_CONFIG = {
  console: z.strictObject({}),
  matrix: z.strictObject({}),
  /** Without a bot token: an incoming-webhook URL for the channel's notices. */
  slack: z.strictObject({ webhook: Secret.optional() }),
  /** The group's custom robot: its webhook URL (with access_token) and its signing secret (SEC…). */
  dingtalk: z.strictObject({ webhook: Secret, secret: Secret.optional() }),
  /** The group's custom bot: its webhook URL and its signing secret. */
  feishu: z.strictObject({ webhook: Secret, secret: Secret.optional() }),
  /** The group robot's webhook URL (the key is in it). */
  wecom: z.strictObject({ webhook: Secret }),
  /** Where notices for the room go, signed with the transport's secret. */
  webhook: z.strictObject({ url: Secret.optional() }),
} satisfies Record<Platform, z.ZodType>;

export const SUBSCRIPTIONS = ['rollouts', 'agents', 'alarms', 'releases'] as const;
export type Subscription = (typeof SUBSCRIPTIONS)[number];

export function isPlatform(p: string): p is Platform {
  return Object.hasOwn(TRANSPORT_CONFIG, p);
}

/** Validates settings and seals every secret in them; returns the JSON to store. */
export function sealConfig(kind: 'transport' | 'room', platform: Platform, input: unknown, box: SecretBox): string {
  const schema = (kind === 'transport' ? TRANSPORT_CONFIG : ROOM_CONFIG)[platform];
  const cfg = parseWith(schema, input ?? {}, kind === 'transport' ? 'config' : 'room config') as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(cfg)) out[k] = typeof v === 'object' && v !== null && ('value' in v || 'file' in v) ? box.seal(v as { value: string } | { file: string }) : v;
  return JSON.stringify(out);
}

/** Settings as views show them: secrets only as how they are kept. */
export function configView(stored: string): Record<string, unknown> {
  const cfg = JSON.parse(stored) as Record<string, unknown>;
  return Object.fromEntries(Object.entries(cfg).map(([k, v]) => [k, isStoredSecret(v) ? secretView(v) : v]));
}

/** Opened settings: secrets as their values (in memory only, for the transport). */
export class Settings {
  private readonly cfg: Record<string, unknown>;

  constructor(
    stored: string,
    private readonly box: SecretBox,
  ) {
    this.cfg = JSON.parse(stored) as Record<string, unknown>;
  }

  secret(name: string): string;
  secret(name: string, optional: true): string | undefined;
  secret(name: string, optional?: true): string | undefined {
    const v = this.cfg[name];
    if (v === undefined && optional) return undefined;
    if (!isStoredSecret(v)) throw new FerryError('FERRY_E_CHAT_SECRET', `${name} is not set`);
    return this.box.open(v as StoredSecret);
  }

  text(name: string): string | undefined {
    const v = this.cfg[name];
    return typeof v === 'string' ? v : undefined;
  }
}

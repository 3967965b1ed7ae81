// ferry-hub configuration: flags with environment twins, validated once with
// defaults, then frozen.
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { FerryError } from '../shared/errors.js';
import { durationMs } from '../shared/duration.js';
import { LOG_LEVELS } from '../shared/logger.js';
import type { AlertOptions } from './checks/rules.js';

export const TICK_MIN_MS = 10;
export const TICK_MAX_MS = 60_000;
const TICK_RANGE = `--tick (FERRY_HUB_TICK_MS) takes whole milliseconds from ${TICK_MIN_MS} to ${TICK_MAX_MS}, e.g. --tick 250`;

const flag = z.union([z.boolean(), z.enum(['1', 'true', 'yes', '0', 'false', 'no'])]).transform((v) => v === true || v === '1' || v === 'true' || v === 'yes');

export const ServeConfig = z.strictObject({
  dataDir: z.string().min(1),
  /** postgres:// URL of a store shared by several replicas; absent: the sqlite file in dataDir. */
  database: z.string().regex(/^postgres(ql)?:\/\//, '--database takes a postgres:// URL').optional(),
  dbPool: z.coerce.number().int().min(1).max(500).default(10),
  dbStatementTimeoutMs: z.coerce.number().int().min(0).max(3_600_000).default(30_000),
  dbCa: z.string().optional(),
  listen: z.string().regex(/^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$/, 'HOST:PORT'),
  tlsCert: z.string().optional(),
  tlsKey: z.string().optional(),
  publicUrl: z.url().optional(),
  /** Serve plain HTTP on a non-loopback address (a lab network); warned about at every start. */
  insecureHttp: flag.default(false),
  rateLimit: z.coerce.number().int().min(0).max(1_000_000).default(3000),
  heartbeatMs: z.coerce.number().int().min(100).max(600_000).default(15_000),
  checkpointMs: z.coerce.number().int().min(100).max(86_400_000).default(60_000),
  /** The rollout scheduler's periodic tick (bake times, retries, timeouts); acks and reports tick it sooner. */
  tickMs: z.coerce
    .number({ error: TICK_RANGE })
    .int(TICK_RANGE)
    .min(TICK_MIN_MS, TICK_RANGE)
    .max(TICK_MAX_MS, TICK_RANGE)
    .default(1000),
  /** The vendor's registries as the hub reads them for agents (hub/registry/). */
  registryCredentials: z.string().optional(),
  registryInsecure: z.string().max(2000).optional(),
  registryPerAgent: z.coerce.number().int().min(1).max(256).default(8),
  registryPerHub: z.coerce.number().int().min(1).max(10_000).default(128),
  logLevel: z.enum(LOG_LEVELS).default('info'),
  /** GET /metrics also on this address, without credentials (hub/metrics/serve.ts). */
  metricsListen: z.string().regex(/^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$/, '--metrics-listen takes HOST:PORT').optional(),
  /** Alert notices POSTed here, signed with the secret in alertWebhookSecretFile. */
  alertWebhook: z.url({ protocol: /^https?$/, error: '--alert-webhook takes an http:// or https:// URL' }).optional(),
  alertWebhookSecretFile: z.string().optional(),
  alertOffline: z.string().optional(),
  alertStuck: z.string().optional(),
  alertRepeat: z.string().optional(),
  checkHistory: z.string().optional(),
});
export type ServeConfig = Readonly<z.infer<typeof ServeConfig>>;

export function loadServeConfig(raw: Record<string, unknown>): ServeConfig {
  const r = ServeConfig.safeParse(Object.fromEntries(Object.entries(raw).filter(([, v]) => v !== undefined)));
  if (!r.success) {
    const i = r.error.issues[0];
    // Messages that name their flag stand alone; others are prefixed with the setting's name.
    const msg = i?.message ?? 'invalid';
    throw new FerryError('FERRY_E_CONFIG_INVALID', msg.startsWith('--') ? msg : `${i?.path.join('.') ?? '?'}: ${msg}`);
  }
  if (!!r.data.tlsCert !== !!r.data.tlsKey) throw new FerryError('FERRY_E_CONFIG_INVALID', '--tls-cert and --tls-key go together');
  const { host } = splitListen(r.data.listen);
  if (!isLoopback(host)) {
    if (!r.data.publicUrl) throw new FerryError('FERRY_E_CONFIG_INVALID', `--listen ${r.data.listen} is reachable from other hosts: give --public-url (the URL agents dial, e.g. https://hub.example.com:7443), so handshakes are bound to it`);
    if (!r.data.tlsCert && !r.data.insecureHttp) {
      throw new FerryError('FERRY_E_CONFIG_INVALID', `--listen ${r.data.listen} is reachable from other hosts: give --tls-cert and --tls-key, or --insecure-http for a closed lab network (tokens and passwords then cross it in clear)`);
    }
  }
  if (r.data.publicUrl && !/^https?:$/.test(new URL(r.data.publicUrl).protocol)) throw new FerryError('FERRY_E_CONFIG_INVALID', '--public-url: an http:// or https:// URL');
  if (!!r.data.alertWebhook !== !!r.data.alertWebhookSecretFile) throw new FerryError('FERRY_E_CONFIG_INVALID', '--alert-webhook and --alert-webhook-secret-file go together: notices are always signed');
  for (const [flag, v] of [['--alert-offline', r.data.alertOffline], ['--alert-stuck', r.data.alertStuck], ['--alert-repeat', r.data.alertRepeat], ['--check-history', r.data.checkHistory]] as const) {
    if (v !== undefined) durationMs(v, flag); // FERRY_E_VALIDATION naming the flag
  }
  return Object.freeze(r.data);
}

/** The alert settings the hub takes, from the flags (durations parsed once, here). */
export function alertSettings(cfg: ServeConfig): { alerts: Partial<AlertOptions>; webhook?: { url: string; secret: string } } {
  const ms = (v: string | undefined, flag: string) => (v === undefined ? undefined : durationMs(v, flag));
  const alerts = Object.fromEntries(
    Object.entries({ offlineMs: ms(cfg.alertOffline, '--alert-offline'), stuckMs: ms(cfg.alertStuck, '--alert-stuck'), repeatMs: ms(cfg.alertRepeat, '--alert-repeat'), historyMs: ms(cfg.checkHistory, '--check-history') }).filter(([, v]) => v !== undefined),
  ) as Partial<AlertOptions>;
  if (!cfg.alertWebhook) return { alerts };
  const secret = readPem(cfg.alertWebhookSecretFile!, 'alert-webhook-secret-file').toString('utf8').trim();
  if (secret.length < 16) throw new FerryError('FERRY_E_CONFIG_INVALID', `--alert-webhook-secret-file ${cfg.alertWebhookSecretFile}: the secret is shorter than 16 characters`);
  return { alerts, webhook: { url: cfg.alertWebhook, secret } };
}

/** Whether only this machine can reach `host` (127.0.0.0/8, ::1, localhost). */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase();
  return h === 'localhost' || h === '::1' || /^127(\.\d{1,3}){3}$/.test(h);
}

export function splitListen(listen: string): { host: string; port: number } {
  const i = listen.lastIndexOf(':');
  const host = listen.slice(0, i).replace(/^\[|\]$/g, '');
  const port = Number(listen.slice(i + 1));
  if (port > 65535) throw new FerryError('FERRY_E_CONFIG_INVALID', `listen: port ${port}`);
  return { host, port };
}

export function readPem(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new FerryError('FERRY_E_CONFIG_INVALID', `${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

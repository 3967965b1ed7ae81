// ferry-hub configuration: flags with environment twins, validated once with
// defaults, then frozen.
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { FerryError } from '../shared/errors.js';
import { LOG_LEVELS } from '../shared/logger.js';

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
  return Object.freeze(r.data);
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

// ferry-agent configuration. Sources, strongest first: command-line flags,
// their environment twins (FERRY_AGENT_*), the YAML config file, defaults.
// Proxy settings fall back to https_proxy/http_proxy/no_proxy. Validated once,
// then frozen.
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { FerryError } from '../shared/errors.js';
import { LOG_LEVELS } from '../shared/logger.js';
import { proxyFromEnv, type ProxySettings } from './proxy.js';
import { DEFAULT_MAX_CLOCK_SKEW_MS } from './verify.js';

const ProxyConfig = z.strictObject({
  https: z.string().optional(),
  http: z.string().optional(),
  noProxy: z.string().optional(),
});

const RegistryEndpoint = z.strictObject({
  /** http(s)://host[:port] of the registry API. */
  url: z.url({ protocol: /^https?$/ }).refine((u) => new URL(u).pathname === '/' && !new URL(u).search && !new URL(u).username, 'http(s)://host[:port] with no path, query or user'),
  username: z.string().optional(),
  password: z.string().optional(),
  /** Extra CA (PEM) for this registry's certificate; default bankRegistry.caFile. */
  caFile: z.string().optional(),
});

const REPO_PATH = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;

/** The institution's own registry, where the relay puts every image a release pins. */
const BankRegistry = z.strictObject({
  primary: RegistryEndpoint,
  standbys: z.array(RegistryEndpoint).max(8).optional(),
  /** push: the agent pushes to each standby too; verify: the registry replicates, the agent checks. */
  standbyMode: z.enum(['push', 'verify']).optional(),
  /** Repository namespace for the vendor's images, e.g. vendor/acme; nothing outside it is ever touched. */
  prefix: z.string().max(200).regex(REPO_PATH, 'lowercase path components like vendor/acme'),
  /** Where images come from: the hub's registry origin (default) or, where the local policy allows, the vendor's registry directly. */
  source: z.enum(['hub', 'direct']).optional(),
  /** Cap on the relay's downloads, megabits per second (absent: none). */
  bandwidthMbps: z.number().positive().max(1_000_000).optional(),
  /** Blobs copied at the same time. */
  parallel: z.number().int().min(1).max(32).optional(),
  /** Upload chunk size, KiB: at most this much is sent again after a crash. */
  chunkKb: z.number().int().min(64).max(1024 * 1024).optional(),
  /** Keep the newest N versions per stack (and always what an accepted release uses); absent: keep everything. */
  retention: z.strictObject({ keep: z.number().int().min(1).max(10_000) }).optional(),
  /** How often standbys that fell behind are caught up. */
  catchUpMs: z.number().int().min(100).max(86_400_000).optional(),
  /** Proxy for the bank's registries; default none (they are inside the bank). */
  proxy: ProxyConfig.optional(),
  caFile: z.string().optional(),
});

const FileConfig = z.strictObject({
  logLevel: z.enum(LOG_LEVELS).optional(),
  /** Extra CA (PEM) to trust for the hub, e.g. a private hub certificate. */
  caFile: z.string().optional(),
  /** Overrides the *_proxy environment; an empty string means "no proxy". */
  proxy: ProxyConfig.optional(),
  docker: z.strictObject({ socket: z.string().optional() }).optional(),
  /** The institution's local policy file (default /etc/ferry/policy.yaml, optional there). */
  policyFile: z.string().optional(),
  /** Credentials for pulling from private registries, by host[:port]. */
  registries: z.record(z.string(), z.strictObject({ username: z.string(), password: z.string() })).optional(),
  bankRegistry: BankRegistry.optional(),
  reconcile: z
    .strictObject({
      /** How long services must stay healthy before a release counts as applied. */
      bakeMs: z.number().int().min(0).max(3_600_000).optional(),
      /** How often a full drift pass runs besides the one triggered by engine events. */
      driftIntervalMs: z.number().int().min(1000).max(86_400_000).optional(),
      applyTimeoutMs: z.number().int().min(1000).max(86_400_000).optional(),
      minFreeMb: z.number().int().min(0).optional(),
    })
    .optional(),
  /** Service checks and the figures sent to the hub (agent/checks). */
  checks: z
    .strictObject({
      /** Probes in flight at most. */
      concurrency: z.number().int().min(1).max(256).optional(),
      /** How often the agent sends its figures (counts for the hub's /metrics). */
      figuresMs: z.number().int().min(1000).max(3_600_000).optional(),
    })
    .optional(),
  /** Autoscaling (x-ferry.autoscale): how often each autoscaled service is sampled. */
  autoscale: z.strictObject({ intervalMs: z.number().int().min(500).max(3_600_000).optional() }).optional(),
  /** How far ahead of this host's clock a signed directive or checkpoint may be dated (default 5 min). */
  maxClockSkewMs: z.number().int().min(1000).max(86_400_000).optional(),
  /** The coarse stats sample sent with the status for the fleet view (default every 5 min). */
  stats: z.strictObject({ coarseIntervalMs: z.number().int().min(1000).max(86_400_000).optional() }).optional(),
  /** Self-upgrade: how long a new version has to become healthy before the launcher reverts it (default 120 s). */
  upgrade: z.strictObject({ healthWindowMs: z.number().int().min(1000).max(3_600_000).optional() }).optional(),
  reconnect: z
    .strictObject({
      baseMs: z.number().int().min(10).max(60_000).optional(),
      capMs: z.number().int().min(100).max(3_600_000).optional(),
    })
    .optional(),
});
export type FileConfig = z.infer<typeof FileConfig>;

export interface RegistryEndpointConfig {
  readonly url: string;
  /** host[:port]: how image references name it. */
  readonly host: string;
  readonly username: string | undefined;
  readonly password: string | undefined;
  readonly caFile: string | undefined;
}

export interface BankRegistryConfig {
  readonly primary: RegistryEndpointConfig;
  readonly standbys: readonly RegistryEndpointConfig[];
  readonly standbyMode: 'push' | 'verify';
  readonly prefix: string;
  readonly source: 'hub' | 'direct';
  readonly bytesPerSecond: number | null;
  readonly parallel: number;
  readonly chunkBytes: number;
  readonly keepVersions: number | null;
  readonly catchUpMs: number;
  readonly proxy: Readonly<ProxySettings>;
}

export interface AgentConfig {
  readonly stateDir: string;
  readonly logLevel: (typeof LOG_LEVELS)[number];
  readonly caFile: string | undefined;
  readonly proxy: Readonly<ProxySettings>;
  readonly dockerSocket: string | undefined;
  /** Explicit policy file (must exist), or undefined for the optional default. */
  readonly policyFile: string | undefined;
  readonly registries: Readonly<Record<string, { username: string; password: string }>>;
  /** The institution's registry the relay copies images into; null: images are pulled from where releases name them. */
  readonly bankRegistry: BankRegistryConfig | null;
  readonly reconcile: Readonly<{ bakeMs: number; driftIntervalMs: number; applyTimeoutMs: number; minFreeBytes: number }>;
  readonly reconnect: Readonly<{ baseMs: number; capMs: number }>;
  readonly maxClockSkewMs: number;
  readonly checks: Readonly<{ concurrency: number; figuresMs: number }>;
  readonly autoscale: Readonly<{ intervalMs: number }>;
  readonly stats: Readonly<{ coarseIntervalMs: number }>;
  readonly upgrade: Readonly<{ healthWindowMs: number }>;
}

export interface ConfigInput {
  stateDir: string;
  configFile?: string;
  logLevel?: string;
  caFile?: string;
  policyFile?: string;
}

export function readConfigFile(path: string | undefined): FileConfig {
  if (!path) return {};
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new FerryError('FERRY_E_CONFIG_INVALID', `${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text, { uniqueKeys: true, prettyErrors: true }) ?? {};
  } catch (err) {
    throw new FerryError('FERRY_E_CONFIG_INVALID', `${path}: ${(err as Error).message.split('\n')[0]}`);
  }
  const r = FileConfig.safeParse(doc);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new FerryError('FERRY_E_CONFIG_INVALID', `${path}: ${i?.path.join('.') || '(root)'}: ${i?.message}`);
  }
  return r.data;
}

export function loadAgentConfig(input: ConfigInput, env: NodeJS.ProcessEnv = process.env): AgentConfig {
  const file = readConfigFile(input.configFile);
  const level = input.logLevel ?? file.logLevel ?? 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(level)) throw new FerryError('FERRY_E_CONFIG_INVALID', `log level ${level}`);
  const fromEnv = proxyFromEnv(env);
  const pick = (fileValue: string | undefined, envValue: string | undefined) => (fileValue !== undefined ? fileValue || undefined : envValue);
  const reconnect = { baseMs: file.reconnect?.baseMs ?? 1000, capMs: file.reconnect?.capMs ?? 60_000 };
  if (reconnect.capMs < reconnect.baseMs) throw new FerryError('FERRY_E_CONFIG_INVALID', 'reconnect.capMs is below reconnect.baseMs');
  return Object.freeze({
    stateDir: input.stateDir,
    logLevel: level as AgentConfig['logLevel'],
    caFile: input.caFile ?? file.caFile,
    proxy: Object.freeze({
      httpsProxy: pick(file.proxy?.https, fromEnv.httpsProxy),
      httpProxy: pick(file.proxy?.http, fromEnv.httpProxy),
      noProxy: pick(file.proxy?.noProxy, fromEnv.noProxy),
    }),
    dockerSocket: file.docker?.socket,
    policyFile: input.policyFile ?? file.policyFile,
    registries: Object.freeze({ ...(file.registries ?? {}) }),
    bankRegistry: file.bankRegistry ? bankRegistry(file.bankRegistry) : null,
    reconcile: Object.freeze({
      bakeMs: file.reconcile?.bakeMs ?? 10_000,
      driftIntervalMs: file.reconcile?.driftIntervalMs ?? 30_000,
      applyTimeoutMs: file.reconcile?.applyTimeoutMs ?? 300_000,
      minFreeBytes: (file.reconcile?.minFreeMb ?? 256) * 1024 * 1024,
    }),
    reconnect: Object.freeze(reconnect),
    maxClockSkewMs: file.maxClockSkewMs ?? DEFAULT_MAX_CLOCK_SKEW_MS,
    checks: Object.freeze({ concurrency: file.checks?.concurrency ?? 16, figuresMs: file.checks?.figuresMs ?? 60_000 }),
    autoscale: Object.freeze({ intervalMs: file.autoscale?.intervalMs ?? 15_000 }),
    stats: Object.freeze({ coarseIntervalMs: file.stats?.coarseIntervalMs ?? 300_000 }),
    upgrade: Object.freeze({ healthWindowMs: file.upgrade?.healthWindowMs ?? 120_000 }),
  });
}

function bankRegistry(b: NonNullable<FileConfig['bankRegistry']>): BankRegistryConfig {
  const endpoint = (e: z.infer<typeof RegistryEndpoint>): RegistryEndpointConfig =>
    Object.freeze({ url: e.url.replace(/\/+$/, ''), host: new URL(e.url).host, username: e.username, password: e.password, caFile: e.caFile ?? b.caFile });
  const all = [endpoint(b.primary), ...(b.standbys ?? []).map(endpoint)];
  if (new Set(all.map((e) => e.host)).size !== all.length) throw new FerryError('FERRY_E_CONFIG_INVALID', 'bankRegistry: primary and standbys must be different registries');
  return Object.freeze({
    primary: all[0]!,
    standbys: Object.freeze(all.slice(1)),
    standbyMode: b.standbyMode ?? 'push',
    prefix: b.prefix,
    source: b.source ?? 'hub',
    bytesPerSecond: b.bandwidthMbps ? Math.round((b.bandwidthMbps * 1_000_000) / 8) : null,
    parallel: b.parallel ?? 4,
    chunkBytes: (b.chunkKb ?? 8192) * 1024,
    keepVersions: b.retention?.keep ?? null,
    catchUpMs: b.catchUpMs ?? 60_000,
    proxy: Object.freeze({ httpsProxy: b.proxy?.https || undefined, httpProxy: b.proxy?.http || undefined, noProxy: b.proxy?.noProxy || undefined }),
  });
}

// Releases and directives: the two documents an agent acts on.
//
// A release is a stack (a named set of services, like a compose project) at a
// semver version, every image pinned repo@sha256:…, signed offline by the
// tenant root's `release` role. A directive is the hub's signed statement
// "agent A of tenant T runs releases R1..Rn now", with a per-agent
// monotonic seq and an expiry.
import semver from 'semver';
import { z } from 'zod';
import { FerryError } from './errors.js';
import { parseStrictJson } from './strict-json.js';

export const NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;
/** Secret and config names, as compose allows them. */
export const FILE_REF_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
export const DIGEST_REF = /^(?<repo>[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)@sha256:[0-9a-f]{64}$/;

const name = z.string().regex(NAME, 'lowercase letters, digits, _ and -, up to 63');
const text = (max = 4096) => z.string().max(max);
const ms = z.number().int().nonnegative().max(365 * 24 * 3600_000);
const SemVer = z.string().max(64).refine((v) => semver.valid(v) === v, 'a semver version like 1.2.3');

export const Port = z.strictObject({
  target: z.number().int().min(1).max(65535),
  published: z.number().int().min(1).max(65535).optional(),
  protocol: z.enum(['tcp', 'udp']),
  hostIp: text(64).optional(),
});

export type Port = z.infer<typeof Port>;

const absPath = text(1024).regex(/^\//, 'an absolute path');

/**
 * `volume`: a named volume of the release (source names it); `bind`: a host
 * path (source); `anonymous`: a volume of this replica alone (no source),
 * owned and kept across updates like named ones; `tmpfs`: memory-backed.
 */
export const Mount = z.strictObject({
  type: z.enum(['volume', 'bind', 'anonymous', 'tmpfs']),
  source: text(1024),
  target: absPath,
  readOnly: z.boolean(),
  /** volume.nocopy: do not copy the image's files into a new volume. */
  noCopy: z.boolean().optional(),
  /** tmpfs.size in bytes, tmpfs.mode. */
  tmpfsSize: z.number().int().positive().optional(),
  tmpfsMode: z.number().int().min(0).max(0o7777).optional(),
});

export type Mount = z.infer<typeof Mount>;

export const Healthcheck = z.strictObject({
  /** ['NONE'] disables the image's own healthcheck; absent: the image's test with these timings. */
  test: z.array(text()).min(1).max(64).optional(),
  intervalMs: ms.optional(),
  timeoutMs: ms.optional(),
  retries: z.number().int().min(0).max(1000).optional(),
  startPeriodMs: ms.optional(),
});

export type Healthcheck = z.infer<typeof Healthcheck>;

/** A secret or config the service mounts: the release names it, the bank provides its value on the agent host. */
export const FileRef = z.strictObject({
  name: z.string().regex(FILE_REF_NAME, 'letters, digits, . _ and -, up to 128'),
  target: absPath,
  /** File mode in the container (compose's default 0444). */
  mode: z.number().int().min(0).max(0o777).optional(),
  uid: z.string().regex(/^\d{1,10}$/).optional(),
  gid: z.string().regex(/^\d{1,10}$/).optional(),
});
export type FileRef = z.infer<typeof FileRef>;

const bytes = z.number().int().positive().max(2 ** 53 - 1);

/**
 * x-ferry.checks: a check the agent runs inside the bank (agent/checks). One
 * of http, tcp or command. A host in a URL or address that names a service of
 * the release is that service's containers on the stack's network (each
 * replica is probed); any other host is reached from the agent's host.
 */
export const Check = z.strictObject({
  http: z
    .strictObject({
      url: text(2048).regex(/^https?:\/\/[^/?#\s]+/, 'an http:// or https:// URL'),
      method: z.enum(['GET', 'HEAD', 'POST', 'PUT', 'OPTIONS']),
      /** Status codes that pass. */
      status: z.array(z.number().int().min(100).max(599)).min(1).max(16),
      /** A regular expression the response body (its first 64 KiB) must match. */
      body: text(1024).optional(),
    })
    .optional(),
  /** host:port that must accept a TCP connection. */
  tcp: z.strictObject({ address: text(512).regex(/^[^\s:]+:\d{1,5}$/, 'host:port') }).optional(),
  /** A command run in each of the service's containers (docker exec); exit 0 passes. */
  command: z.strictObject({ service: name, run: z.array(text()).min(1).max(64) }).optional(),
  intervalMs: ms.min(1000),
  timeoutMs: ms.min(100),
  /** Consecutive failed probes before the check is failing. */
  failures: z.number().int().min(1).max(100),
  /** Consecutive passed probes before a failing check is back to normal. */
  successes: z.number().int().min(1).max(100),
});
export type Check = z.infer<typeof Check>;

/**
 * x-ferry.autoscale: the agent keeps the service between `min` and `max`
 * replicas (the signed bounds; the bank's policy may cap them lower), adding
 * one when the replicas' average is above the target and removing one when it
 * would stay below it with one less, no sooner than the cooldowns allow.
 */
export const Autoscale = z.strictObject({
  min: z.number().int().min(1).max(100),
  max: z.number().int().min(1).max(100),
  /** Average CPU per replica, percent of one core (as `docker stats` shows it). */
  cpuPercent: z.number().int().min(1).max(10_000).optional(),
  /** Average memory per replica, percent of the service's memory limit. */
  memoryPercent: z.number().int().min(1).max(100).optional(),
  /** Least time after a change before replicas are added again, and before they are removed. */
  upCooldownMs: ms,
  downCooldownMs: ms,
});
export type Autoscale = z.infer<typeof Autoscale>;

export const Service = z.strictObject({
  /** repo@sha256:… — enforced by every agent's policy check (FERRY_E_POLICY_DIGEST), and by the hub on upload. */
  image: z.string().min(1).max(512),
  command: z.array(text()).max(256).optional(),
  entrypoint: z.array(text()).max(256).optional(),
  environment: z.record(z.string().max(256), text(32 * 1024)),
  ports: z.array(Port).max(64),
  volumes: z.array(Mount).max(64),
  networks: z.array(name).max(16),
  dependsOn: z.record(name, z.strictObject({ condition: z.enum(['service_started', 'service_healthy', 'service_completed_successfully']) })),
  healthcheck: Healthcheck.optional(),
  restart: z.enum(['no', 'always', 'on-failure', 'unless-stopped']),
  labels: z.record(z.string().max(256), text(4096)),
  user: text(256).optional(),
  workingDir: text(1024).optional(),
  stopGracePeriodMs: ms,
  replicas: z.number().int().min(0).max(100),
  updateOrder: z.enum(['stop-first', 'start-first']),

  // Optional settings: absent means Docker's default, and canonicalJson drops
  // undefined, so releases made before a field existed keep their exact bytes.
  /** compose expose: ports the container listens on without publishing them. */
  expose: z.array(z.strictObject({ target: z.number().int().min(1).max(65535), protocol: z.enum(['tcp', 'udp']) })).max(64).optional(),
  /** compose container_name: only for a service with one replica and stop-first updates. */
  containerName: z.string().regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/).optional(),
  hostname: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$/).optional(),
  domainname: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$/).optional(),
  stopSignal: z.string().regex(/^(SIG)?[A-Z][A-Z0-9+-]{0,15}$|^\d{1,2}$/).optional(),
  stdinOpen: z.boolean().optional(),
  tty: z.boolean().optional(),
  init: z.boolean().optional(),
  readOnly: z.boolean().optional(),
  /** `host:ip` lines for /etc/hosts. */
  extraHosts: z.array(text(512)).max(256).optional(),
  dns: z.array(text(64)).max(16).optional(),
  dnsOptions: z.array(text(256)).max(16).optional(),
  dnsSearch: z.array(text(256)).max(16).optional(),
  groupAdd: z.array(text(64)).max(64).optional(),
  shmSizeBytes: bytes.optional(),
  /** compose tmpfs: mount point -> options ("" or "size=64m,mode=1777"). */
  tmpfs: z.record(absPath, text(256)).optional(),
  /** Only no-new-privileges: settings that change confinement otherwise are not imported. */
  securityOpt: z.array(z.enum(['no-new-privileges', 'no-new-privileges:true'])).max(1).optional(),
  resources: z
    .strictObject({
      nanoCpus: z.number().int().positive().optional(),
      memoryBytes: bytes.optional(),
      memoryReservationBytes: bytes.optional(),
      pids: z.number().int().min(-1).max(2 ** 31).optional(),
    })
    .optional(),
  ulimits: z.record(z.string().regex(/^[a-z]{1,32}$/), z.strictObject({ soft: z.number().int().min(-1), hard: z.number().int().min(-1) })).optional(),
  logging: z.strictObject({ driver: z.string().regex(/^[a-z0-9][a-z0-9_.:/-]{0,127}$/), options: z.record(z.string().max(256), text(4096)) }).optional(),
  secrets: z.array(FileRef).max(64).optional(),
  configs: z.array(FileRef).max(64).optional(),

  /** Linux capabilities added / dropped, without the CAP_ prefix, upper case (compose cap_add / cap_drop; "ALL" allowed). */
  capAdd: z.array(z.string().regex(/^[A-Z_]{1,64}$/)).max(64).optional(),
  capDrop: z.array(z.string().regex(/^[A-Z_]{1,64}$/)).max(64).optional(),
  privileged: z.boolean().optional(),
  /** compose network_mode: only these; a service with networkMode has no `networks`. */
  networkMode: z.enum(['host', 'none', 'bridge']).optional(),
  pid: z.enum(['host']).optional(),
  ipc: z.enum(['host', 'private', 'shareable']).optional(),
  devices: z.array(z.strictObject({ host: text(1024), container: text(1024), permissions: z.string().regex(/^[rwm]{1,3}$/) })).max(64).optional(),
  sysctls: z.record(z.string().max(256), text(256)).optional(),

  /** x-ferry.autoscale: replicas adjusted by the agent between signed bounds (`replicas` is where it starts). */
  autoscale: Autoscale.optional(),
  /**
   * x-ferry.verify: this service is a verification job, not a long-running
   * service. Once the rest of the release runs and is healthy, the agent runs
   * it once; it must exit 0 within `timeoutMs`, or the release is rolled back.
   */
  verify: z.strictObject({ timeoutMs: ms.min(1000) }).optional(),
});
export type Service = z.infer<typeof Service>;

export const Release = z.strictObject({
  _type: z.literal('release'),
  stack: name,
  version: SemVer,
  /** Agents refuse releases of this stack below the highest floor they have seen. */
  floor: SemVer.optional(),
  createdAt: z.number().int().nonnegative(),
  services: z.record(name, Service).refine((s) => Object.keys(s).length >= 1 && Object.keys(s).length <= 100, '1 to 100 services'),
  networks: z.record(name, z.strictObject({ internal: z.boolean(), labels: z.record(z.string().max(256), text(4096)).optional() })),
  volumes: z.record(name, z.strictObject({ labels: z.record(z.string().max(256), text(4096)).optional() })),
  /** x-ferry.checks: service checks by name (absent in releases made before they existed). */
  checks: z.record(name, Check).optional(),
});
export type Release = z.infer<typeof Release>;

export const ReleaseRef = z.strictObject({
  stack: name,
  version: SemVer,
  /** sha256 of the release envelope's payload bytes. */
  digest: z.string().regex(/^sha256:[0-9a-f]{64}$/),
});
export type ReleaseRef = z.infer<typeof ReleaseRef>;

export const Directive = z.strictObject({
  _type: z.literal('directive'),
  tenant: z.string().max(64),
  agent: z.string().max(64),
  seq: z.number().int().min(1),
  issuedAt: z.number().int().nonnegative(),
  expiresAt: z.number().int().nonnegative(),
  /** The root version the hub signed under (informational; agents use their own). */
  rootVersion: z.number().int().min(1),
  releases: z.array(ReleaseRef).max(64),
  /** The ferry-agent version this agent runs: an agent bundle statement (shared/agent-bundle.ts) by version and payload digest. Absent: keep what runs. */
  upgrade: z.strictObject({ version: SemVer, digest: z.string().regex(/^sha256:[0-9a-f]{64}$/) }).optional(),
});
export type Directive = z.infer<typeof Directive>;

function parseWith<T>(schema: z.ZodType<T>, what: string, payload: Uint8Array): T {
  const r = schema.safeParse(parseStrictJson(payload));
  if (!r.success) {
    const i = r.error.issues[0];
    throw new FerryError('FERRY_E_PAYLOAD_INVALID', `${what}: ${i?.path.join('.') || '(root)'}: ${i?.message}`);
  }
  return r.data;
}

export function parseRelease(payload: Uint8Array): Release {
  const rel = parseWith(Release, 'release', payload);
  if (rel.floor && semver.gt(rel.floor, rel.version)) throw new FerryError('FERRY_E_PAYLOAD_INVALID', `release: floor ${rel.floor} above version ${rel.version}`);
  for (const [svc, s] of Object.entries(rel.services)) {
    for (const dep of Object.keys(s.dependsOn)) if (!rel.services[dep]) throw new FerryError('FERRY_E_PAYLOAD_INVALID', `release: ${svc} depends on unknown service ${dep}`);
    for (const n of s.networks) if (n !== 'default' && !rel.networks[n]) throw new FerryError('FERRY_E_PAYLOAD_INVALID', `release: ${svc} uses undeclared network ${n}`);
    if (s.networkMode && s.networks.length) throw new FerryError('FERRY_E_PAYLOAD_INVALID', `release: ${svc} has networkMode ${s.networkMode} and networks; a service has one or the other`);
    for (const m of s.volumes) if (m.type === 'volume' && !rel.volumes[m.source]) throw new FerryError('FERRY_E_PAYLOAD_INVALID', `release: ${svc} uses undeclared volume ${m.source}`);
    if (s.containerName && (s.replicas > 1 || s.updateOrder === 'start-first')) throw new FerryError('FERRY_E_PAYLOAD_INVALID', `release: ${svc} has a container name but ${s.replicas > 1 ? 'several replicas' : 'start-first updates'}`);
  }
  const problem = watchProblem(rel);
  if (problem) throw new FerryError('FERRY_E_PAYLOAD_INVALID', `release: ${problem}`);
  return rel;
}

/** Verification jobs one release may have (each reports its last output lines). */
export const MAX_JOBS = 16;

/** What is wrong with a release's checks, verification jobs and autoscaling (x-ferry), or null. */
export function watchProblem(rel: { services: Record<string, Pick<Service, 'autoscale' | 'verify' | 'dependsOn' | 'ports' | 'resources' | 'containerName'>>; checks?: Release['checks'] }): string | null {
  for (const [svc, s] of Object.entries(rel.services)) {
    const a = s.autoscale;
    if (a) {
      if (a.min > a.max) return `${svc}: autoscale min ${a.min} is above max ${a.max}`;
      if ((a.cpuPercent === undefined) === (a.memoryPercent === undefined)) return `${svc}: autoscale needs one target, cpu or memory`;
      if (a.memoryPercent !== undefined && !s.resources?.memoryBytes) return `${svc}: an autoscale memory target is a percentage of the memory limit; give the service mem_limit`;
      if (s.containerName) return `${svc}: a service with a container name cannot be scaled`;
      if (s.verify) return `${svc}: a verification job cannot be autoscaled`;
    }
    if (s.verify) {
      for (const [other, o] of Object.entries(rel.services)) if (o.dependsOn[svc]) return `${other} depends on ${svc}, a verification job (it runs after the release is up)`;
      if (s.ports.some((p) => p.published !== undefined)) return `${svc}: a verification job publishes no host port`;
    }
  }
  if (Object.values(rel.services).filter((s) => s.verify).length > MAX_JOBS) return `at most ${MAX_JOBS} verification jobs per release`;
  for (const [name, c] of Object.entries(rel.checks ?? {})) {
    const kinds = [c.http, c.tcp, c.command].filter((x) => x !== undefined).length;
    if (kinds !== 1) return `check ${name}: give exactly one of http, tcp or command`;
    if (c.timeoutMs > c.intervalMs) return `check ${name}: timeout ${c.timeoutMs} ms is longer than its interval ${c.intervalMs} ms`;
    if (c.http) {
      try {
        new URL(c.http.url);
        if (c.http.body !== undefined) new RegExp(c.http.body);
      } catch (err) {
        return `check ${name}: ${(err as Error).message}`;
      }
    }
    if (c.command) {
      const target = rel.services[c.command.service];
      if (!target) return `check ${name}: command runs in ${c.command.service}, which is not a service of the release`;
      if (target.verify) return `check ${name}: command runs in ${c.command.service}, a verification job`;
    }
  }
  return null;
}

export function parseDirective(payload: Uint8Array): Directive {
  const d = parseWith(Directive, 'directive', payload);
  if (d.expiresAt <= d.issuedAt) throw new FerryError('FERRY_E_PAYLOAD_INVALID', 'directive: expiresAt is not after issuedAt');
  return d;
}

/** The registry host of a digest reference, as Docker resolves it. */
export function registryOf(image: string): string {
  const first = image.split('/')[0]!;
  const hasRegistry = image.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost');
  return hasRegistry ? first.split('@')[0]! : 'docker.io';
}

/** Canonical bytes for a document we create (sorted keys, no spaces). Never used to verify. */
export function canonicalJson(value: unknown): Buffer {
  const sort = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(sort);
    if (v && typeof v === 'object') return Object.fromEntries(Object.keys(v).sort().filter((k) => (v as Record<string, unknown>)[k] !== undefined).map((k) => [k, sort((v as Record<string, unknown>)[k])]));
    return v;
  };
  return Buffer.from(JSON.stringify(sort(value)));
}

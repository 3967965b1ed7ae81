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

export const Mount = z.strictObject({
  type: z.enum(['volume', 'bind']),
  source: text(1024),
  target: text(1024).regex(/^\//, 'an absolute path'),
  readOnly: z.boolean(),
});

export type Mount = z.infer<typeof Mount>;

export const Healthcheck = z.strictObject({
  test: z.array(text()).min(1).max(64),
  intervalMs: ms.optional(),
  timeoutMs: ms.optional(),
  retries: z.number().int().min(0).max(1000).optional(),
  startPeriodMs: ms.optional(),
});

export type Healthcheck = z.infer<typeof Healthcheck>;

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
  networks: z.record(name, z.strictObject({ internal: z.boolean() })),
  volumes: z.record(name, z.strictObject({})),
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
  }
  return rel;
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

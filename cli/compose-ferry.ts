// Ferry's own compose extension, `x-ferry` (compose ignores x- keys, so the
// same file still runs with docker compose): service checks at the top level,
// autoscaling and verification jobs per service. Keys go through the reader
// like every compose key (FERRY_KEYS in ./compose-keys.ts), so a misspelt one
// is refused with its file, line and path.
import { watchProblem, type Autoscale, type Check, type Release, type Service } from '../shared/release.js';
import type { Field, Reader } from './compose-fields.js';

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'OPTIONS'] as const;
const DEFAULTS = { intervalMs: 10_000, timeoutMs: 2000, failures: 3, successes: 1 } as const;
const COOLDOWN = { upMs: 30_000, downMs: 120_000 } as const;
const VERIFY_TIMEOUT_MS = 300_000;

/** services.*.x-ferry: what it adds to the service. */
export function ferryService(r: Reader, f: Field, replicas: number): Pick<Service, 'autoscale' | 'verify'> & { replicas?: number } {
  if (r.isNull(f)) return {};
  const k = r.keys(f, 'service.x-ferry');
  const out: Pick<Service, 'autoscale' | 'verify'> & { replicas?: number } = {};
  if (k.autoscale && !r.isNull(k.autoscale)) {
    const a = r.attempt(() => autoscale(r, k.autoscale!));
    if (a) {
      out.autoscale = a;
      // The replicas the service starts with, inside its bounds.
      out.replicas = Math.min(a.max, Math.max(a.min, replicas));
    }
  }
  if (k.verify && !r.isNull(k.verify)) {
    const v = k.verify;
    const timeoutMs = r.attempt(() => {
      if (v.value.kind === 'scalar') {
        if (!r.bool(v)) r.fail(v, 'false: leave the key out instead');
        return VERIFY_TIMEOUT_MS;
      }
      const vk = r.keys(v, 'service.x-ferry.verify');
      return vk.timeout ? r.durationMs(vk.timeout) : VERIFY_TIMEOUT_MS;
    });
    if (timeoutMs !== undefined) {
      if (timeoutMs < 1000) r.attempt(() => r.fail(v, 'timeout must be at least 1s'));
      else out.verify = { timeoutMs };
    }
  }
  return out;
}

function autoscale(r: Reader, f: Field): Autoscale {
  const k = r.keys(f, 'service.x-ferry.autoscale');
  if (!k.min || !k.max) r.fail(f, 'needs min: and max: (the replicas it may run)');
  const min = r.int(k.min, 1, 100);
  const max = r.int(k.max, 1, 100);
  if (min > max) r.fail(k.max, `must be at least min (${min})`);
  if (!!k.cpu === !!k.memory) r.fail(f, 'needs one target: cpu: 70% (of one core per replica) or memory: 80% (of its mem_limit)');
  const pct = (x: Field, max: number) => {
    const s = r.str(x).trim();
    const m = /^(\d{1,5})\s*%?$/.exec(s);
    if (!m || Number(m[1]) < 1 || Number(m[1]) > max) r.fail(x, `must be a percentage from 1% to ${max}% (got ${JSON.stringify(s)})`);
    return Number(m[1]);
  };
  const both = k.cooldown ? r.durationMs(k.cooldown) : undefined;
  return {
    min,
    max,
    ...(k.cpu && { cpuPercent: pct(k.cpu, 10_000) }),
    ...(k.memory && { memoryPercent: pct(k.memory, 100) }),
    upCooldownMs: k.up_cooldown ? r.durationMs(k.up_cooldown) : (both ?? COOLDOWN.upMs),
    downCooldownMs: k.down_cooldown ? r.durationMs(k.down_cooldown) : (both ?? COOLDOWN.downMs),
  };
}

/** Whether a service field declares a verification job (it is imported whatever its profiles: compose runs it with `docker compose run`). */
export function isVerifyJob(f: Field): boolean {
  if (f.value.kind !== 'map') return false;
  const x = f.value.entries.find((e) => e.key === 'x-ferry');
  return x?.value.kind === 'map' && x.value.entries.some((e) => e.key === 'verify' && !(e.value.kind === 'scalar' && (e.value.value === null || e.value.value === false || e.value.value === 'false')));
}

/** x-ferry at the top level: the release's checks. */
export function ferryTop(r: Reader, f: Field | undefined, root: Field, services: Readonly<Record<string, Pick<Service, 'autoscale' | 'verify' | 'dependsOn' | 'ports' | 'resources' | 'containerName'>>>): Pick<Release, 'checks'> {
  const checks: Record<string, Check> = {};
  const k = f && !r.isNull(f) ? r.keys(f, 'x-ferry') : {};
  for (const c of k.checks && !r.isNull(k.checks) ? r.entries(k.checks) : []) {
    const got = r.attempt(() => check(r, c, services));
    if (got) checks[c.key!] = got;
  }
  const out = Object.keys(checks).length ? { checks } : {};
  // What needs the whole file (and what the agent refuses too): said here rather than by the agent.
  const problem = watchProblem({ services: { ...services }, ...out });
  if (problem) r.attempt(() => r.fail({ ...(f ?? root), path: 'x-ferry' }, `is not valid: ${problem}`));
  return out;
}

function check(r: Reader, f: Field, services: Readonly<Record<string, Pick<Service, 'verify'>>>): Check {
  if (!/^[a-z0-9][a-z0-9_-]{0,62}$/.test(f.key!)) r.fail(f, 'is not a valid check name: use lowercase letters, digits, _ and -, up to 63');
  const k = r.keys(f, 'x-ferry.check');
  const kinds = (['http', 'tcp', 'command'] as const).filter((x) => k[x]);
  if (kinds.length !== 1) r.fail(f, `needs exactly one of http:, tcp: or command: (got ${kinds.length ? kinds.join(', ') : 'none'})`);
  const intervalMs = k.interval ? r.durationMs(k.interval) : DEFAULTS.intervalMs;
  const timeoutMs = k.timeout ? r.durationMs(k.timeout) : Math.min(DEFAULTS.timeoutMs, intervalMs);
  if (intervalMs < 1000) r.fail(k.interval!, 'must be at least 1s');
  if (timeoutMs < 100 || timeoutMs > intervalMs) r.fail(k.timeout ?? f, `must be from 100ms to the interval (${intervalMs} ms)`);
  const base = {
    intervalMs,
    timeoutMs,
    failures: k.failures ? r.int(k.failures, 1, 100) : DEFAULTS.failures,
    successes: k.successes ? r.int(k.successes, 1, 100) : DEFAULTS.successes,
  };
  if (k.http) return { ...base, http: http(r, k.http) };
  if (k.tcp) {
    const address = r.str(k.tcp);
    const m = /^([^\s:]+):(\d{1,5})$/.exec(address);
    if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) r.fail(k.tcp, `must be host:port, e.g. db:5432 (got ${JSON.stringify(address)})`);
    return { ...base, tcp: { address } };
  }
  const ck = r.keys(k.command!, 'x-ferry.check.command');
  if (!ck.service || !ck.run) r.fail(k.command!, 'needs service: (where it runs) and run: (the command)');
  const service = r.str(ck.service);
  if (!services[service]) r.fail(ck.service, `names ${service}, which is not a service of this file`);
  return { ...base, command: { service, run: r.words(ck.run) } };
}

function http(r: Reader, f: Field): NonNullable<Check['http']> {
  const k = f.value.kind === 'map' ? r.keys(f, 'x-ferry.check.http') : { url: f };
  if (!k.url) r.fail(f, 'needs url:');
  const url = r.str(k.url);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return r.fail(k.url, `is not a URL (got ${JSON.stringify(url)})`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') r.fail(k.url, 'must be an http:// or https:// URL');
  const status = k.status ? r.list(k.status).map((s) => r.int(s, 100, 599)) : [200];
  if (status.length > 16) r.fail(k.status!, 'lists at most 16 status codes');
  const body = k.body ? r.str(k.body) : undefined;
  if (body !== undefined) {
    try {
      new RegExp(body);
    } catch (err) {
      r.fail(k.body!, `is not a regular expression: ${(err as Error).message}`);
    }
  }
  return { url, method: k.method ? r.oneOf(k.method, METHODS) : 'GET', status, ...(body !== undefined && { body }) };
}

// Importing a docker-compose.yml into Ferry's release form. Ferry supports a
// deliberate subset of compose: what a stack needs to run on an agent's host.
// Any other key is refused naming the key and its line, so nothing in the
// file is silently dropped from what gets signed.
//
// Images stay as written (`imageRef`); pinning them to digests is
// `pinImages` in ./registry.ts.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import { z } from 'zod';
import { FerryError } from '../shared/errors.js';
import { type Mount, NAME, type Port, type Release, Service } from '../shared/release.js';
import { ComposeError, type Field, Reader, locatedTree, parseEnvFile } from './compose-fields.js';
import { parseImageRef } from './registry.js';

export type ComposeService = Omit<Service, 'image'> & { imageRef: string };

export interface ComposeImport {
  services: Record<string, ComposeService>;
  networks: Release['networks'];
  volumes: Release['volumes'];
  /** Non-fatal findings to show the operator (unset variables, ignored `build:`). */
  warnings: string[];
}

export interface ComposeOptions {
  /** The file's name as the user gave it; prefixes every error (`docker-compose.yml:14: …`). */
  file: string;
  /** Variables for `${VAR}` interpolation. Default: none. */
  env?: Readonly<Record<string, string | undefined>>;
  /** Directory that relative bind mounts and env_file paths are resolved against. */
  baseDir: string;
}

const TOP_KEYS = ['version', 'name', 'services', 'networks', 'volumes'] as const;
const SERVICE_KEYS = [
  'image', 'build', 'command', 'entrypoint', 'environment', 'env_file', 'ports', 'volumes', 'networks', 'depends_on',
  'healthcheck', 'restart', 'labels', 'user', 'working_dir', 'stop_grace_period', 'deploy',
] as const;
const RESTART = ['no', 'always', 'on-failure', 'unless-stopped'] as const;
const CONDITIONS = ['service_started', 'service_healthy', 'service_completed_successfully'] as const;
const DEFAULT_STOP_GRACE_MS = 10_000;

// What importCompose produces, checked against the release schema's limits before anyone signs it.
const ComposeServiceSchema = Service.omit({ image: true }).extend({ imageRef: z.string().min(1).max(512) });

interface Declared {
  networks: Release['networks'];
  volumes: Release['volumes'];
}

/** Parses and converts a compose file; throws FERRY_E_COMPOSE_INVALID with `file:line:` and the key's path. */
export function importCompose(text: string, opts: ComposeOptions): ComposeImport {
  const r = new Reader(opts.env ?? {});
  try {
    return convert(r, text, resolve(opts.baseDir));
  } catch (err) {
    if (err instanceof ComposeError) throw new FerryError('FERRY_E_COMPOSE_INVALID', `${opts.file}:${err.line}: ${err.message}`);
    throw err;
  }
}

function convert(r: Reader, text: string, baseDir: string): ComposeImport {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, uniqueKeys: true, prettyErrors: true });
  const yamlError = doc.errors[0];
  if (yamlError) {
    // An error found at the very end (an unclosed quote, say) is reported on the last line, not past it.
    const lastLine = Math.max(1, text.replace(/\n$/, '').split('\n').length);
    const line = Math.min(yamlError.linePos?.[0].line ?? 1, lastLine);
    throw new ComposeError(line, `is not valid YAML: ${yamlError.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`);
  }
  const value = locatedTree(doc, lc);
  if (!value) throw new ComposeError(1, 'the file is empty');
  const root: Field = { path: '', line: value.line, value };
  if (value.kind !== 'map') r.fail(root, 'must be a map of services, networks and volumes at the top level');
  const top = r.only(root, TOP_KEYS);
  const declared: Declared = { networks: {}, volumes: {} };
  for (const f of top.networks && !r.isNull(top.networks) ? r.entries(top.networks) : []) {
    const k = r.isNull(f) ? {} : r.only(f, ['internal']);
    declared.networks[named(r, f, 'network')] = { internal: k.internal ? r.bool(k.internal) : false };
  }
  for (const f of top.volumes && !r.isNull(top.volumes) ? r.entries(top.volumes) : []) {
    if (!r.isNull(f)) r.only(f, []);
    declared.volumes[named(r, f, 'volume')] = {};
  }
  if (!top.services || r.isNull(top.services)) return r.fail(root, 'has no services:');
  const fields = r.entries(top.services);
  if (fields.length < 1 || fields.length > 100) r.fail(top.services, 'must list 1 to 100 services');
  const services: Record<string, ComposeService> = {};
  const dependsOn = new Map<string, Field>();
  for (const f of fields) {
    const name = named(r, f, 'service');
    services[name] = service(r, f, declared, baseDir);
    const dep = r.entries(f).find((e) => e.key === 'depends_on');
    if (dep) dependsOn.set(name, dep);
  }
  checkDependencies(r, services, dependsOn);
  for (const f of fields) {
    const check = ComposeServiceSchema.safeParse(services[f.key!]);
    if (!check.success) {
      const issue = check.error.issues[0]!;
      r.fail({ path: `${f.path}.${issue.path.join('.')}`, line: f.line }, `is not valid: ${issue.message}`);
    }
  }
  return { services, networks: declared.networks, volumes: declared.volumes, warnings: r.warnings };
}

/** A map entry's key, checked against the release schema's NAME rule. */
function named(r: Reader, f: Field, what: string): string {
  const name = f.key!;
  if (!NAME.test(name)) r.fail(f, `is not a valid ${what} name: use lowercase letters, digits, _ and -, starting with a letter or digit, up to 63`);
  return name;
}

function service(r: Reader, f: Field, declared: Declared, baseDir: string): ComposeService {
  const k = r.only(f, SERVICE_KEYS);
  if (!k.image) return r.fail(f, k.build ? 'has build: but no image: Ferry ships images already pushed to a registry; add image: with the pushed name' : 'has no image:');
  if (k.build) r.warn(`${k.build.path} is ignored: Ferry uses the pushed image ${r.str(k.image)}`);
  const imageRef = r.str(k.image);
  try {
    parseImageRef(imageRef);
  } catch (err) {
    r.fail(k.image, `is not a valid image reference: ${(err as FerryError).detail ?? (err as Error).message}`);
  }
  const healthcheck = k.healthcheck && health(r, k.healthcheck);
  const deploy = k.deploy && !r.isNull(k.deploy) ? r.only(k.deploy, ['replicas', 'update_config']) : {};
  const update = deploy.update_config && !r.isNull(deploy.update_config) ? r.only(deploy.update_config, ['order']) : {};
  return {
    imageRef,
    ...(k.command && !r.isNull(k.command) && { command: r.words(k.command) }),
    ...(k.entrypoint && !r.isNull(k.entrypoint) && { entrypoint: r.words(k.entrypoint) }),
    environment: environment(r, k.env_file, k.environment, baseDir),
    ports: k.ports ? r.items(k.ports).map((p) => port(r, p)) : [],
    volumes: k.volumes ? r.items(k.volumes).map((v) => volume(r, v, declared, baseDir)) : [],
    networks: k.networks ? networks(r, k.networks, declared) : ['default'],
    dependsOn: {}, // filled by checkDependencies, once every service is known
    ...(healthcheck && { healthcheck }),
    restart: k.restart ? r.oneOf(k.restart, RESTART) : 'no',
    labels: k.labels ? Object.fromEntries(r.pairs(k.labels).map(([key, v]) => [key, v ?? ''])) : {},
    ...(k.user && { user: r.str(k.user) }),
    ...(k.working_dir && { workingDir: r.str(k.working_dir) }),
    stopGracePeriodMs: k.stop_grace_period ? r.durationMs(k.stop_grace_period) : DEFAULT_STOP_GRACE_MS,
    replicas: deploy.replicas ? r.int(deploy.replicas, 0, 100) : 1,
    updateOrder: update.order ? r.oneOf(update.order, ['stop-first', 'start-first']) : 'stop-first',
  };
}

/** env_file entries first, in order, then `environment:` over them, as compose does. */
function environment(r: Reader, envFile: Field | undefined, env: Field | undefined, baseDir: string): Record<string, string> {
  const out = new Map<string, string>();
  const files = !envFile || r.isNull(envFile) ? [] : envFile.value.kind === 'seq' ? r.items(envFile) : [envFile];
  for (const item of files) {
    const k = item.value.kind === 'map' ? r.only(item, ['path', 'required']) : { path: item };
    if (!k.path) r.fail(item, 'needs a path');
    const path = resolve(baseDir, r.str(k.path));
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      if (k.required && !r.bool(k.required) && (err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      return r.fail(item, `cannot be read: ${(err as Error).message}`);
    }
    const vars = r.check(item, () => {
      try {
        return parseEnvFile(text, (name) => r.env[name], (name) => r.warn(`${name} is not set; ${path} uses an empty string in its place`));
      } catch (err) {
        throw new Error(`${path}: ${(err as Error).message}`);
      }
    });
    for (const [key, v] of vars) out.set(key, v);
  }
  for (const [key, value] of env && !r.isNull(env) ? r.pairs(env) : []) {
    // A name without a value takes the variable from the environment, and is left out when unset.
    const v = value ?? r.env[key];
    if (v !== undefined) out.set(key, v);
  }
  return Object.fromEntries(out);
}

function port(r: Reader, f: Field): ComposeService['ports'][number] {
  if (f.value.kind !== 'map') {
    const spec = r.str(f);
    return r.check(f, () => parsePortSpec(spec));
  }
  const k = r.only(f, ['target', 'published', 'protocol', 'host_ip']);
  if (!k.target) return r.fail(f, 'needs target:');
  const published = k.published && r.str(k.published);
  if (published?.includes('-')) r.fail(k.published!, `is a port range (${published}); Ferry does not support port ranges, list each port`);
  return {
    target: r.int(k.target, 1, 65535),
    protocol: k.protocol ? r.oneOf(k.protocol, ['tcp', 'udp']) : 'tcp',
    ...(k.published && published !== '' && { published: r.int(k.published, 1, 65535) }),
    ...(k.host_ip && { hostIp: r.str(k.host_ip) }),
  };
}

function volume(r: Reader, f: Field, declared: Declared, baseDir: string): ComposeService['volumes'][number] {
  let m;
  if (f.value.kind !== 'map') {
    const spec = r.str(f);
    m = r.check(f, () => parseVolumeSpec(spec, baseDir));
  } else {
    const k = r.only(f, ['type', 'source', 'target', 'read_only']);
    const type = k.type ? r.oneOf(k.type, ['volume', 'bind']) : r.fail(f, 'needs type: (volume or bind)');
    if (!k.source) r.fail(f, type === 'volume' ? 'needs source: Ferry supports named volumes, not anonymous ones' : 'needs source:');
    if (!k.target) r.fail(f, 'needs target:');
    const [source, target, readOnly] = [r.str(k.source), r.str(k.target), k.read_only ? r.bool(k.read_only) : false];
    m = r.check(f, () => mount(source, target, readOnly, baseDir, type));
  }
  if (m.type === 'volume' && !Object.hasOwn(declared.volumes, m.source)) r.fail(f, `uses volume ${m.source}, which is not declared under top-level volumes:`);
  return m;
}

function networks(r: Reader, f: Field, declared: Declared): string[] {
  const names = f.value.kind === 'seq'
    ? r.items(f).map((i) => [r.str(i), i] as const)
    : r.entries(f).map((e) => {
      if (!r.isNull(e)) r.only(e, []); // aliases, ipv4_address, priority, …
      return [e.key!, e] as const;
    });
  return names.map(([name, at]) => {
    if (name !== 'default' && !Object.hasOwn(declared.networks, name)) r.fail(at, `uses network ${name}, which is not declared under top-level networks:`);
    return name;
  });
}

function health(r: Reader, f: Field): Service['healthcheck'] {
  const k = r.only(f, ['test', 'interval', 'timeout', 'retries', 'start_period', 'disable']);
  if (k.disable && r.bool(k.disable)) return undefined;
  if (!k.test) return r.fail(f, 'needs test: (Ferry does not inherit the image\'s healthcheck)');
  const test = k.test.value.kind === 'seq' ? r.strings(k.test) : ['CMD-SHELL', r.str(k.test)];
  if (test[0] === 'NONE') return undefined;
  if (test[0] !== 'CMD' && test[0] !== 'CMD-SHELL') r.fail(k.test, 'must be a string, or a list starting with CMD, CMD-SHELL or NONE');
  if (test.length < 2) r.fail(k.test, `needs a command after ${test[0]}`);
  return {
    test,
    ...(k.interval && { intervalMs: r.durationMs(k.interval) }),
    ...(k.timeout && { timeoutMs: r.durationMs(k.timeout) }),
    ...(k.retries && { retries: r.int(k.retries, 0, 1000) }),
    ...(k.start_period && { startPeriodMs: r.durationMs(k.start_period) }),
  };
}

/** depends_on: a list, or a map with `condition:`; every name a service of this file; no cycles. */
function checkDependencies(r: Reader, services: Record<string, ComposeService>, fields: Map<string, Field>): void {
  for (const [name, f] of fields) {
    if (r.isNull(f)) continue;
    const deps = f.value.kind === 'seq'
      ? r.items(f).map((i) => [r.str(i), 'service_started' as const, i] as const)
      : r.entries(f).map((e) => {
        const k = r.isNull(e) ? {} : r.only(e, ['condition']);
        return [e.key!, k.condition ? r.oneOf(k.condition, CONDITIONS) : ('service_started' as const), e] as const;
      });
    for (const [dep, condition, at] of deps) {
      if (!Object.hasOwn(services, dep)) r.fail(at, `names ${dep}, which is not a service of this file`);
      if (dep === name) r.fail(at, 'makes the service depend on itself');
      services[name]!.dependsOn[dep] = { condition };
    }
  }
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (name: string, trail: string[]): void => {
    if (state.get(name) === 'done') return;
    if (state.get(name) === 'visiting') r.fail(fields.get(name)!, `forms a cycle: ${[...trail.slice(trail.indexOf(name)), name].join(' -> ')}`);
    state.set(name, 'visiting');
    for (const dep of Object.keys(services[name]!.dependsOn)) visit(dep, [...trail, name]);
    state.set(name, 'done');
  };
  for (const name of Object.keys(services)) visit(name, []);
}

function portNumber(s: string, what: string): number {
  const n = /^\d{1,5}$/.test(s) ? Number(s) : NaN;
  if (!(n >= 1 && n <= 65535)) throw new Error(`has an invalid ${what} port ${JSON.stringify(s)}`);
  return n;
}

/** Short port syntax: `80`, `8080:80`, `127.0.0.1:8080:80/udp`, `127.0.0.1::80`, `[::1]:8080:80`. */
export function parsePortSpec(spec: string): Port {
  const slash = spec.lastIndexOf('/');
  const protocol = slash < 0 ? 'tcp' : spec.slice(slash + 1);
  if (protocol !== 'tcp' && protocol !== 'udp') throw new Error(`uses protocol ${JSON.stringify(protocol)}; Ferry supports tcp and udp`);
  let rest = slash < 0 ? spec : spec.slice(0, slash);
  let hostIp: string | undefined;
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']:');
    if (close < 0) throw new Error(`has a malformed IPv6 host address in ${JSON.stringify(spec)}`);
    hostIp = rest.slice(1, close);
    rest = rest.slice(close + 2);
  }
  const parts = rest.split(':');
  if (parts.length === 3 && hostIp === undefined) hostIp = parts.shift();
  if (parts.length > 2 || hostIp === '') throw new Error(`is not a port mapping like 8080:80 or 127.0.0.1:8080:80/udp (got ${JSON.stringify(spec)})`);
  if (parts.some((p) => p.includes('-'))) throw new Error(`is a port range (${spec}); Ferry does not support port ranges, list each port`);
  const target = portNumber(parts[parts.length - 1]!, 'container');
  const published = parts.length === 2 && parts[0] !== '' ? portNumber(parts[0]!, 'published') : undefined;
  return { target, protocol, ...(published !== undefined && { published }), ...(hostIp !== undefined && { hostIp }) };
}

/**
 * Short volume syntax: `name:/path[:ro]` (named volume), `./rel:/path` or
 * `/abs:/path` (bind, made absolute against baseDir). Anonymous volumes and
 * `~` paths are refused.
 */
export function parseVolumeSpec(spec: string, baseDir: string): Mount {
  const parts = spec.split(':');
  if (parts.length === 1) throw new Error(`is an anonymous volume (${spec}); Ferry supports named volumes: write name:${spec} and declare the name under top-level volumes`);
  if (parts.length > 3) throw new Error(`is not a volume like name:/path[:ro] (got ${JSON.stringify(spec)})`);
  const [source, target, mode = ''] = parts as [string, string, string?];
  let readOnly = false;
  for (const opt of mode.split(',').filter(Boolean)) {
    if (opt !== 'ro' && opt !== 'rw') throw new Error(`uses volume option ${JSON.stringify(opt)}; Ferry supports ro and rw`);
    readOnly = opt === 'ro';
  }
  return mount(source, target, readOnly, baseDir);
}

function mount(source: string, target: string, readOnly: boolean, baseDir: string, type?: 'volume' | 'bind'): Mount {
  if (!target.startsWith('/')) throw new Error(`has target ${JSON.stringify(target)}, which is not an absolute path`);
  if (source.startsWith('~')) throw new Error(`has source ${JSON.stringify(source)}; write the bind path without ~`);
  const bind = type ? type === 'bind' : source.startsWith('/') || source.startsWith('.');
  if (source === '') throw new Error('has an empty source');
  return { type: bind ? 'bind' : 'volume', source: bind ? resolve(baseDir, source) : source, target, readOnly };
}

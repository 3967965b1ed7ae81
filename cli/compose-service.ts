// One compose service to Ferry's Service, key by key, each deployed with the
// container config docker compose gives it. Every key goes through
// `r.keys()` (compose-keys.ts); every problem is recorded and reading goes on,
// so one run lists all of them.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { FILE_REF_NAME, type FileRef, type Mount, type Port, type Service } from '../shared/release.js';
import { ComposeError, type Field, type Reader } from './compose-fields.js';
import { parseEnvFile } from './compose-interpolate.js';
import { ferryService } from './compose-ferry.js';
import { parseImageRef } from './image-ref.js';

export type ComposeService = Omit<Service, 'image'> & { imageRef: string };

/** What the service loop needs to know about the rest of the file. */
export interface Context {
  networks: ReadonlySet<string>;
  volumes: ReadonlySet<string>;
  secrets: ReadonlySet<string>;
  configs: ReadonlySet<string>;
  /** `--build`: services with build: are built; without it a service needs image:. */
  build: boolean;
  /** Directory relative paths in `file` resolve against. */
  dirOf(file: string): string;
}

export interface BuildSpec {
  context: string;
  dockerfile?: string;
  args: Record<string, string>;
  target?: string;
  labels: Record<string, string>;
  noCache: boolean;
  pull: boolean;
  /** file:line of the build key. */
  at: string;
}

const RESTART = ['no', 'always', 'on-failure', 'unless-stopped'] as const;
const DEFAULT_STOP_GRACE_MS = 10_000;

/** Reads one service; undefined when it has problems (they are in `r.problems`). */
export function service(r: Reader, f: Field, ctx: Context): { svc: ComposeService; build?: BuildSpec; imageAt: string } | undefined {
  const before = r.problems.length;
  const k = r.keys(f, 'service');
  const opt = <T>(key: string, fn: (x: Field) => T): T | undefined => {
    const x = k[key];
    return x && !r.isNull(x) ? r.attempt(() => fn(x)) : undefined;
  };
  const build = opt('build', (b) => buildSpec(r, b, ctx));
  let imageRef = '';
  if (k.image) {
    imageRef = r.attempt(() => {
      const ref = r.str(k.image!, true);
      try {
        parseImageRef(ref);
      } catch (err) {
        r.fail(k.image!, `is not a valid image reference: ${(err as { detail?: string }).detail ?? (err as Error).message}`);
      }
      return ref;
    }) ?? '';
  } else if (!build) r.attempt(() => r.fail(f, 'has no image:'));
  else if (!ctx.build) r.attempt(() => r.fail(f, 'has build: but no image: build and push it with `ferry release create --build --push-to REGISTRY/PREFIX`, or add image: with a pushed name'));
  const deploy = opt('deploy', (d) => r.keys(d, 'service.deploy')) ?? {};
  const sub = (x: Field | undefined, scope: string) => (x && !r.isNull(x) ? r.attempt(() => r.keys(x, scope)) ?? {} : {});
  const update = sub(deploy.update_config, 'service.deploy.update_config');
  const res = sub(deploy.resources, 'service.deploy.resources');
  const restartPolicy = sub(deploy.restart_policy, 'service.deploy.restart_policy');
  if (deploy.mode) r.attempt(() => r.oneOf(deploy.mode!, ['replicated']));
  const replicas = r.attempt(() => {
    if (deploy.replicas && k.scale) r.fail(k.scale, 'and deploy.replicas are both set; keep one');
    const n = deploy.replicas ?? k.scale;
    return n ? r.int(n, 0, 100) : 1;
  }) ?? 1;
  const updateOrder = (update.order && r.attempt(() => r.oneOf(update.order!, ['stop-first', 'start-first']))) || 'stop-first';
  const containerName = opt('container_name', (x) => {
    if (replicas > 1) r.fail(x, `cannot name ${replicas} replicas: one name is for one container (remove container_name, or run one replica)`);
    if (updateOrder === 'start-first') r.fail(x, 'cannot go with start-first updates: old and new container would need the same name');
    return r.str(x);
  });
  let restart: Service['restart'] = (k.restart && r.attempt(() => r.oneOf(k.restart!, RESTART))) || 'no';
  if (restartPolicy.condition) restart = r.attempt(() => ({ none: 'no', 'on-failure': 'on-failure', any: 'always' } as const)[r.oneOf(restartPolicy.condition!, ['none', 'on-failure', 'any'])]) ?? restart;
  const svc: ComposeService = {
    imageRef,
    ...(opt('command', (x) => ({ command: r.words(x) }))),
    ...(opt('entrypoint', (x) => ({ entrypoint: r.words(x) }))),
    environment: r.attempt(() => environment(r, k.env_file, k.environment, ctx)) ?? {},
    ports: opt('ports', (x) => r.items(x).flatMap((p) => r.attempt(() => port(r, p)) ?? [])) ?? [],
    volumes: opt('volumes', (x) => r.items(x).flatMap((v) => r.attempt(() => volume(r, v, ctx)) ?? [])) ?? [],
    networks: k.networks ? (r.attempt(() => networks(r, k.networks!, ctx)) ?? []) : k.network_mode ? [] : ['default'],
    dependsOn: {}, // filled by the caller, once every service is known
    ...(opt('healthcheck', (x) => ({ healthcheck: health(r, x) }))),
    restart,
    labels: opt('labels', (x) => Object.fromEntries(r.pairs(x).map(([key, v]) => [key, v ?? '']))) ?? {},
    ...(opt('user', (x) => ({ user: r.str(x) }))),
    ...(opt('working_dir', (x) => ({ workingDir: r.str(x) }))),
    stopGracePeriodMs: opt('stop_grace_period', (x) => r.durationMs(x)) ?? DEFAULT_STOP_GRACE_MS,
    replicas,
    updateOrder,
    ...(containerName !== undefined && { containerName }),
    ...(opt('expose', (x) => ({ expose: r.list(x).map((e) => exposed(r, e)) }))),
    ...(opt('hostname', (x) => ({ hostname: r.str(x) }))),
    ...(opt('domainname', (x) => ({ domainname: r.str(x) }))),
    ...(opt('stop_signal', (x) => ({ stopSignal: r.str(x) }))),
    ...(opt('stdin_open', (x) => ({ stdinOpen: r.bool(x) }))),
    ...(opt('tty', (x) => ({ tty: r.bool(x) }))),
    ...(opt('init', (x) => ({ init: r.bool(x) }))),
    ...(opt('read_only', (x) => ({ readOnly: r.bool(x) }))),
    ...(opt('extra_hosts', (x) => ({ extraHosts: extraHosts(r, x) }))),
    ...(opt('dns', (x) => ({ dns: r.list(x).map((i) => r.str(i)) }))),
    ...(opt('dns_opt', (x) => ({ dnsOptions: r.list(x).map((i) => r.str(i)) }))),
    ...(opt('dns_search', (x) => ({ dnsSearch: r.list(x).map((i) => r.str(i)) }))),
    ...(opt('group_add', (x) => ({ groupAdd: r.list(x).map((i) => r.str(i)) }))),
    ...(opt('shm_size', (x) => ({ shmSizeBytes: r.bytes(x) }))),
    ...(opt('tmpfs', (x) => ({ tmpfs: Object.fromEntries(r.list(x).map((i) => tmpfsEntry(r, i))) }))),
    ...(opt('security_opt', (x) => ({ securityOpt: r.items(x).map((i) => r.oneOf(i, ['no-new-privileges', 'no-new-privileges:true'])) }))),
    ...resources(r, k, res),
    ...(opt('ulimits', (x) => ({ ulimits: ulimits(r, x) }))),
    ...(opt('logging', (x) => ({ logging: logging(r, x) }))),
    ...(opt('secrets', (x) => ({ secrets: r.items(x).map((i) => fileRef(r, i, 'secret', ctx.secrets)) }))),
    ...(opt('configs', (x) => ({ configs: r.items(x).map((i) => fileRef(r, i, 'config', ctx.configs)) }))),
    ...privileges(r, k, opt),
    ...opt('x-ferry', (x) => ferryService(r, x, replicas)),
  };
  if (k.links) r.attempt(() => links(r, k.links!));
  if (r.problems.length > before) return undefined;
  return { svc, ...(build && { build }), imageAt: `${(k.image ?? f).file}:${(k.image ?? f).line}` };
}

/** The keys a bank's agent policy must allow (see the agent's policy limits), as written. */
function privileges(r: Reader, k: Partial<Record<string, Field>>, opt: <T>(key: string, fn: (x: Field) => T) => T | undefined): Partial<Service> {
  const caps = (x: Field) => r.items(x).map((i) => {
    const c = r.str(i).toUpperCase().replace(/^CAP_/, '');
    if (!/^[A-Z_]{1,64}$/.test(c)) r.fail(i, `is not a capability name (got ${JSON.stringify(c)})`);
    return c;
  });
  if (k.network_mode && k.networks) r.attempt(() => r.fail(k.network_mode!, 'and networks: cannot both be set (compose refuses it too)'));
  return {
    ...(opt('cap_add', (x) => ({ capAdd: caps(x) }))),
    ...(opt('cap_drop', (x) => ({ capDrop: caps(x) }))),
    ...(opt('privileged', (x) => ({ privileged: r.bool(x) }))),
    ...(opt('network_mode', (x) => ({ networkMode: r.oneOf(x, ['host', 'none', 'bridge']) }))),
    ...(opt('pid', (x) => ({ pid: r.oneOf(x, ['host']) }))),
    ...(opt('ipc', (x) => ({ ipc: r.oneOf(x, ['host', 'private', 'shareable']) }))),
    ...(opt('devices', (x) => ({ devices: r.items(x).map((i) => device(r, i)) }))),
    ...(opt('sysctls', (x) => ({ sysctls: Object.fromEntries(r.pairs(x).map(([n, v, at]) => [n, v ?? r.fail(at, 'needs a value')])) }))),
  };
}

function device(r: Reader, f: Field): NonNullable<Service['devices']>[number] {
  if (f.value.kind === 'map') {
    const k = r.keys(f, 'service.device');
    if (!k.source) r.fail(f, 'needs source:');
    const host = r.str(k.source);
    return { host, container: k.target ? r.str(k.target) : host, permissions: k.permissions ? r.str(k.permissions) : 'rwm' };
  }
  const [host = '', container = host, permissions = 'rwm'] = r.str(f).split(':');
  if (!host.startsWith('/') || !container.startsWith('/') || !/^[rwm]{1,3}$/.test(permissions)) r.fail(f, 'must be HOST_PATH[:CONTAINER_PATH[:rwm]]');
  return { host, container, permissions };
}

/** `host:ip` or `host=ip` lines (or a map), as `host:ip`: the form the engine takes. */
function extraHosts(r: Reader, f: Field): string[] {
  if (f.value.kind === 'map') return r.pairs(f).map(([h, ip, at]) => (ip === undefined ? r.fail(at, 'needs an address') : `${h}:${ip}`));
  return r.items(f).map((i) => {
    const s = r.str(i);
    const at = s.includes('=') ? s.indexOf('=') : s.indexOf(':');
    if (at <= 0 || at === s.length - 1) r.fail(i, `must be host:ip or host=ip (got ${JSON.stringify(s)})`);
    return `${s.slice(0, at)}:${s.slice(at + 1)}`;
  });
}

function links(r: Reader, f: Field): void {
  for (const i of r.items(f)) {
    const [svc, alias = svc] = r.str(i).split(':');
    if (alias !== svc) r.attempt(() => r.fail(i, `gives ${svc} the alias ${alias}: Ferry does not support link aliases; use the service name ${svc}`));
  }
}

function buildSpec(r: Reader, f: Field, ctx: Context): BuildSpec {
  const k = f.value.kind === 'map' ? r.keys(f, 'service.build') : { context: f };
  const dir = ctx.dirOf(f.file);
  return {
    context: resolve(dir, k.context ? r.str(k.context) : '.'),
    ...(k.dockerfile && { dockerfile: r.str(k.dockerfile) }),
    args: k.args ? Object.fromEntries(r.pairs(k.args).flatMap(([a, v]) => (v === undefined ? [] : [[a, v]]))) : {},
    ...(k.target && { target: r.str(k.target) }),
    labels: k.labels ? Object.fromEntries(r.pairs(k.labels).map(([a, v]) => [a, v ?? ''])) : {},
    noCache: k.no_cache ? r.bool(k.no_cache) : false,
    pull: k.pull ? r.bool(k.pull) : false,
    at: `${f.file}:${f.line}`,
  };
}

/** env_file entries first, in order, then `environment:` over them, as compose does. */
function environment(r: Reader, envFile: Field | undefined, env: Field | undefined, ctx: Context): Record<string, string> {
  const out = new Map<string, string>();
  for (const item of r.isNull(envFile) ? [] : r.list(envFile!)) {
    const k = item.value.kind === 'map' ? r.keys(item, 'service.env_file') : { path: item };
    if (!k.path) r.fail(item, 'needs a path');
    const path = resolve(ctx.dirOf(item.file), r.str(k.path));
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      if (k.required && !r.bool(k.required) && (err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw new ComposeError(item.file, item.line, `${item.path} cannot be read: ${(err as Error).message}`, 'file');
    }
    const lookup = r.lookup(item.file);
    const vars = r.check(item, () => {
      try {
        return parseEnvFile(text, lookup, (name) => r.warn(`${name} is not set; ${path} uses an empty string in its place`));
      } catch (err) {
        throw new Error(`${path}: ${(err as Error).message}`);
      }
    });
    for (const [key, v] of vars) out.set(key, v);
  }
  const lookup = env ? r.lookup(env.file) : () => undefined;
  for (const [key, value] of env && !r.isNull(env) ? r.pairs(env) : []) {
    // A name without a value takes the variable from the environment, and is left out when unset.
    const v = value ?? lookup(key);
    if (v !== undefined) out.set(key, v);
  }
  return Object.fromEntries(out);
}

function port(r: Reader, f: Field): Port[] {
  if (f.value.kind !== 'map') {
    const spec = r.str(f, true);
    return [r.check(f, () => parsePortSpec(spec))];
  }
  const k = r.keys(f, 'service.port');
  if (!k.target) return r.fail(f, 'needs target:');
  if (k.mode) r.oneOf(k.mode, ['host']);
  const published = k.published ? r.str(k.published, true) : '';
  if (published.includes('-')) r.fail(k.published!, `is a port range (${published}); Ferry does not support port ranges, list each port`);
  return [{
    target: r.int(k.target, 1, 65535),
    protocol: k.protocol ? r.oneOf(k.protocol, ['tcp', 'udp']) : 'tcp',
    ...(published !== '' && { published: r.int(k.published!, 1, 65535) }),
    ...(k.host_ip && { hostIp: r.str(k.host_ip, true) }),
  }];
}

function exposed(r: Reader, f: Field): { target: number; protocol: 'tcp' | 'udp' } {
  const s = r.str(f);
  const m = /^(\d{1,5})(?:\/(tcp|udp))?$/.exec(s);
  const n = m ? Number(m[1]) : 0;
  if (!m || n < 1 || n > 65535) r.fail(f, `must be a port like 8080 or 53/udp (got ${JSON.stringify(s)})`);
  return { target: n, protocol: (m[2] as 'tcp' | 'udp' | undefined) ?? 'tcp' };
}

function volume(r: Reader, f: Field, ctx: Context): Mount {
  const baseDir = ctx.dirOf(f.file);
  let m: Mount;
  if (f.value.kind !== 'map') {
    let spec = r.str(f);
    const parts = spec.split(':');
    const opts = parts.length === 3 ? parts[2]!.split(',') : [];
    if (opts.some((o) => o === 'z' || o === 'Z')) {
      // SELinux relabelling: nothing to relabel on a named volume; on a host path it is the institution's choice.
      if (/^[./]/.test(parts[0]!)) r.fail(f, `relabels host path ${parts[0]} for SELinux (:${opts.join(',')}); that is the institution's choice: drop :z/:Z`);
      r.warn(`${f.path} option :z/:Z is ignored: it relabels host paths for SELinux, and a named volume is not one`);
      spec = [parts[0], parts[1], opts.filter((o) => o !== 'z' && o !== 'Z').join(',')].filter(Boolean).join(':');
    }
    m = r.check(f, () => parseVolumeSpec(spec, baseDir));
  } else {
    const k = r.keys(f, 'service.volume');
    const type = k.type ? r.oneOf(k.type, ['volume', 'bind', 'tmpfs']) : r.fail(f, 'needs type: (volume, bind or tmpfs)');
    if (!k.target) r.fail(f, 'needs target:');
    const target = r.str(k.target);
    const readOnly = k.read_only ? r.bool(k.read_only) : false;
    if (type === 'tmpfs') {
      const t = k.tmpfs && !r.isNull(k.tmpfs) ? r.keys(k.tmpfs, 'service.volume.tmpfs') : {};
      m = { type: 'tmpfs', source: '', target, readOnly, ...(t.size && { tmpfsSize: r.bytes(t.size) }), ...(t.mode && { tmpfsMode: parseInt(r.str(t.mode), 8) }) };
    } else {
      if (type === 'bind' && !k.source) r.fail(f, 'needs source:');
      const source = k.source ? r.str(k.source) : '';
      if (k.bind && !r.isNull(k.bind)) r.keys(k.bind, 'service.volume.bind');
      const v = k.volume && !r.isNull(k.volume) ? r.keys(k.volume, 'service.volume.volume') : {};
      m = { ...r.check(f, () => mount(source, target, readOnly, baseDir, type)), ...(v.nocopy && r.bool(v.nocopy) && { noCopy: true }) };
    }
  }
  if (m.type === 'tmpfs' && !m.target.startsWith('/')) r.fail(f, `has target ${JSON.stringify(m.target)}, which is not an absolute path`);
  if (m.type === 'volume' && !ctx.volumes.has(m.source)) r.fail(f, `uses volume ${m.source}, which is not declared under top-level volumes:`);
  return m;
}

function networks(r: Reader, f: Field, ctx: Context): string[] {
  const names = f.value.kind === 'seq'
    ? r.items(f).map((i) => [r.str(i), i] as const)
    : r.entries(f).map((e) => {
      if (!r.isNull(e)) r.keys(e, 'service.network');
      return [e.key!, e] as const;
    });
  return names.map(([name, at]) => {
    if (name !== 'default' && !ctx.networks.has(name)) r.fail(at, `uses network ${name}, which is not declared under top-level networks:`);
    return name;
  });
}

function health(r: Reader, f: Field): NonNullable<Service['healthcheck']> {
  const k = r.keys(f, 'service.healthcheck');
  // Disabled: the image's own HEALTHCHECK is switched off too, as compose does.
  if (k.disable && r.bool(k.disable)) return { test: ['NONE'] };
  const test = k.test ? (k.test.value.kind === 'seq' ? r.strings(k.test) : ['CMD-SHELL', r.str(k.test)]) : undefined;
  if (test?.[0] === 'NONE') return { test: ['NONE'] };
  if (test && test[0] !== 'CMD' && test[0] !== 'CMD-SHELL') r.fail(k.test!, 'must be a string, or a list starting with CMD, CMD-SHELL or NONE');
  if (test && test.length < 2) r.fail(k.test!, `needs a command after ${test[0]}`);
  return {
    ...(test && { test }),
    ...(k.interval && { intervalMs: r.durationMs(k.interval) }),
    ...(k.timeout && { timeoutMs: r.durationMs(k.timeout) }),
    ...(k.retries && { retries: r.int(k.retries, 0, 1000) }),
    ...(k.start_period && { startPeriodMs: r.durationMs(k.start_period) }),
  };
}

/** deploy.resources limits and reservations, and the service-level mem_limit / cpus / pids_limit / mem_reservation. */
function resources(r: Reader, k: Partial<Record<string, Field>>, res: Partial<Record<string, Field>>): Pick<Service, 'resources'> {
  const sub = (x: Field | undefined, scope: string) => (x && !r.isNull(x) ? r.attempt(() => r.keys(x, scope)) ?? {} : {});
  const limits = sub(res.limits, 'service.deploy.resources.limits');
  const reservations = sub(res.reservations, 'service.deploy.resources.reservations');
  const one = (a: Field | undefined, b: Field | undefined) => {
    if (a && b) r.attempt(() => r.fail(b, `and ${a.path} are both set; keep one`));
    return a ?? b;
  };
  const cpus = one(limits.cpus, k.cpus);
  const memory = one(limits.memory, k.mem_limit);
  const pids = one(limits.pids, k.pids_limit);
  const reservation = one(reservations.memory, k.mem_reservation);
  const out: NonNullable<Service['resources']> = {
    ...(cpus && r.attempt(() => ({ nanoCpus: Math.round(r.number(cpus, 0.001, 1024) * 1e9) }))),
    ...(memory && r.attempt(() => ({ memoryBytes: r.bytes(memory) }))),
    ...(reservation && r.attempt(() => ({ memoryReservationBytes: r.bytes(reservation) }))),
    ...(pids && r.attempt(() => ({ pids: r.int(pids, -1, 2 ** 31) }))),
  };
  return Object.keys(out).length ? { resources: out } : {};
}

function ulimits(r: Reader, f: Field): NonNullable<Service['ulimits']> {
  return Object.fromEntries(r.entries(f).map((e) => {
    if (!/^[a-z]{1,32}$/.test(e.key!)) r.fail(e, 'is not a ulimit name like nofile or nproc');
    if (e.value.kind !== 'map') {
      const n = r.int(e, -1, Number.MAX_SAFE_INTEGER);
      return [e.key!, { soft: n, hard: n }];
    }
    const k = r.keys(e, 'service.ulimit');
    if (!k.soft || !k.hard) r.fail(e, 'needs soft: and hard:');
    return [e.key!, { soft: r.int(k.soft, -1, Number.MAX_SAFE_INTEGER), hard: r.int(k.hard, -1, Number.MAX_SAFE_INTEGER) }];
  }));
}

function logging(r: Reader, f: Field): NonNullable<Service['logging']> {
  const k = r.keys(f, 'service.logging');
  const driver = k.driver ? r.str(k.driver) : 'json-file';
  if (!/^[a-z0-9][a-z0-9_.:/-]{0,127}$/.test(driver)) r.fail(k.driver!, `is not a logging driver name (got ${JSON.stringify(driver)})`);
  return { driver, options: k.options && !r.isNull(k.options) ? Object.fromEntries(r.pairs(k.options).map(([o, v]) => [o, v ?? ''])) : {} };
}

/** A secret or config the service uses: `name`, or the long syntax with target, uid, gid and mode. */
function fileRef(r: Reader, f: Field, kind: 'secret' | 'config', declared: ReadonlySet<string>): FileRef {
  const k = f.value.kind === 'map' ? r.keys(f, `service.${kind}`) : { source: f };
  if (!k.source) r.fail(f, 'needs source:');
  const name = r.str(k.source);
  if (!FILE_REF_NAME.test(name)) r.fail(k.source, `is not a usable ${kind} name (letters, digits, . _ and -)`);
  if (!declared.has(name)) r.fail(k.source, `uses ${kind} ${name}, which is not declared under top-level ${kind}s:`);
  const t = k.target ? r.str(k.target) : undefined;
  // compose: a secret's relative target is under /run/secrets; a config's default is /<name>.
  const target = t === undefined ? (kind === 'secret' ? `/run/secrets/${name}` : `/${name}`) : t.startsWith('/') ? t : kind === 'secret' ? `/run/secrets/${t}` : `/${t}`;
  const mode = k.mode ? r.str(k.mode) : undefined;
  if (mode !== undefined && !/^0?[0-7]{1,3}$/.test(mode)) r.fail(k.mode!, `must be an octal file mode like 0440 (got ${JSON.stringify(mode)})`);
  return {
    name,
    target,
    ...(mode !== undefined && { mode: parseInt(mode, 8) }),
    ...(k.uid && { uid: r.str(k.uid) }),
    ...(k.gid && { gid: r.str(k.gid) }),
  };
}

function tmpfsEntry(r: Reader, f: Field): [string, string] {
  const s = r.str(f);
  const at = s.indexOf(':');
  const [path, opts] = at < 0 ? [s, ''] : [s.slice(0, at), s.slice(at + 1)];
  if (!path.startsWith('/')) r.fail(f, `must be an absolute path, optionally with :options (got ${JSON.stringify(s)})`);
  return [path, opts];
}

function portNumber(s: string, what: string): number {
  const n = /^\d{1,5}$/.test(s) ? Number(s) : NaN;
  if (!(n >= 1 && n <= 65535)) throw new Error(`has an invalid ${what} port ${JSON.stringify(s)}`);
  return n;
}

/** Short port syntax: `80`, `8080:80`, `127.0.0.1:8080:80/udp`, `127.0.0.1::80`, `[::1]:8080:80`. No host port: the engine picks one. */
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
 * `/abs:/path` (bind, made absolute against baseDir), `/path` (anonymous).
 */
export function parseVolumeSpec(spec: string, baseDir: string): Mount {
  const parts = spec.split(':');
  if (parts.length === 1) return mount('', spec, false, baseDir, 'volume');
  if (parts.length > 3) throw new Error(`is not a volume like name:/path[:ro] (got ${JSON.stringify(spec)})`);
  const [source, target, mode = ''] = parts as [string, string, string?];
  let readOnly = false;
  let noCopy = false;
  for (const opt of mode.split(',').filter(Boolean)) {
    if (opt !== 'ro' && opt !== 'rw' && opt !== 'nocopy') throw new Error(`uses volume option ${JSON.stringify(opt)}; Ferry supports ro, rw and nocopy`);
    if (opt === 'nocopy') noCopy = true;
    else readOnly = opt === 'ro';
  }
  const m = mount(source, target, readOnly, baseDir);
  if (noCopy && m.type !== 'volume') throw new Error('uses nocopy, which is for named volumes');
  return noCopy ? { ...m, noCopy } : m;
}

function mount(source: string, target: string, readOnly: boolean, baseDir: string, type?: 'volume' | 'bind'): Mount {
  if (!target.startsWith('/')) throw new Error(`has target ${JSON.stringify(target)}, which is not an absolute path`);
  if (source.startsWith('~')) throw new Error(`has source ${JSON.stringify(source)}; write the bind path without ~`);
  if (source === '' && type === 'volume') return { type: 'anonymous', source: '', target, readOnly };
  const bind = type ? type === 'bind' : source.startsWith('/') || source.startsWith('.');
  if (source === '') throw new Error('has an empty source');
  return { type: bind ? 'bind' : 'volume', source: bind ? resolve(baseDir, source) : source, target, readOnly };
}

// Importing a compose project into Ferry's release form. Each key the
// Compose specification defines is imported with the container config docker
// compose gives it, imported and left to each bank's policy (privilege-
// widening keys), ignored with a warning, or refused with the reason and what
// to write instead (the table in ./compose-keys.ts). One run reports every
// problem, each with file:line and the key, and every warning.
//
// Images stay as written (`imageRef`); pinning them to digests is
// `pinImages` in ./registry.ts; building them is ./compose-build.ts.
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { FerryError, type ErrorCode } from '../shared/errors.js';
import { NAME, type Release, Service } from '../shared/release.js';
import { ComposeError, type Field, type Reader } from './compose-fields.js';
import { ferryTop, isVerifyJob } from './compose-ferry.js';
import { POLICY_KEYS } from './compose-keys.js';
import { loadProject } from './compose-load.js';
import { type BuildSpec, type ComposeService, type Context, service } from './compose-service.js';

export type { ComposeService, BuildSpec } from './compose-service.js';
export { parsePortSpec, parseVolumeSpec } from './compose-service.js';

export interface ComposeImport {
  /** Top-level `name:`, when the file has one. */
  name?: string;
  services: Record<string, ComposeService>;
  networks: Release['networks'];
  volumes: Release['volumes'];
  /** Non-fatal findings to show the operator (unset variables, ignored keys). */
  warnings: string[];
  /** `file:line` of each service's image key, for registry errors. */
  imageAt: Record<string, string>;
  /** Services with `build:`, when the import was asked to build (`build: true`). */
  builds: Record<string, BuildSpec>;
  /** Settings each bank's agent policy has to allow: `web: cap_add NET_ADMIN`, `api: bind mount /var/log`. */
  policyGated: string[];
  /** Services left out because none of their profiles is active. */
  skipped: string[];
  /** x-ferry.checks: the release's service checks. */
  checks?: Release['checks'];
}

export interface ComposeOptions {
  /** The compose file as the user named it; errors say `file:line: …`. */
  file: string;
  /** The shell environment: `${VAR}` looks here first. Default: none. */
  env?: Readonly<Record<string, string | undefined>>;
  /** `--env-file`s, later over earlier; without any, the project directory's `.env` is read. */
  envFiles?: readonly string[];
  /** Where relative paths resolve. Default: the compose file's directory. */
  projectDir?: string;
  /** `--profile`s: services with profiles run only when one is active, as in compose. */
  profiles?: readonly string[];
  /** `--build`: services with build: are built and pushed (a service with only build: is refused otherwise). */
  build?: boolean;
}

/** A compose file that cannot be imported: every problem found and every warning, so the CLI can print them all. */
export class ComposeRefused extends FerryError {
  constructor(code: ErrorCode, readonly problems: string[], readonly warnings: string[]) {
    super(code, problems.length === 1 ? problems[0] : `${problems.length} problems:\n    ${problems.join('\n    ')}`);
  }
}

// What importCompose produces, checked against the release schema's limits before anyone signs it.
const ComposeServiceSchema = Service.omit({ image: true }).extend({ imageRef: z.string().max(512) });
const CONDITIONS = ['service_started', 'service_healthy', 'service_completed_successfully'] as const;

/** Parses and converts a compose project; throws ComposeRefused listing every problem with `file:line:` and the key's path. */
export function importCompose(opts: ComposeOptions): ComposeImport {
  let project: ReturnType<typeof loadProject>;
  try {
    project = loadProject({ file: opts.file, env: opts.env ?? {}, envFiles: opts.envFiles, projectDir: opts.projectDir });
  } catch (err) {
    if (!(err instanceof ComposeError)) throw err;
    throw new ComposeRefused(err.kind === 'yaml' ? 'FERRY_E_COMPOSE_YAML' : err.kind === 'file' ? 'FERRY_E_COMPOSE_FILE' : 'FERRY_E_COMPOSE_INVALID', [err.located], []);
  }
  const r = project.reader;
  const dirOf = (file: string) => project.files.get(file)?.dir ?? resolve(opts.projectDir ?? dirname(opts.file));
  const out = r.attempt(() => convert(r, project.root, { ...opts, dirOf }));
  if (r.problems.length || !out) {
    const kinds = new Set(r.problems.map((p) => p.kind));
    const code: ErrorCode = kinds.size === 1 && kinds.has('yaml') ? 'FERRY_E_COMPOSE_YAML' : kinds.size === 1 && kinds.has('file') ? 'FERRY_E_COMPOSE_FILE' : 'FERRY_E_COMPOSE_INVALID';
    throw new ComposeRefused(code, r.problems.map((p) => p.located), r.warnings);
  }
  return { ...out, warnings: r.warnings };
}

function convert(r: Reader, root: Field, opts: ComposeOptions & { dirOf(file: string): string }): Omit<ComposeImport, 'warnings'> {
  if (root.value.kind !== 'map') r.fail(root, 'must be a map of services, networks and volumes at the top level');
  const top = r.keys(root, 'top');
  const name = top.name ? r.attempt(() => {
    const n = r.str(top.name!, true);
    if (!NAME.test(n)) r.fail(top.name!, `is not a valid stack name (got ${JSON.stringify(n)}): lowercase letters, digits, _ and -, up to 63`);
    return n;
  }) : undefined;
  const networks: Release['networks'] = {};
  for (const f of r.isNull(top.networks) ? [] : r.entries(top.networks!)) {
    r.attempt(() => {
      const k = r.isNull(f) ? {} : r.keys(f, 'network');
      if (k.driver) r.oneOf(k.driver, ['bridge']);
      if (k.enable_ipv4 && !r.bool(k.enable_ipv4)) r.fail(k.enable_ipv4, 'false is not supported: stack networks are IPv4');
      networks[named(r, f, 'network')] = { internal: k.internal ? r.bool(k.internal) : false, ...labelsOf(r, k.labels) };
    });
  }
  const volumes: Release['volumes'] = {};
  for (const f of r.isNull(top.volumes) ? [] : r.entries(top.volumes!)) {
    r.attempt(() => {
      const k = r.isNull(f) ? {} : r.keys(f, 'volume');
      if (k.driver) r.oneOf(k.driver, ['local']);
      volumes[named(r, f, 'volume')] = { ...labelsOf(r, k.labels) };
    });
  }
  const declared = (section: Field | undefined, scope: 'secret' | 'config') =>
    new Set((r.isNull(section) ? [] : r.entries(section!)).map((f) => {
      if (!r.isNull(f)) r.attempt(() => r.keys(f, scope));
      return f.key!;
    }));
  const ctx: Context = { networks: new Set(Object.keys(networks)), volumes: new Set(Object.keys(volumes)), secrets: declared(top.secrets, 'secret'), configs: declared(top.configs, 'config'), build: !!opts.build, dirOf: opts.dirOf };
  if (r.isNull(top.services)) return r.fail(root, 'has no services:');
  const fields = r.entries(top.services!).filter((f) => active(r, f, opts.profiles ?? []));
  const skipped = r.entries(top.services!).filter((f) => !fields.some((x) => x.key === f.key)).map((f) => f.key!);
  if (fields.length < 1 || fields.length > 100) r.fail(top.services!, `must list 1 to 100 services${skipped.length ? ` (${skipped.join(', ')} need a --profile)` : ''}`);
  const services: Record<string, ComposeService> = {};
  const imageAt: Record<string, string> = {};
  const builds: Record<string, BuildSpec> = {};
  for (const f of fields) {
    const svcName = r.attempt(() => named(r, f, 'service'));
    const got = r.attempt(() => service(r, f, ctx));
    if (!svcName || !got) continue;
    if (got.build && opts.build) builds[svcName] = got.build;
    else if (got.build) r.warn(`${f.path}.build is ignored: Ferry uses the pushed image ${got.svc.imageRef} (give --build to build it)`);
    services[svcName] = got.svc;
    imageAt[svcName] = got.imageAt;
  }
  dependencies(r, services, fields);
  for (const f of fields) {
    if (!services[f.key!]) continue;
    const check = ComposeServiceSchema.safeParse(services[f.key!]);
    if (!check.success) {
      const issue = check.error.issues[0]!;
      r.attempt(() => r.fail({ path: `${f.path}.${issue.path.join('.')}`, file: f.file, line: f.line }, `is not valid: ${issue.message}`));
    }
  }
  const ferry = r.attempt(() => ferryTop(r, top['x-ferry'], root, services)) ?? {};
  return { ...(name && { name }), services, networks, volumes, imageAt, builds, policyGated: policyGated(services), skipped, ...ferry };
}

/** A map entry's key, checked against the release schema's NAME rule. */
function named(r: Reader, f: Field, what: string): string {
  const n = f.key!;
  if (!NAME.test(n)) r.fail(f, `is not a valid ${what} name: use lowercase letters, digits, _ and -, starting with a letter or digit, up to 63`);
  return n;
}

function labelsOf(r: Reader, f: Field | undefined): { labels?: Record<string, string> } {
  if (r.isNull(f)) return {};
  const labels = Object.fromEntries(r.pairs(f!).map(([k, v]) => [k, v ?? '']));
  for (const k of Object.keys(labels)) if (k.startsWith('ferry.')) r.fail(f!, `sets ${k}: labels starting with ferry. are Ferry's own`);
  return Object.keys(labels).length ? { labels } : {};
}

/** compose profiles: a service that has some runs only when one of them is active. */
function active(r: Reader, f: Field, profiles: readonly string[]): boolean {
  if (f.value.kind !== 'map' || isVerifyJob(f)) return true; // a verification job is run by Ferry whatever its profiles
  const p = r.entries(f).find((e) => e.key === 'profiles');
  if (!p || r.isNull(p)) return true;
  const mine = r.attempt(() => r.strings(p)) ?? [];
  return mine.some((x) => profiles.includes(x));
}

/** depends_on: a list, or a map with `condition:`; every name a service of this file; no cycles. */
function dependencies(r: Reader, services: Record<string, ComposeService>, fields: Field[]): void {
  const at = new Map<string, Field>();
  for (const f of fields) {
    const dep = f.value.kind === 'map' ? r.entries(f).find((e) => e.key === 'depends_on') : undefined;
    const svc = services[f.key!];
    if (!dep || r.isNull(dep) || !svc) continue;
    at.set(f.key!, dep);
    r.attempt(() => {
      const deps = dep.value.kind === 'seq'
        ? r.items(dep).map((i) => [r.str(i), 'service_started' as const, i] as const)
        : r.entries(dep).map((e) => {
          const k = r.isNull(e) ? {} : r.keys(e, 'service.depends_on');
          if (k.required) r.bool(k.required);
          return [e.key!, k.condition ? r.oneOf(k.condition, CONDITIONS) : ('service_started' as const), e] as const;
        });
      for (const [name, condition, where] of deps) {
        if (!fields.some((x) => x.key === name)) r.attempt(() => r.fail(where, `names ${name}, which is not a service of this file${fields.length ? '' : ''}`));
        else if (name === f.key) r.attempt(() => r.fail(where, 'makes the service depend on itself'));
        else svc.dependsOn[name] = { condition };
      }
    });
  }
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (name: string, trail: string[]): void => {
    if (state.get(name) === 'done' || !services[name]) return;
    if (state.get(name) === 'visiting') r.fail(at.get(name)!, `forms a cycle: ${[...trail.slice(trail.indexOf(name)), name].join(' -> ')}; remove one of these depends_on entries`);
    state.set(name, 'visiting');
    for (const dep of Object.keys(services[name]!.dependsOn)) visit(dep, [...trail, name]);
    state.set(name, 'done');
  };
  for (const name of Object.keys(services)) {
    r.attempt(() => visit(name, []));
    for (const [n, st] of state) if (st === 'visiting') state.set(n, 'done'); // a cycle is reported once, not from each member
  }
}

/** What a bank's agent policy must allow for this release to run there, one line per setting. */
function policyGated(services: Record<string, ComposeService>): string[] {
  const out: string[] = [];
  const show = (v: unknown) => (Array.isArray(v) ? v.map((x) => (typeof x === 'object' ? Object.values(x as object).join(':') : String(x))).join(', ') : typeof v === 'object' ? Object.entries(v as object).map(([k, x]) => `${k}=${String(x)}`).join(', ') : String(v));
  const field: Record<string, keyof ComposeService> = { cap_add: 'capAdd', privileged: 'privileged', network_mode: 'networkMode', pid: 'pid', ipc: 'ipc', devices: 'devices', sysctls: 'sysctls' };
  for (const [name, s] of Object.entries(services)) {
    for (const key of POLICY_KEYS) {
      const v = s[field[key]!];
      if (v !== undefined && v !== false && !(key === 'ipc' && v === 'private')) out.push(`${name}: ${key} ${show(v)}`);
    }
    for (const m of s.volumes) if (m.type === 'bind') out.push(`${name}: bind mount of host path ${m.source}${m.readOnly ? ' (read-only)' : ''}`);
    if (s.user === 'root' || s.user === '0' || s.user?.startsWith('0:') || s.user?.startsWith('root:')) out.push(`${name}: user ${s.user}`);
  }
  return out;
}

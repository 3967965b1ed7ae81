// Loading a compose project as docker compose does, before any key is
// converted: the variables (shell environment over `--env-file`s, or over the
// project directory's `.env`), `include:` (other compose files whose
// services, networks, volumes, secrets and configs join this one, each
// interpolated with its own env files and resolving relative paths against
// its own directory), `extends:` (a service built on another, in this file or
// another), merged by the Compose specification's rules, with `!override`
// (replace instead of merge) and `!reset` (drop) honoured.
//
// Every value keeps the file and line it came from, so an error in an
// included or extended file names that file.
import { readFileSync } from 'node:fs';
import { dirname, join, normalize, resolve } from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import { parseEnvFile, type Lookup } from './compose-interpolate.js';
import { ComposeError, type Entry, type Field, Reader, type Value, locatedTree } from './compose-fields.js';

export interface LoadOptions {
  /** The compose file as the user named it (errors say this). */
  file: string;
  /** The shell environment: wins over every env file. */
  env: Readonly<Record<string, string | undefined>>;
  /** `--env-file` files in order (later wins); when empty, the project directory's `.env` is read if present. */
  envFiles?: readonly string[];
  /** Where relative paths resolve; default: the compose file's directory. */
  projectDir?: string;
}

export interface SourceFile {
  /** The name errors use. */
  display: string;
  /** Where the file's relative paths resolve. */
  dir: string;
  lookup: Lookup;
}

export interface Project {
  root: Field;
  reader: Reader;
  /** Every file read, by display name. */
  files: Map<string, SourceFile>;
}

const MAX_FILES = 64;

/** Reads the project; YAML errors and unreadable files throw (nothing else can be read), other problems collect in the reader. */
export function loadProject(opts: LoadOptions): Project {
  const files = new Map<string, SourceFile>();
  const reader = new Reader((file) => files.get(file)?.lookup ?? (() => undefined));
  const projectDir = resolve(opts.projectDir ?? dirname(opts.file));
  const envFiles = opts.envFiles?.length ? opts.envFiles : [join(projectDir, '.env')];
  const fileVars = readEnvFiles(envFiles, opts.env, !opts.envFiles?.length, reader);
  const lookup: Lookup = (k) => opts.env[k] ?? fileVars.get(k);
  const loader = new Loader(files, reader, opts.env);
  const main = loader.read(opts.file, opts.file, projectDir, lookup, { path: '', file: opts.file, line: 1 });
  const root: Field = { path: '', file: opts.file, line: main.line, value: main };
  reader.attempt(() => loader.includes(root, lookup));
  reader.attempt(() => loader.extendAll(root));
  return { root: { ...root, value: dropResets(root.value) }, reader, files };
}

/** Env files in order, later over earlier; `optional`: a missing file is no error (the default `.env`). */
function readEnvFiles(paths: readonly string[], env: LoadOptions['env'], optional: boolean, r: Reader): Map<string, string> {
  const out = new Map<string, string>();
  for (const path of paths) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      if (optional && (err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw new ComposeError(path, 1, `env file ${path} cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, 'file');
    }
    const find = (k: string) => env[k] ?? out.get(k);
    let vars: Map<string, string>;
    try {
      vars = parseEnvFile(text, find, (name) => r.warn(`${name} is not set; ${path} uses an empty string in its place`));
    } catch (err) {
      const line = Number(/^line (\d+)/.exec((err as Error).message)?.[1] ?? 1);
      throw new ComposeError(path, line, (err as Error).message.replace(/^line \d+: /, ''));
    }
    for (const [k, v] of vars) out.set(k, v);
  }
  return out;
}

class Loader {
  private readonly parsed = new Map<string, Value>();

  constructor(private readonly files: Map<string, SourceFile>, private readonly r: Reader, private readonly env: LoadOptions['env']) {}

  /** Parses one file (once), registering it with its directory and variables. */
  read(display: string, path: string, dir: string, lookup: Lookup, from: { path: string; file: string; line: number }): Value {
    const known = this.parsed.get(display);
    if (known) return known;
    if (this.files.size >= MAX_FILES) throw new ComposeError(from.file, from.line, `${from.path} brings the project above ${MAX_FILES} files`);
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      throw new ComposeError(from.file, from.line, from.path ? `${from.path} names ${display}, which cannot be read: ${code}` : `cannot be read: ${code}`, 'file');
    }
    const value = parseYaml(text, display, (line, message) => this.r.warn(`${display}:${line}: ${message}`));
    this.files.set(display, { display, dir, lookup });
    this.parsed.set(display, value);
    return value;
  }

  /** `include:` entries, each merged into the root; a resource defined twice is an error, as in compose. */
  includes(root: Field, parentLookup: Lookup): void {
    if (root.value.kind !== 'map') return;
    const at = root.value.entries.findIndex((e) => e.key === 'include');
    if (at < 0) return;
    const field = this.r.entries(root).find((e) => e.key === 'include')!;
    root.value.entries.splice(at, 1);
    if (this.r.isNull(field)) return;
    for (const item of this.r.list(field)) {
      this.r.attempt(() => {
        const k = item.value.kind === 'map' ? this.r.keys(item, 'include') : { path: item };
        if (!k.path) this.r.fail(item, 'needs path:');
        const base = this.files.get(item.file)!;
        for (const p of this.r.list(k.path)) {
          const rel = this.r.str(p);
          const path = resolve(base.dir, rel);
          const display = normalize(join(dirname(item.file), rel));
          const dir = k.project_directory ? resolve(base.dir, this.r.str(k.project_directory)) : dirname(path);
          const envPaths = k.env_file ? this.r.list(k.env_file).map((e) => resolve(base.dir, this.r.str(e))) : [join(dir, '.env')];
          const vars = readEnvFiles(envPaths, this.env, !k.env_file, this.r);
          const lookup: Lookup = (name) => this.env[name] ?? vars.get(name) ?? parentLookup(name);
          const value = this.read(display, path, dir, lookup, p);
          const sub: Field = { path: '', file: display, line: value.line, value };
          if (value.kind !== 'map') this.r.fail(sub, 'must be a map of services, networks and volumes at the top level');
          this.includes(sub, lookup);
          this.extendAll(sub);
          this.mergeResources(root, sub, p);
        }
      });
    }
  }

  private mergeResources(root: Field, sub: Field, at: Field): void {
    for (const section of ['services', 'networks', 'volumes', 'secrets', 'configs']) {
      const theirs = (sub.value as Extract<Value, { kind: 'map' }>).entries.find((e) => e.key === section);
      if (!theirs || theirs.value.kind !== 'map') continue;
      const entries = (root.value as Extract<Value, { kind: 'map' }>).entries;
      let mine = entries.find((e) => e.key === section);
      if (!mine || mine.value.kind !== 'map') {
        mine = { key: section, file: theirs.file, line: theirs.line, value: { kind: 'map', entries: [], file: theirs.file, line: theirs.line } };
        entries.push(mine);
      }
      const target = mine.value as Extract<Value, { kind: 'map' }>;
      for (const e of theirs.value.entries) {
        const clash = target.entries.find((x) => x.key === e.key);
        if (clash) throw new ComposeError(at.file, at.line, `${at.path} includes ${section}.${e.key} (${e.file}:${e.line}), which ${clash.file}:${clash.line} defines too`);
        target.entries.push(e);
      }
    }
  }

  /** Resolves `extends:` of every service of a file's root map. */
  extendAll(root: Field): void {
    const services = this.r.isNull(root) || root.value.kind !== 'map' ? undefined : this.r.entries(root).find((e) => e.key === 'services');
    if (!services || services.value.kind !== 'map') return;
    for (const e of services.value.entries) {
      this.r.attempt(() => {
        e.value = this.extended(e.file, e.key, e.value, new Set());
      });
    }
  }

  /** A service with its `extends:` chain merged in (base first). */
  private extended(file: string, name: string, value: Value, seen: Set<string>): Value {
    if (value.kind !== 'map') return value;
    const ext = value.entries.find((e) => e.key === 'extends');
    if (!ext) return value;
    const id = `${file}#${name}`;
    const field: Field = { path: `services.${name}.extends`, key: 'extends', file: ext.file, line: ext.line, value: ext.value };
    if (seen.has(id)) this.r.fail(field, `forms a cycle through ${[...seen, id].map((s) => s.replace('#', ' service ')).join(' -> ')}`);
    seen.add(id);
    const k = ext.value.kind === 'map' ? this.r.keys(field, 'service.extends') : { service: field };
    if (!k.service) this.r.fail(field, 'needs service:');
    const baseName = this.r.str(k.service);
    let baseFile = file;
    let baseRoot: Value;
    if (k.file) {
      const src = this.files.get(ext.file)!;
      const rel = this.r.str(k.file);
      baseFile = normalize(join(dirname(ext.file), rel));
      const path = resolve(src.dir, rel);
      baseRoot = this.read(baseFile, path, dirname(path), src.lookup, k.file);
    } else baseRoot = this.parsed.get(file)!;
    const services = baseRoot.kind === 'map' ? baseRoot.entries.find((e) => e.key === 'services')?.value : undefined;
    const base = services?.kind === 'map' ? services.entries.find((e) => e.key === baseName) : undefined;
    if (!base) this.r.fail(k.service, `names service ${baseName}, which ${baseFile} does not define`);
    const resolvedBase = this.extended(baseFile, baseName, base.value, seen);
    const local: Value = { ...value, entries: value.entries.filter((e) => e !== ext) };
    return merge(resolvedBase, local, '');
  }
}

/** Parses one file; the YAML parser's own warnings go to `warn`, so the user sees them. */
function parseYaml(text: string, file: string, warn: (line: number, message: string) => void): Value {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, uniqueKeys: true, prettyErrors: true });
  for (const w of doc.warnings) if (w.code !== 'TAG_RESOLVE_FAILED') warn(w.linePos?.[0].line ?? 1, w.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, ''));
  const yamlError = doc.errors[0];
  if (yamlError) {
    // An error found at the very end (an unclosed quote, say) is reported on the last line, not past it.
    const lastLine = Math.max(1, text.replace(/\n$/, '').split('\n').length);
    const line = Math.min(yamlError.linePos?.[0].line ?? 1, lastLine);
    throw new ComposeError(file, line, `is not valid YAML: ${yamlError.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`, 'yaml');
  }
  const value = locatedTree(doc, lc, file);
  if (!value) throw new ComposeError(file, 1, 'the file is empty');
  return value;
}

// ---- merging (the Compose specification's "merge" rules) ---------------------------------

/** Sequences that an override replaces whole. */
const REPLACED = new Set(['command', 'entrypoint', 'test']);
/** Sequences of `KEY=VALUE` that merge by key, like maps. */
const KEYED = new Set(['environment', 'labels', 'extra_hosts', 'sysctls', 'annotations', 'args']);

/** `over` merged onto `base`; `key` is the key both sit under. */
export function merge(base: Value, over: Value, key: string): Value {
  if (over.tag === 'override' || over.tag === 'reset') return over;
  if (KEYED.has(key) && (base.kind === 'seq' || over.kind === 'seq')) return merge(asMap(base, key), asMap(over, key), '');
  if (base.kind === 'map' && over.kind === 'map') {
    const entries: Entry[] = base.entries.map((b) => {
      const o = over.entries.find((x) => x.key === b.key);
      return o ? { ...o, value: merge(b.value, o.value, b.key) } : b;
    });
    for (const o of over.entries) if (!base.entries.some((b) => b.key === o.key)) entries.push(o);
    return { ...over, entries };
  }
  if (base.kind === 'seq' && over.kind === 'seq' && !REPLACED.has(key)) {
    const id = key === 'volumes' ? volumeTarget : (v: Value) => JSON.stringify(plain(v));
    const overIds = new Set(over.items.map(id));
    return { ...over, items: [...base.items.filter((b) => !overIds.has(id(b))), ...over.items] };
  }
  return over;
}

function asMap(v: Value, key: string): Value {
  if (v.kind !== 'seq') return v;
  const sep = key === 'extra_hosts' ? /[=:]/ : /=/;
  const entries: Entry[] = v.items.map((i) => {
    const s = i.kind === 'scalar' ? String(i.value ?? '') : '';
    const m = sep.exec(s);
    const k = m ? s.slice(0, m.index) : s;
    const rest: Value = m ? { kind: 'scalar', value: s.slice(m.index + 1), file: i.file, line: i.line } : { kind: 'scalar', value: null, file: i.file, line: i.line };
    return { key: k, file: i.file, line: i.line, value: rest };
  });
  return { kind: 'map', entries, file: v.file, line: v.line };
}

function volumeTarget(v: Value): string {
  if (v.kind === 'map') return JSON.stringify(plain(v.entries.find((e) => e.key === 'target')?.value ?? v));
  const parts = String(v.kind === 'scalar' ? v.value : '').split(':');
  return JSON.stringify(parts.length === 1 ? parts[0] : parts[1]);
}

function plain(v: Value): unknown {
  if (v.kind === 'scalar') return v.value;
  if (v.kind === 'seq') return v.items.map(plain);
  return Object.fromEntries(v.entries.map((e) => [e.key, plain(e.value)]));
}

/** What `!reset` asked for once every merge is done: the key is gone. */
function dropResets(v: Value): Value {
  if (v.kind === 'map') return { ...v, entries: v.entries.filter((e) => e.value.tag !== 'reset').map((e) => ({ ...e, value: dropResets(e.value) })) };
  if (v.kind === 'seq') return { ...v, items: v.items.filter((i) => i.tag !== 'reset').map(dropResets) };
  return v;
}

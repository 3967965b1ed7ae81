// The parts of compose import that know nothing about services: a YAML tree
// that keeps the file and line of every value, and a reader whose checks name
// the file, line and key path of what they refuse.
//
// Invariants: every problem found while reading is a ComposeError carrying
// the file and line it is about; the reader collects them (`attempt`) so one
// run reports all of them; every map is read through `keys()`, which applies
// the table in ./compose-keys.ts, so no key passes unseen.
import { type Document, type LineCounter, isAlias, isMap, isScalar, isSeq } from 'yaml';
import { parseDurationMs } from '../shared/duration.js';
import { FERRY_KEYS, KEYS, type Disposition } from './compose-keys.js';
import { interpolate, shellSplit, type Lookup } from './compose-interpolate.js';

type Scalar = string | number | boolean | null;
/** `!reset` (drop what a merge brought) and `!override` (replace it instead of merging). */
export type MergeTag = 'reset' | 'override';
/** A YAML value with the file and line it starts on; aliases and `<<` merge keys already resolved. */
export type Value = (
  | { kind: 'scalar'; value: Scalar }
  | { kind: 'map'; entries: Entry[] }
  | { kind: 'seq'; items: Value[] }
) & { file: string; line: number; tag?: MergeTag };
export interface Entry {
  key: string;
  file: string;
  line: number;
  value: Value;
}
/** A value at a path in the project (`services.web.ports[1]`), at the file and line of its key. */
export interface Field {
  path: string;
  /** The map key this value is under, when it is under one. */
  key?: string;
  file: string;
  line: number;
  value: Value;
}

export class ComposeError extends Error {
  /** `key`: a key or value refused; `yaml`: the file is not YAML; `file`: a file cannot be read. */
  constructor(readonly file: string, readonly line: number, message: string, readonly kind: 'key' | 'yaml' | 'file' = 'key') {
    super(message);
  }

  /** `docker-compose.yml:14: services.web.privileged …` */
  get located(): string {
    return `${this.file}:${this.line}: ${this.message}`;
  }
}

// Bounds alias expansion ("billion laughs") and nesting.
const MAX_NODES = 100_000;
const MAX_DEPTH = 64;

/** The document's root as a located tree, or undefined for an empty document. */
export function locatedTree(doc: Document.Parsed, lc: LineCounter, file: string): Value | undefined {
  let budget = MAX_NODES;
  const lineOf = (n: unknown, fallback: number): number => {
    const range = (n as { range?: [number, number, number] | null } | null)?.range;
    return range ? Math.max(1, lc.linePos(range[0]).line) : fallback;
  };
  const tagOf = (node: unknown, line: number): MergeTag | undefined => {
    const tag = (node as { tag?: string } | null)?.tag;
    if (tag === undefined || tag.startsWith('tag:yaml.org,2002:')) return undefined;
    if (tag === '!reset' || tag === '!override') return tag.slice(1) as MergeTag;
    throw new ComposeError(file, line, `uses the YAML tag ${tag}; compose knows only !reset and !override`);
  };
  const walk = (node: unknown, fallback: number, depth: number): Value => {
    if (--budget < 0 || depth > MAX_DEPTH) throw new ComposeError(file, fallback, 'the document nests or repeats aliases too much');
    if (isAlias(node)) {
      const target = node.resolve(doc);
      if (!target) throw new ComposeError(file, lineOf(node, fallback), `unknown alias *${node.source}`);
      return walk(target, lineOf(node, fallback), depth + 1);
    }
    const line = lineOf(node, fallback);
    const tag = tagOf(node, line);
    const base = { file, line, ...(tag && { tag }) };
    if (node === null || node === undefined) return { kind: 'scalar', value: null, ...base };
    if (isScalar(node)) {
      const v = node.value;
      if (v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return { kind: 'scalar', value: v, ...base };
      throw new ComposeError(file, line, `values of type ${typeof v} are not supported`);
    }
    if (isSeq(node)) return { kind: 'seq', items: node.items.map((i) => walk(i, line, depth + 1)), ...base };
    if (isMap(node)) {
      const entries: Entry[] = [];
      const merges: Value[] = [];
      for (const pair of node.items) {
        const keyLine = lineOf(pair.key, line);
        const k = isScalar(pair.key) ? pair.key.value : undefined;
        if (typeof k !== 'string' && typeof k !== 'number' && typeof k !== 'boolean') throw new ComposeError(file, keyLine, 'map keys must be plain strings');
        if (k === '<<' && isScalar(pair.key) && pair.key.type === 'PLAIN') merges.push(walk(pair.value, keyLine, depth + 1));
        else entries.push({ key: String(k), file, line: keyLine, value: walk(pair.value, keyLine, depth + 1) });
      }
      // YAML merge keys: explicit keys win, then earlier merged maps over later ones.
      for (const m of merges) {
        for (const src of m.kind === 'seq' ? m.items : [m]) {
          if (src.kind !== 'map') throw new ComposeError(file, src.line, '<< must merge a map or a list of maps');
          for (const e of src.entries) if (!entries.some((x) => x.key === e.key)) entries.push(e);
        }
      }
      return { kind: 'map', entries, ...base };
    }
    throw new ComposeError(file, line, 'unsupported YAML node');
  };
  return doc.contents === null ? undefined : walk(doc.contents, 1, 0);
}

/** Reads fields of a compose project: types checked, strings interpolated with their file's variables, problems located and collected. */
export class Reader {
  /** Non-fatal findings (unset variables, ignored keys), each said once. */
  readonly warnings: string[] = [];
  /** Everything refused so far. */
  readonly problems: ComposeError[] = [];

  /** `lookup(file)`: the variables that file is interpolated with. */
  constructor(readonly lookup: (file: string) => Lookup) {}

  fail(f: { file: string; line: number; path: string }, what: string): never {
    throw new ComposeError(f.file, f.line, `${f.path || 'the file'} ${what}`);
  }

  /** Runs `fn`; a ComposeError it throws is recorded and undefined returned, so reading goes on. */
  attempt<T>(fn: () => T): T | undefined {
    try {
      return fn();
    } catch (err) {
      if (!(err instanceof ComposeError)) throw err;
      if (!this.problems.some((p) => p.located === err.located)) this.problems.push(err);
      return undefined;
    }
  }

  /** Runs a parser whose plain Errors say what is wrong with `f`; located errors pass through. */
  check<T>(f: Field, parse: () => T): T {
    try {
      return parse();
    } catch (err) {
      if (err instanceof ComposeError || !(err instanceof Error)) throw err;
      return this.fail(f, err.message);
    }
  }

  warn(message: string): void {
    if (!this.warnings.includes(message)) this.warnings.push(message);
  }

  entries(f: Field): Field[] {
    if (f.value.kind !== 'map') this.fail(f, 'must be a map');
    return f.value.entries.map((e) => ({ path: f.path ? `${f.path}.${e.key}` : e.key, key: e.key, file: e.file, line: e.line, value: e.value }));
  }

  /**
   * A map's fields by key, after the table in compose-keys.ts for `scope`:
   * imported and policy-gated keys are returned, ignored ones warned about,
   * refused and unknown ones recorded as problems; `x-*` extensions pass,
   * except Ferry's own `x-ferry`, which the table lists.
   */
  keys(f: Field, scope: string): Partial<Record<string, Field>> {
    const table = KEYS[scope] ?? FERRY_KEYS[scope] ?? {};
    const out: Partial<Record<string, Field>> = {};
    for (const e of this.entries(f)) {
      const key = e.key!;
      if (key.startsWith('x-') && !Object.hasOwn(table, key)) continue; // other tools' extensions (x-ferry is in the table)
      const d: Disposition | undefined = Object.hasOwn(table, key) ? table[key] : undefined;
      if (!d) {
        const near = Object.keys(table).filter((k) => distance(k, key) <= 2);
        this.attempt(() => this.fail(e, `is not a compose key${near.length ? ` (did you mean ${near.join(' or ')}?)` : ' here (README.md lists the keys Ferry reads)'}`));
      }
      else if (d.kind === 'refuse') this.attempt(() => this.fail(e, `is not supported by Ferry: ${d.why}`));
      else if (d.kind === 'ignore') this.warn(`${e.path} is ignored: ${d.why}`);
      else out[key] = e;
    }
    return out;
  }

  items(f: Field): Field[] {
    if (f.value.kind !== 'seq') this.fail(f, 'must be a list');
    return f.value.items.map((v, i) => ({ path: `${f.path}[${i}]`, file: v.file, line: v.line, value: v }));
  }

  /** A list, or a single value taken as a list of one. */
  list(f: Field): Field[] {
    return f.value.kind === 'seq' ? this.items(f) : [f];
  }

  isNull(f: Field | undefined): boolean {
    return !f || (f.value.kind === 'scalar' && f.value.value === null);
  }

  /**
   * A string (numbers and booleans as written), interpolated like compose
   * does. `strict`: a variable that is unset and has no default is an error
   * (image, ports, name), not a warning.
   */
  str(f: Field, strict = false): string {
    if (f.value.kind !== 'scalar' || f.value.value === null) this.fail(f, 'must be a string');
    const v = f.value.value;
    return typeof v === 'string' ? this.interpolate(f, v, strict) : String(v);
  }

  int(f: Field, min: number, max: number): number {
    const s = this.str(f);
    const n = /^-?\d+$/.test(s) ? Number(s) : NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) this.fail(f, `must be a whole number from ${min} to ${max} (got ${JSON.stringify(s)})`);
    return n;
  }

  number(f: Field, min: number, max: number): number {
    const s = this.str(f);
    const n = /^\d+(\.\d+)?$|^\.\d+$/.test(s) ? Number(s) : NaN;
    if (!(n >= min && n <= max)) this.fail(f, `must be a number from ${min} to ${max} (got ${JSON.stringify(s)})`);
    return n;
  }

  bool(f: Field): boolean {
    const s = this.str(f);
    if (s !== 'true' && s !== 'false') this.fail(f, `must be true or false (got ${JSON.stringify(s)})`);
    return s === 'true';
  }

  oneOf<const T extends string>(f: Field, choices: readonly T[]): T {
    const s = this.str(f);
    if (!(choices as readonly string[]).includes(s)) this.fail(f, `must be one of ${choices.join(', ')} (got ${JSON.stringify(s)})`);
    return s as T;
  }

  durationMs(f: Field): number {
    const s = this.str(f);
    const ms = parseDurationMs(s);
    if (ms === undefined) this.fail(f, `must be a duration like 10s, 1m30s or 500ms (got ${JSON.stringify(s)})`);
    if (ms > 365 * 24 * 3600_000) this.fail(f, 'must be at most a year');
    return ms;
  }

  /** A size like compose writes it (`64m`, `1gb`, `512k`, `1048576`) in bytes. */
  bytes(f: Field): number {
    const s = this.str(f).toLowerCase();
    const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)b?$/.exec(s);
    if (!m) this.fail(f, `must be a size like 512m, 1g or a number of bytes (got ${JSON.stringify(s)})`);
    const n = Math.round(Number(m[1]) * 1024 ** ' kmgt'.indexOf(m[2] || ' '));
    if (!Number.isSafeInteger(n) || n < 1) this.fail(f, `is not a usable size (got ${JSON.stringify(s)})`);
    return n;
  }

  strings(f: Field): string[] {
    return this.items(f).map((i) => this.str(i));
  }

  /** command / entrypoint: a list, or a string split into words like a shell would. */
  words(f: Field): string[] {
    if (f.value.kind === 'seq') return this.strings(f);
    const s = this.str(f);
    return this.check(f, () => shellSplit(s));
  }

  /** environment / labels / extra_hosts: a map, or a list of `KEY=VALUE` / `KEY`. A missing value is undefined. */
  pairs(f: Field, sep = '='): [string, string | undefined, Field][] {
    if (f.value.kind === 'seq') {
      return this.items(f).map((i) => {
        const s = this.str(i);
        const eq = s.indexOf(sep);
        if (eq === 0) this.fail(i, `has no name before ${sep} (${JSON.stringify(s)})`);
        return eq < 0 ? [s, undefined, i] : [s.slice(0, eq), s.slice(eq + 1), i];
      });
    }
    return this.entries(f).map((e) => [e.key!, this.isNull(e) ? undefined : this.str(e), e]);
  }

  interpolate(f: Field, s: string, strict = false): string {
    const onUnset = (name: string) => {
      if (strict) this.fail(f, `uses variable ${name}, which is not set and has no default (set it, or write \${${name}:-default})`);
      this.warn(`${name} is not set; ${f.path} (${f.file}:${f.line}) uses an empty string in its place`);
    };
    return this.check(f, () => interpolate(s, this.lookup(f.file), onUnset));
  }
}

/** Edit distance, for "did you mean". */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = row;
  }
  return prev[b.length]!;
}

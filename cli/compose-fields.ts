// The parts of compose import that know nothing about services: a YAML tree
// that keeps line numbers, readers that fail naming path and line, compose's
// `${VAR}` interpolation, shell splitting, env files and durations.
//
// Invariant: every error raised while reading a compose file is a
// ComposeError carrying the line it is about; `importCompose` turns it into
// FERRY_E_COMPOSE_INVALID prefixed with `file:line:`.
import { type Document, type LineCounter, isAlias, isMap, isScalar, isSeq } from 'yaml';

type Scalar = string | number | boolean | null;
/** A YAML value with the line it starts on; aliases and `<<` merge keys already resolved. */
export type Value =
  | { kind: 'scalar'; value: Scalar; line: number }
  | { kind: 'map'; entries: Entry[]; line: number }
  | { kind: 'seq'; items: Value[]; line: number };
export interface Entry {
  key: string;
  line: number;
  value: Value;
}
/** A value at a path in the file (`services.web.ports[1]`), at the line of its key. */
export interface Field {
  path: string;
  /** The map key this value is under, when it is under one. */
  key?: string;
  line: number;
  value: Value;
}

export class ComposeError extends Error {
  constructor(readonly line: number, message: string) {
    super(message);
  }
}

// Bounds alias expansion ("billion laughs") and nesting.
const MAX_NODES = 100_000;
const MAX_DEPTH = 64;

/** The document's root as a located tree, or undefined for an empty document. */
export function locatedTree(doc: Document.Parsed, lc: LineCounter): Value | undefined {
  let budget = MAX_NODES;
  const lineOf = (n: unknown, fallback: number): number => {
    const range = (n as { range?: [number, number, number] | null } | null)?.range;
    return range ? Math.max(1, lc.linePos(range[0]).line) : fallback;
  };
  const walk = (node: unknown, fallback: number, depth: number): Value => {
    if (--budget < 0 || depth > MAX_DEPTH) throw new ComposeError(fallback, 'the document nests or repeats aliases too much');
    if (isAlias(node)) {
      const target = node.resolve(doc);
      if (!target) throw new ComposeError(lineOf(node, fallback), `unknown alias *${node.source}`);
      return walk(target, lineOf(node, fallback), depth + 1);
    }
    const line = lineOf(node, fallback);
    if (node === null || node === undefined) return { kind: 'scalar', value: null, line };
    if (isScalar(node)) {
      const v = node.value;
      if (v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return { kind: 'scalar', value: v, line };
      throw new ComposeError(line, `values tagged ${node.tag ?? typeof v} are not supported`);
    }
    if (isSeq(node)) return { kind: 'seq', items: node.items.map((i) => walk(i, line, depth + 1)), line };
    if (isMap(node)) {
      const entries: Entry[] = [];
      const merges: Value[] = [];
      for (const pair of node.items) {
        const keyLine = lineOf(pair.key, line);
        const k = isScalar(pair.key) ? pair.key.value : undefined;
        if (typeof k !== 'string' && typeof k !== 'number' && typeof k !== 'boolean') throw new ComposeError(keyLine, 'map keys must be plain strings');
        if (k === '<<' && isScalar(pair.key) && pair.key.type === 'PLAIN') merges.push(walk(pair.value, keyLine, depth + 1));
        else entries.push({ key: String(k), line: keyLine, value: walk(pair.value, keyLine, depth + 1) });
      }
      // YAML merge keys: explicit keys win, then earlier merged maps over later ones.
      for (const m of merges) {
        for (const src of m.kind === 'seq' ? m.items : [m]) {
          if (src.kind !== 'map') throw new ComposeError(src.line, '<< must merge a map or a list of maps');
          for (const e of src.entries) if (!entries.some((x) => x.key === e.key)) entries.push(e);
        }
      }
      return { kind: 'map', entries, line };
    }
    throw new ComposeError(line, 'unsupported YAML node');
  };
  return doc.contents === null ? undefined : walk(doc.contents, 1, 0);
}

/** Why some common keys are refused, to say more than "not supported". */
const REASONS: Record<string, string> = {
  build: 'Ferry ships images already pushed to a registry',
  aliases: 'services reach each other by service name',
  privileged: 'releases cannot widen container privileges',
  cap_add: 'releases cannot widen container privileges',
  network_mode: 'services join the stack\'s own networks',
  container_name: 'Ferry names containers itself',
};

/** Reads fields of one compose file: types checked, strings interpolated, errors located. */
export class Reader {
  /** Compose's non-fatal findings (unset variables, ignored keys), each said once. */
  readonly warnings: string[] = [];

  constructor(readonly env: Readonly<Record<string, string | undefined>>) {}

  fail(f: { line: number; path: string }, what: string): never {
    throw new ComposeError(f.line, `${f.path || 'the file'} ${what}`);
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
    return f.value.entries.map((e) => ({ path: f.path ? `${f.path}.${e.key}` : e.key, key: e.key, line: e.line, value: e.value }));
  }

  /** A map's fields by key; any key outside `allowed` (except `x-*` extensions) is refused. */
  only(f: Field, allowed: readonly string[]): Partial<Record<string, Field>> {
    const out: Partial<Record<string, Field>> = {};
    for (const e of this.entries(f)) {
      const key = e.key!;
      if (key.startsWith('x-')) continue;
      if (!allowed.includes(key)) this.fail(e, `is not supported by Ferry${Object.hasOwn(REASONS, key) ? ` (${REASONS[key]})` : ''}`);
      out[key] = e;
    }
    return out;
  }

  items(f: Field): Field[] {
    if (f.value.kind !== 'seq') this.fail(f, 'must be a list');
    return f.value.items.map((v, i) => ({ path: `${f.path}[${i}]`, line: v.line, value: v }));
  }

  isNull(f: Field): boolean {
    return f.value.kind === 'scalar' && f.value.value === null;
  }

  /** A string (numbers and booleans as written), interpolated like compose does. */
  str(f: Field): string {
    if (f.value.kind !== 'scalar' || f.value.value === null) this.fail(f, 'must be a string');
    const v = f.value.value;
    return typeof v === 'string' ? this.interpolate(f, v) : String(v);
  }

  int(f: Field, min: number, max: number): number {
    const s = this.str(f);
    const n = /^-?\d+$/.test(s) ? Number(s) : NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) this.fail(f, `must be a whole number from ${min} to ${max} (got ${JSON.stringify(s)})`);
    return n;
  }

  bool(f: Field): boolean {
    const s = this.str(f);
    if (s !== 'true' && s !== 'false') this.fail(f, `must be true or false (got ${JSON.stringify(s)})`);
    return s === 'true';
  }

  oneOf<T extends string>(f: Field, choices: readonly T[]): T {
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

  strings(f: Field): string[] {
    return this.items(f).map((i) => this.str(i));
  }

  /** command / entrypoint: a list, or a string split into words like a shell would. */
  words(f: Field): string[] {
    if (f.value.kind === 'seq') return this.strings(f);
    const s = this.str(f);
    return this.check(f, () => shellSplit(s));
  }

  /** environment / labels: a map, or a list of `KEY=VALUE` / `KEY`. A missing value is undefined. */
  pairs(f: Field): [string, string | undefined, Field][] {
    if (f.value.kind === 'seq') {
      return this.items(f).map((i) => {
        const s = this.str(i);
        const eq = s.indexOf('=');
        if (eq === 0) this.fail(i, `has no name before = (${JSON.stringify(s)})`);
        return eq < 0 ? [s, undefined, i] : [s.slice(0, eq), s.slice(eq + 1), i];
      });
    }
    return this.entries(f).map((e) => [e.key!, this.isNull(e) ? undefined : this.str(e), e]);
  }

  interpolate(f: Field, s: string, lookup = (k: string) => this.env[k]): string {
    return this.check(f, () => interpolate(s, lookup, (name) => this.warn(`${name} is not set; ${f.path} uses an empty string in its place`)));
  }
}

/**
 * Compose's interpolation: `$$` is a literal `$`; `$VAR`, `${VAR}` (unset:
 * empty, reported), `${VAR:-default}` / `${VAR-default}` (unset or empty /
 * unset), `${VAR:?message}` / `${VAR?message}` (required), `${VAR:+alt}` /
 * `${VAR+alt}`. Defaults may themselves interpolate.
 */
export function interpolate(s: string, lookup: (name: string) => string | undefined, onUnset: (name: string) => void): string {
  let out = '';
  let i = 0;
  while (i < s.length) {
    const c = s[i]!;
    if (c !== '$') {
      out += c;
      i++;
    } else if (s[i + 1] === '$') {
      out += '$';
      i += 2;
    } else if (s[i + 1] === '{') {
      let depth = 1;
      let end = i + 2;
      for (; end < s.length && depth > 0; end++) depth += s[end] === '{' ? 1 : s[end] === '}' ? -1 : 0;
      if (depth > 0) throw new Error(`has an unterminated \${ in ${JSON.stringify(s)}`);
      out += braced(s.slice(i + 2, end - 1), lookup, onUnset);
      i = end;
    } else {
      const name = /^[A-Za-z_][A-Za-z0-9_]*/.exec(s.slice(i + 1))?.[0];
      if (!name) throw new Error(`has an invalid $ in ${JSON.stringify(s)} (write $$ for a literal $)`);
      const v = lookup(name);
      if (v === undefined) onUnset(name);
      out += v ?? '';
      i += 1 + name.length;
    }
  }
  return out;
}

function braced(body: string, lookup: (name: string) => string | undefined, onUnset: (name: string) => void): string {
  const m = /^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([\s\S]*))?$/.exec(body);
  if (!m) throw new Error(`has an invalid interpolation \${${body}}`);
  const [, name, op, arg = ''] = m as unknown as [string, string, string | undefined, string | undefined];
  const v = lookup(name);
  const set = v !== undefined;
  const filled = set && v !== '';
  const sub = () => interpolate(arg, lookup, onUnset);
  switch (op) {
    case undefined:
      if (!set) onUnset(name);
      return v ?? '';
    case ':-': return filled ? v : sub();
    case '-': return set ? v : sub();
    case ':+': return filled ? sub() : '';
    case '+': return set ? sub() : '';
    case ':?':
    case '?':
      if (op === ':?' ? filled : set) return v!;
      throw new Error(`needs variable ${name}, which is ${set ? 'empty' : 'not set'}${arg ? `: ${sub()}` : ''}`);
    default:
      throw new Error(`has an invalid interpolation \${${body}}`);
  }
}

/** Splits a command string into words the way compose does (POSIX quotes and backslashes, no expansion). */
export function shellSplit(s: string): string[] {
  const words: string[] = [];
  let cur = '';
  let inWord = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '\\') {
      if (++i < s.length) cur += s[i];
      inWord = true;
    } else if (c === "'") {
      const end = s.indexOf("'", i + 1);
      if (end < 0) throw new Error(`has an unterminated ' in ${JSON.stringify(s)}`);
      cur += s.slice(i + 1, end);
      i = end;
      inWord = true;
    } else if (c === '"') {
      for (i++; s[i] !== '"'; i++) {
        if (i >= s.length) throw new Error(`has an unterminated " in ${JSON.stringify(s)}`);
        if (s[i] === '\\' && '"\\$`'.includes(s[i + 1] ?? 'x')) i++;
        cur += s[i];
      }
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (inWord) words.push(cur);
  return words;
}

const UNIT_MS: Record<string, number> = { h: 3600_000, m: 60_000, s: 1000, ms: 1, us: 1e-3, µs: 1e-3, ns: 1e-6 };

/** Go-style durations as compose writes them ("10s", "1m30s", "1.5s", "500ms") in whole ms; undefined if malformed. */
export function parseDurationMs(s: string): number | undefined {
  if (s === '0') return 0;
  const re = /(\d+(?:\.\d+)?|\.\d+)(h|ms|m|s|us|µs|ns)/y;
  let total = 0;
  let at = 0;
  while (at < s.length) {
    re.lastIndex = at;
    const m = re.exec(s);
    if (!m) return undefined;
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
    at = re.lastIndex;
  }
  return at === 0 ? undefined : Math.round(total);
}

/**
 * An env file: `KEY=VALUE` lines, `export KEY=VALUE`, `#` comments, quoted
 * values ('literal', "escaped and interpolated"), a bare `KEY` taking the
 * variable from `lookup`. Values are interpolated from earlier keys of the
 * file, then `lookup`. Errors name the file's line.
 */
export function parseEnvFile(text: string, lookup: (name: string) => string | undefined, onUnset: (name: string) => void): Map<string, string> {
  const out = new Map<string, string>();
  const find = (k: string) => (out.has(k) ? out.get(k) : lookup(k));
  text.split(/\r?\n/).forEach((raw, n) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*(?:=\s*(.*))?$/.exec(line);
    if (!m) throw new Error(`line ${n + 1}: expected KEY=VALUE`);
    const [, key, rest] = m as unknown as [string, string, string | undefined];
    if (rest === undefined) {
      const v = lookup(key);
      if (v !== undefined) out.set(key, v);
      return;
    }
    const q = rest[0];
    if (q === "'" || q === '"') {
      const end = q === "'" ? rest.indexOf("'", 1) : closingDoubleQuote(rest);
      if (end < 0) throw new Error(`line ${n + 1}: unterminated ${q}`);
      const after = rest.slice(end + 1).trim();
      if (after !== '' && !after.startsWith('#')) throw new Error(`line ${n + 1}: text after the closing ${q}`);
      const body = rest.slice(1, end);
      out.set(key, q === "'" ? body : interpolate(body.replace(/\\(.)/g, (_, c: string) => ({ n: '\n', t: '\t', r: '\r' })[c] ?? c), find, onUnset));
    } else {
      out.set(key, interpolate(rest.replace(/\s+#.*$/, '').trimEnd(), find, onUnset));
    }
  });
  return out;
}

function closingDoubleQuote(s: string): number {
  for (let i = 1; i < s.length; i++) {
    if (s[i] === '\\') i++;
    else if (s[i] === '"') return i;
  }
  return -1;
}

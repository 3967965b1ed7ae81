// Compose's text rules, with no YAML in sight: `${VAR}` interpolation as the
// Compose specification defines it, splitting a command string into words,
// and env files (`.env`, `--env-file`, `env_file:`). Pure; errors are plain
// Errors saying what is wrong, which the reader locates at a file and line.

/** Looks a variable up; undefined when it is not set. */
export type Lookup = (name: string) => string | undefined;

/**
 * Compose's interpolation: `$$` is a literal `$`; `$VAR`, `${VAR}` (unset:
 * empty, reported), `${VAR:-default}` / `${VAR-default}` (unset or empty /
 * unset), `${VAR:?message}` / `${VAR?message}` (required), `${VAR:+alt}` /
 * `${VAR+alt}`. Defaults may themselves interpolate.
 */
export function interpolate(s: string, lookup: Lookup, onUnset: (name: string) => void): string {
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

function braced(body: string, lookup: Lookup, onUnset: (name: string) => void): string {
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

/**
 * An env file: `KEY=VALUE` lines, `export KEY=VALUE`, `#` comments, quoted
 * values ('literal', "escaped and interpolated"), a bare `KEY` taking the
 * variable from `lookup`. Values are interpolated from earlier keys of the
 * file, then `lookup`. Errors name the file's line.
 */
export function parseEnvFile(text: string, lookup: Lookup, onUnset: (name: string) => void): Map<string, string> {
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

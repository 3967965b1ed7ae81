// A strict JSON parser for signed payloads. Signed bytes are verified first,
// then parsed here, never re-serialised. Unlike JSON.parse it refuses what
// could make two parsers disagree about a document: duplicate keys, numbers
// that are not safe integers (fractions, exponents, |n| >= 2^53, -0), lone
// surrogates, and anything beyond the size and depth limits.
import { FerryError } from './errors.js';

export interface StrictJsonLimits {
  maxBytes: number;
  maxDepth: number;
}

export const DEFAULT_LIMITS: StrictJsonLimits = { maxBytes: 1024 * 1024, maxDepth: 32 };

export type JsonValue = null | boolean | number | string | JsonValue[] | { [k: string]: JsonValue };

class Parser {
  private i = 0;
  constructor(
    private readonly s: string,
    private readonly maxDepth: number,
  ) {}

  fail(what: string): never {
    throw new FerryError('FERRY_E_PAYLOAD_INVALID', `${what} at offset ${this.i}`);
  }

  ws(): void {
    for (;;) {
      const c = this.s.charCodeAt(this.i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) this.i++;
      else return;
    }
  }

  document(): JsonValue {
    this.ws();
    const v = this.value(0);
    this.ws();
    if (this.i !== this.s.length) this.fail('trailing data');
    return v;
  }

  value(depth: number): JsonValue {
    if (depth > this.maxDepth) this.fail(`nesting deeper than ${this.maxDepth}`);
    const c = this.s[this.i];
    switch (c) {
      case '{':
        return this.object(depth);
      case '[':
        return this.array(depth);
      case '"':
        return this.string();
      case 't':
        return this.literal('true', true);
      case 'f':
        return this.literal('false', false);
      case 'n':
        return this.literal('null', null);
      default:
        if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return this.number();
        return this.fail(c === undefined ? 'unexpected end' : `unexpected ${JSON.stringify(c)}`);
    }
  }

  literal<T extends JsonValue>(word: string, v: T): T {
    if (this.s.startsWith(word, this.i)) {
      this.i += word.length;
      return v;
    }
    return this.fail('bad literal');
  }

  number(): number {
    const m = /^-?(0|[1-9][0-9]*)/.exec(this.s.slice(this.i, this.i + 32));
    if (!m) return this.fail('bad number');
    const next = this.s[this.i + m[0].length];
    if (next === '.' || next === 'e' || next === 'E') this.fail('only integers are allowed');
    if (m[0] === '-0') this.fail('-0 is not allowed');
    const n = Number(m[0]);
    if (!Number.isSafeInteger(n)) this.fail('integer beyond 2^53-1');
    this.i += m[0].length;
    return n;
  }

  string(): string {
    this.i++; // opening quote
    let out = '';
    let start = this.i;
    for (;;) {
      const c = this.s.charCodeAt(this.i);
      if (Number.isNaN(c)) this.fail('unterminated string');
      if (c === 0x22) {
        out += this.s.slice(start, this.i);
        this.i++;
        break;
      }
      if (c < 0x20) this.fail('control character in string');
      if (c >= 0xd800 && c <= 0xdfff) {
        const hi = c <= 0xdbff;
        const d = this.s.charCodeAt(this.i + 1);
        if (!hi || !(d >= 0xdc00 && d <= 0xdfff)) this.fail('lone surrogate');
        this.i += 2;
        continue;
      }
      if (c === 0x5c) {
        out += this.s.slice(start, this.i);
        out += this.escape();
        start = this.i;
        continue;
      }
      this.i++;
    }
    return out;
  }

  escape(): string {
    const e = this.s[this.i + 1];
    this.i += 2;
    switch (e) {
      case '"':
        return '"';
      case '\\':
        return '\\';
      case '/':
        return '/';
      case 'b':
        return '\b';
      case 'f':
        return '\f';
      case 'n':
        return '\n';
      case 'r':
        return '\r';
      case 't':
        return '\t';
      case 'u': {
        const cp = this.hex4();
        if (cp >= 0xdc00 && cp <= 0xdfff) this.fail('lone surrogate escape');
        if (cp >= 0xd800 && cp <= 0xdbff) {
          if (this.s[this.i] !== '\\' || this.s[this.i + 1] !== 'u') this.fail('lone surrogate escape');
          this.i += 2;
          const lo = this.hex4();
          if (lo < 0xdc00 || lo > 0xdfff) this.fail('lone surrogate escape');
          return String.fromCharCode(cp, lo);
        }
        return String.fromCharCode(cp);
      }
      default:
        return this.fail('bad escape');
    }
  }

  hex4(): number {
    const h = this.s.slice(this.i, this.i + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(h)) this.fail('bad \\u escape');
    this.i += 4;
    return parseInt(h, 16);
  }

  array(depth: number): JsonValue[] {
    this.i++;
    const out: JsonValue[] = [];
    this.ws();
    if (this.s[this.i] === ']') {
      this.i++;
      return out;
    }
    for (;;) {
      this.ws();
      out.push(this.value(depth + 1));
      this.ws();
      const c = this.s[this.i++];
      if (c === ']') return out;
      if (c !== ',') this.fail('expected , or ]');
    }
  }

  object(depth: number): { [k: string]: JsonValue } {
    this.i++;
    // A null-prototype object: "__proto__" is an ordinary key, not a setter.
    const out = Object.create(null) as { [k: string]: JsonValue };
    const seen = new Set<string>();
    this.ws();
    if (this.s[this.i] === '}') {
      this.i++;
      return out;
    }
    for (;;) {
      this.ws();
      if (this.s[this.i] !== '"') this.fail('expected a key');
      const k = this.string();
      if (seen.has(k)) this.fail(`duplicate key ${JSON.stringify(k.slice(0, 64))}`);
      seen.add(k);
      this.ws();
      if (this.s[this.i++] !== ':') this.fail('expected :');
      this.ws();
      out[k] = this.value(depth + 1);
      this.ws();
      const c = this.s[this.i++];
      if (c === '}') return out;
      if (c !== ',') this.fail('expected , or }');
    }
  }
}

/** Parses UTF-8 bytes (or a string) as strict JSON. Throws FERRY_E_PAYLOAD_INVALID. */
export function parseStrictJson(input: Uint8Array | string, limits: StrictJsonLimits = DEFAULT_LIMITS): JsonValue {
  const size = typeof input === 'string' ? Buffer.byteLength(input) : input.length;
  if (size > limits.maxBytes) throw new FerryError('FERRY_E_PAYLOAD_INVALID', `document is ${size} bytes, limit ${limits.maxBytes}`);
  let text: string;
  if (typeof input === 'string') text = input;
  else {
    try {
      text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(input);
    } catch {
      throw new FerryError('FERRY_E_PAYLOAD_INVALID', 'not valid UTF-8');
    }
  }
  return new Parser(text, limits.maxDepth).document();
}

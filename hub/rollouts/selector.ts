// The agent selector language of `ferry rollout create --to`. Pure.
//
//   selector := term ("," term)*          every term must hold (AND)
//   term     := key "=" value             tenant=bank-a, env=prod
//             | key "!=" value            region!=eu
//             | key "in" "(" values ")"   tenant in (bank-a,bank-b)
//             | key "notin" "(" values ")"
//             | key                       the label exists
//             | "!" key                   the label does not exist
//   values   := value ("," value)*
//
// `tenant` is the agent's tenant, `id` its agent id and `name` its name; any
// other key is a label (given at enrollment, changed with `ferry agent label`).
// Commas inside parentheses separate values, not terms. `*` alone selects
// every agent. Revoked agents are never selected.
import { FerryError } from '../../shared/errors.js';

export type Term =
  | { op: 'eq' | 'ne'; key: string; value: string }
  | { op: 'in' | 'notin'; key: string; values: string[] }
  | { op: 'exists' | 'absent'; key: string };

export interface Selector {
  text: string;
  terms: Term[];
}

export interface Selectable {
  id: string;
  tenant: string;
  name: string;
  labels: Record<string, string>;
}

const KEY = /^[a-z0-9]([a-z0-9._/-]{0,61}[a-z0-9])?$/;
const VALUE = /^[A-Za-z0-9._-]{1,63}$/;
const MAX_LEN = 2000;

const bad = (text: string, why: string) => new FerryError('FERRY_E_SELECTOR_INVALID', `${JSON.stringify(text)}: ${why}`);

/** Splits on commas outside parentheses; refuses unbalanced parentheses. */
function splitTerms(text: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of text) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (depth < 0 || depth > 1) throw bad(text, depth < 0 ? 'a ")" without its "("' : 'parentheses do not nest');
    if (ch === ',' && depth === 0) {
      out.push(cur.trim());
      cur = '';
    } else cur += ch;
  }
  if (depth !== 0) throw bad(text, 'a "(" is never closed');
  out.push(cur.trim());
  return out;
}

function checkKey(text: string, key: string): string {
  if (!KEY.test(key)) throw bad(text, `${JSON.stringify(key)} is not a key (lowercase letters, digits, . _ / -)`);
  return key;
}

function checkValue(text: string, key: string, value: string): string {
  if (!VALUE.test(value)) throw bad(text, `value ${JSON.stringify(value)} for ${key}: letters, digits, . _ -, 1 to 63 characters`);
  return value;
}

function parseTerm(text: string, term: string): Term {
  if (term === '') throw bad(text, 'an empty term (two commas in a row, or a comma at an end)');
  const set = /^([^\s!=()]+)\s+(in|notin)\s*\((.*)\)$/.exec(term);
  if (set) {
    const key = checkKey(text, set[1]!);
    const values = set[3]!.split(',').map((v) => v.trim());
    if (values.length === 1 && values[0] === '') throw bad(text, `${key} ${set[2]} (): the list is empty`);
    for (const v of values) checkValue(text, key, v);
    return { op: set[2] as 'in' | 'notin', key, values: [...new Set(values)] };
  }
  const cmp = /^([^\s!=()]+)\s*(!=|==|=)\s*(.*)$/.exec(term);
  if (cmp) {
    const key = checkKey(text, cmp[1]!);
    return { op: cmp[2] === '!=' ? 'ne' : 'eq', key, value: checkValue(text, key, cmp[3]!.trim()) };
  }
  const neg = /^!\s*(\S+)$/.exec(term);
  if (neg) return { op: 'absent', key: checkKey(text, neg[1]!) };
  if (/[\s()=!]/.test(term)) throw bad(text, `cannot read ${JSON.stringify(term)}; expected key=value, key!=value, key in (a,b), key notin (a,b), key or !key`);
  return { op: 'exists', key: checkKey(text, term) };
}

export function parseSelector(text: string): Selector {
  if (typeof text !== 'string' || text.trim() === '') throw bad(String(text), 'empty; use * to select every agent');
  if (text.length > MAX_LEN) throw bad(text.slice(0, 40) + '…', `longer than ${MAX_LEN} characters`);
  if (text.trim() === '*') return { text: '*', terms: [] };
  return { text: text.trim(), terms: splitTerms(text).map((t) => parseTerm(text, t)) };
}

function field(a: Selectable, key: string): string | undefined {
  switch (key) {
    case 'tenant':
      return a.tenant;
    case 'id':
      return a.id;
    case 'name':
      return a.name;
    default:
      return Object.hasOwn(a.labels, key) ? a.labels[key] : undefined;
  }
}

export function matches(sel: Selector, a: Selectable): boolean {
  return sel.terms.every((t) => {
    const v = field(a, t.key);
    switch (t.op) {
      case 'eq':
        return v === t.value;
      case 'ne':
        return v !== t.value;
      case 'in':
        return v !== undefined && t.values.includes(v);
      case 'notin':
        return v === undefined || !t.values.includes(v);
      case 'exists':
        return v !== undefined;
      case 'absent':
        return v === undefined;
      default: {
        const never: never = t;
        return never;
      }
    }
  });
}

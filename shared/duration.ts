// Durations, parsed one way everywhere: CLI flags (`--bake 10m`, `--ttl 2d`),
// compose files (`interval: 1m30s`, `stop_grace_period: 1.5s`) and the hub.
// The grammar is Go's time.ParseDuration (what compose uses) plus `d` for
// days: one or more `<number><unit>` with units ns, us/µs, ms, s, m, h, d;
// a bare `0` is zero. No sign, no spaces. Results are whole milliseconds.
import { FerryError } from './errors.js';

const UNIT_MS: Readonly<Record<string, number>> = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1000, ms: 1, us: 1e-3, µs: 1e-3, ns: 1e-6 };
const PART = /(\d+(?:\.\d+)?|\.\d+)(ns|us|µs|ms|s|m|h|d)/y;

/** `1m30s` -> 90000; undefined when `text` is not a duration. Sub-millisecond results round to the nearest ms. */
export function parseDurationMs(text: string): number | undefined {
  const s = String(text).trim();
  if (s === '0') return 0;
  let total = 0;
  let at = 0;
  while (at < s.length) {
    PART.lastIndex = at;
    const m = PART.exec(s);
    if (!m) return undefined;
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
    at = PART.lastIndex;
  }
  return at === 0 || !Number.isFinite(total) ? undefined : Math.round(total);
}

/** The same, for a flag or field named `what`: FERRY_E_VALIDATION saying what a duration looks like. */
export function durationMs(text: string, what: string): number {
  const ms = parseDurationMs(text);
  if (ms === undefined) throw new FerryError('FERRY_E_VALIDATION', `${what} ${JSON.stringify(text)}: a duration like 500ms, 30s, 10m, 1h30m or 2d`);
  return ms;
}

/** Whole seconds, for flags the hub takes in seconds (`--ttl`); a fraction of a second is refused. */
export function durationSeconds(text: string, what: string): number {
  const ms = durationMs(text, what);
  if (ms % 1000 !== 0) throw new FerryError('FERRY_E_VALIDATION', `${what} ${JSON.stringify(text)}: whole seconds only, e.g. 90s, 30m, 1h, 2d`);
  return ms / 1000;
}

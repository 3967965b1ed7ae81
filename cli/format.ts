// Output for people: aligned tables, key/value blocks, relative times and
// durations. Pure functions; the commands decide what goes to stdout.

/** Columns padded to their widest cell, two spaces apart; the last column is not padded. */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd() + '\n';
  return line(headers) + rows.map(line).join('');
}

/** `key   value` lines, keys padded to the widest. */
export function keyValues(rows: readonly (readonly [string, string])[]): string {
  const width = Math.max(0, ...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}\n`).join('');
}

const UNITS = { s: 1, m: 60, h: 3600, d: 86_400 } as const;

/** A duration flag in whole seconds (`90s`, `30m`, `1h`, `2d`): the one parser in shared/duration.ts. */
export { durationSeconds as parseDuration } from '../shared/duration.js';

/** The largest whole unit that fits: 90 -> "1m", 7200 -> "2h", 0 -> "0s". */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s >= UNITS.d) return `${Math.floor(s / UNITS.d)}d`;
  if (s >= UNITS.h) return `${Math.floor(s / UNITS.h)}h`;
  if (s >= UNITS.m) return `${Math.floor(s / UNITS.m)}m`;
  return `${s}s`;
}

/** "3m ago", "in 1h", or "-" for no time. */
export function ago(iso: string | null | undefined, now: number): string {
  if (!iso) return '-';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  const diff = (now - t) / 1000;
  if (Math.abs(diff) < 1) return 'just now';
  return diff > 0 ? `${formatDuration(diff)} ago` : `in ${formatDuration(-diff)}`;
}

/** ISO time followed by its relative form, for detail views. */
export function when(iso: string | null | undefined, now: number): string {
  return iso ? `${iso} (${ago(iso, now)})` : '-';
}

export function labelList(labels: Record<string, string> | null | undefined): string {
  const pairs = Object.entries(labels ?? {}).map(([k, v]) => `${k}=${v}`);
  return pairs.length ? pairs.join(',') : '-';
}

/** JSON for --json: indented for a terminal, one line for pipes. */
export function jsonText(value: unknown, pretty: boolean): string {
  return JSON.stringify(value, null, pretty ? 2 : undefined) + '\n';
}

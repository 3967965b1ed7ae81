// Command-line values shared by the fleet benchmarks (connections, rollout).

/** A whole-number option, >= 0. */
export function wholeNumber(args: Record<string, unknown>, name: string): number {
  const v = Number(args[name]);
  if (!Number.isSafeInteger(v) || v < 0) throw new Error(`--${name} must be a whole number`);
  return v;
}

/** `--agents 1000,10000`: the fleet sizes to run, each 1..50000. */
export function agentCounts(value: unknown): number[] {
  const counts = String(value).split(',').map(Number);
  if (counts.some((n) => !Number.isSafeInteger(n) || n < 1 || n > 50_000)) throw new Error('--agents: comma-separated counts, 1..50000');
  return counts;
}

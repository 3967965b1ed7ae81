// Wave specifications and durations for rollouts. Pure.
//
// `--waves 1,10%,50%,100%` lists cumulative targets over the selected agents:
// a count, or a percentage (rounded up, so 10% of 7 is 1). Each must reach
// further than the one before it; the last must be 100%. On a small fleet
// several waves can reach the same number of agents: those collapse, so every
// planned wave adds at least one agent. The first wave is the canary.
import { FerryError } from '../../shared/errors.js';

export type WaveSpec = { kind: 'count'; n: number } | { kind: 'percent'; p: number };

const MAX_WAVES = 20;

const bad = (text: string, why: string) => new FerryError('FERRY_E_WAVES_INVALID', `${JSON.stringify(text)}: ${why}`);

export function parseWaves(text: string): WaveSpec[] {
  if (typeof text !== 'string' || text.trim() === '') throw bad(String(text), 'empty; e.g. 1,10%,50%,100%');
  const parts = text.split(',').map((p) => p.trim());
  if (parts.length > MAX_WAVES) throw bad(text, `at most ${MAX_WAVES} waves`);
  const specs = parts.map((p): WaveSpec => {
    const pct = /^(\d{1,3}(?:\.\d{1,2})?)%$/.exec(p);
    if (pct) {
      const v = Number(pct[1]);
      if (v <= 0 || v > 100) throw bad(text, `${p}: a percentage is above 0% and at most 100%`);
      return { kind: 'percent', p: v };
    }
    if (/^\d{1,7}$/.test(p)) {
      const n = Number(p);
      if (n < 1) throw bad(text, `${p}: a wave has at least 1 agent`);
      return { kind: 'count', n };
    }
    throw bad(text, `${JSON.stringify(p)} is neither a count (5) nor a percentage (10%)`);
  });
  // Same kinds must grow; a count after a percentage (or before) is checked against the fleet in planWaves.
  for (let i = 1; i < specs.length; i++) {
    const [a, b] = [specs[i - 1]!, specs[i]!];
    if (a.kind === b.kind && (a.kind === 'count' ? a.n >= (b as { n: number }).n : a.p >= (b as { p: number }).p)) {
      throw bad(text, `wave ${i + 1} (${parts[i]}) does not reach further than wave ${i} (${parts[i - 1]}); waves are cumulative`);
    }
  }
  const last = specs[specs.length - 1]!;
  if (!(last.kind === 'percent' && last.p === 100)) throw bad(text, 'the last wave must be 100% so the rollout reaches every selected agent');
  return specs;
}

/**
 * The cumulative number of agents each wave reaches, for `total` selected
 * agents, without empty waves: `planWaves([1,10%,50%,100%], 7)` is [1, 4, 7].
 * Refuses a count that falls below the wave before it on this fleet.
 */
export function planWaves(specs: readonly WaveSpec[], total: number): number[] {
  if (total < 1) throw new FerryError('FERRY_E_SELECTOR_EMPTY');
  const out: number[] = [];
  let prev = 0;
  for (const s of specs) {
    const raw = s.kind === 'count' ? s.n : Math.ceil((s.p * total) / 100 - 1e-9);
    const n = Math.min(total, Math.max(1, raw));
    if (n < prev) throw bad(specs.map(showWave).join(','), `on ${total} agents, ${showWave(s)} reaches ${n}, fewer than the ${prev} of the wave before`);
    if (n > prev) out.push(n);
    prev = n;
  }
  return out;
}

export function showWave(s: WaveSpec): string {
  return s.kind === 'count' ? String(s.n) : `${s.p}%`;
}

// Durations are parsed by the one parser in shared/ (CLI, hub and compose import).
export { durationMs as parseDurationMs } from '../../shared/duration.js';

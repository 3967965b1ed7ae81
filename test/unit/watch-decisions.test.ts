// The pure parts of watching: a check's state machine and the autoscaler's
// decision (bounds, the bank's cap, tolerance, cooldowns).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { initial, step, type CheckMemory } from '../../agent/checks/machine.js';
import { bounds, cpuPercent, decide } from '../../agent/autoscale/decide.js';
import type { Autoscale } from '../../shared/release.js';

test('a check fails after `failures` failed probes in a row, recovers after `successes` passes, and says why', () => {
  const limits = { failures: 3, successes: 2 };
  let m: CheckMemory = initial(0);
  const seen: string[] = [];
  const probe = (ok: boolean, at: number, error = 'got 502, expected 200') => {
    const r = step(m, ok ? { ok } : { ok, error }, limits, at);
    m = r.next;
    if (r.changed) seen.push(`${at}:${r.changed.from}->${r.changed.to}${r.changed.error ? ` (${r.changed.error})` : ''}`);
  };
  probe(true, 1); // pending -> passing at the first pass
  probe(false, 2);
  probe(false, 3);
  probe(true, 4); // a pass resets the count: not failing
  probe(false, 5);
  probe(false, 6);
  probe(false, 7, 'ECONNREFUSED');
  assert.equal(m.state, 'failing');
  assert.equal(m.since, 7);
  probe(true, 8); // one pass is not enough to recover
  assert.equal(m.state, 'failing');
  assert.equal(m.error, 'ECONNREFUSED', 'the reason stays while failing');
  probe(true, 9);
  assert.equal(m.state, 'passing');
  assert.equal(m.error, undefined);
  assert.deepEqual(seen, ['1:pending->passing', '7:passing->failing (ECONNREFUSED)', '9:failing->passing']);
  // a check that never passes fails from pending
  let p = initial(0);
  for (let i = 1; i <= 3; i++) p = step(p, { ok: false, error: 'x' }, limits, i).next;
  assert.equal(p.state, 'failing');
});

const SPEC: Autoscale = { min: 1, max: 4, cpuPercent: 50, upCooldownMs: 10_000, downCooldownMs: 60_000 };

test('autoscale: proportional, inside the signed bounds and the bank cap, with tolerance and cooldowns', () => {
  const base = { spec: SPEC, cap: null, lastChangeAt: null, now: 100_000 };
  assert.deepEqual(decide({ ...base, current: 1, usage: { cpuPercent: 300, memoryPercent: 0 } }), { replicas: 4, reason: 'cpu 300% > 50% target' }, 'never past max however hot');
  assert.equal(decide({ ...base, current: 2, usage: { cpuPercent: 54, memoryPercent: 0 } }), null, 'within 10% of target: no change');
  assert.deepEqual(decide({ ...base, current: 2, usage: { cpuPercent: 80, memoryPercent: 0 } })?.replicas, 4, 'ceil(2 x 80/50) = 4');
  assert.deepEqual(decide({ ...base, current: 4, usage: { cpuPercent: 0, memoryPercent: 0 } }), { replicas: 1, reason: 'cpu 0% < 50% target' }, 'idle: down to min, never below');
  assert.equal(decide({ ...base, current: 1, usage: null }), null, 'no usage yet: keep');
  // cooldowns: up after upCooldown, down after downCooldown, since the last change
  assert.equal(decide({ ...base, current: 2, usage: { cpuPercent: 100, memoryPercent: 0 }, lastChangeAt: 95_000 }), null);
  assert.equal(decide({ ...base, current: 2, usage: { cpuPercent: 100, memoryPercent: 0 }, lastChangeAt: 90_000 })?.replicas, 4);
  assert.equal(decide({ ...base, current: 4, usage: { cpuPercent: 5, memoryPercent: 0 }, lastChangeAt: 50_000 }), null);
  assert.equal(decide({ ...base, current: 4, usage: { cpuPercent: 5, memoryPercent: 0 }, lastChangeAt: 40_000 })?.replicas, 1);
  // the bank's cap wins over the signed max, at once and without a cooldown
  assert.deepEqual(bounds(SPEC, 2), { min: 1, max: 2 });
  assert.deepEqual(decide({ ...base, cap: 2, current: 4, usage: null, lastChangeAt: 99_999 }), { replicas: 2, reason: "the bank's policy caps replicas at 2" });
  assert.equal(decide({ ...base, cap: 2, current: 2, usage: { cpuPercent: 500, memoryPercent: 0 } }), null, 'capped: hot stays at the cap');
  assert.deepEqual(bounds({ ...SPEC, min: 3 }, 2), { min: 2, max: 2 }, 'a cap below min: the bank wins');
  // memory targets
  assert.equal(decide({ ...base, spec: { min: 1, max: 3, memoryPercent: 50, upCooldownMs: 0, downCooldownMs: 0 }, current: 1, usage: { cpuPercent: 0, memoryPercent: 90 } })?.replicas, 2);
  for (let current = 1; current <= 4; current++) {
    for (const cpu of [0, 10, 45, 55, 100, 1000]) {
      const d = decide({ ...base, current, usage: { cpuPercent: cpu, memoryPercent: 0 } });
      if (d) assert.ok(d.replicas >= 1 && d.replicas <= 4, `${current} at ${cpu}%: ${d.replicas}`);
    }
  }
  assert.equal(cpuPercent({ at: 0, cpuNanos: 0 }, { at: 1000, cpuNanos: 500_000_000 }), 50);
  assert.equal(cpuPercent({ at: 0, cpuNanos: 5 }, { at: 1000, cpuNanos: 1 }), null, 'a restarted container: no share');
});

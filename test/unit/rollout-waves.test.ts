import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FerryError } from '../../shared/errors.js';
import { parseDurationMs, parseWaves, planWaves } from '../../hub/rollouts/waves.js';

const plan = (spec: string, n: number) => planWaves(parseWaves(spec), n);

test('cumulative waves with counts and percentages on 1, 7 and 100 agents', () => {
  assert.deepEqual(plan('1,10%,50%,100%', 1), [1]);
  assert.deepEqual(plan('1,10%,50%,100%', 7), [1, 4, 7]);
  assert.deepEqual(plan('1,10%,50%,100%', 100), [1, 10, 50, 100]);
  assert.deepEqual(plan('2,5,100%', 7), [2, 5, 7]);
  assert.deepEqual(plan('2,5,100%', 3), [2, 3]);
  assert.deepEqual(plan('100%', 100), [100]);
  assert.deepEqual(plan('33%,100%', 7), [3, 7]);
  assert.deepEqual(plan('1,12.5%,100%', 8), [1, 8]); // 12.5% of 8 is 1: that wave collapses into the canary
});

test('bad wave specs are refused with FERRY_E_WAVES_INVALID and say why', () => {
  const cases: [string, RegExp][] = [
    ['', /empty/],
    ['1,10%,50%', /last wave must be 100%/],
    ['10%,5%,100%', /does not reach further/],
    ['5,3,100%', /does not reach further/],
    ['0,100%', /at least 1/],
    ['0%,100%', /above 0%/],
    ['150%', /at most 100%/],
    ['1,x,100%', /neither a count/],
    ['1,,100%', /neither a count/],
    ['-1,100%', /neither a count/],
  ];
  for (const [s, re] of cases) {
    assert.throws(() => parseWaves(s), (e: unknown) => e instanceof FerryError && e.code === 'FERRY_E_WAVES_INVALID' && re.test(e.message), s);
  }
  // a count that falls below a percentage wave on this fleet
  assert.throws(() => plan('50%,3,100%', 10), (e: unknown) => e instanceof FerryError && e.code === 'FERRY_E_WAVES_INVALID' && /fewer than/.test(e.message));
  assert.throws(() => plan('100%', 0), (e: unknown) => e instanceof FerryError && e.code === 'FERRY_E_SELECTOR_EMPTY');
});

test('durations', () => {
  assert.equal(parseDurationMs('30s', '--bake'), 30_000);
  assert.equal(parseDurationMs('10m', '--bake'), 600_000);
  assert.equal(parseDurationMs('0', '--bake'), 0);
  assert.equal(parseDurationMs('250ms', '--bake'), 250);
  assert.throws(() => parseDurationMs('10 minutes', '--bake'), /--bake/);
});

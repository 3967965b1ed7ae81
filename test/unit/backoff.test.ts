import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backoffDelay } from '../../agent/connection.js';

test('full jitter: delay is uniform below min(cap, base * 2^attempt)', () => {
  assert.equal(backoffDelay(0, 1000, 60_000, () => 0), 0);
  assert.equal(backoffDelay(0, 1000, 60_000, () => 0.999999), 999);
  assert.equal(backoffDelay(3, 1000, 60_000, () => 0.5), 4000);
  assert.equal(backoffDelay(10, 1000, 60_000, () => 0.999999), 59_999);
  // very large attempt counts neither overflow nor exceed the cap
  assert.equal(backoffDelay(10_000, 1000, 60_000, () => 0.5), 30_000);
});

test('delays spread out (no thundering herd) and stay under the cap', () => {
  const samples = Array.from({ length: 2000 }, () => backoffDelay(8, 1000, 60_000));
  const max = Math.max(...samples);
  const min = Math.min(...samples);
  assert.ok(max < 60_000 && max > 40_000, `max ${max}`);
  assert.ok(min < 10_000, `min ${min}`);
  const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
  assert.ok(mean > 20_000 && mean < 40_000, `mean ${mean}`);
});

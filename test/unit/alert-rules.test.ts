// The hub's alert rules (pure) and the webhook's signature: what becomes an
// alert, when it is notified again, and what a receiver accepts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ALERT_DEFAULTS, checkAlert, checkEvent, isOffline, isStuck, type AlertState } from '../../hub/checks/rules.js';
import { alertEventName } from '../../hub/checks/alerts.js';
import { signWebhook, verifyWebhook } from '../../hub/checks/webhook.js';

const o = { flapCount: 4 };

test('a check alert fires when failing, resolves when passing again, says nothing for a check never alerted, and is not notified twice for one state', () => {
  assert.equal(checkAlert(undefined, 'pending', 0, o), null, 'pending says nothing');
  assert.equal(checkAlert(undefined, 'passing', 1, o), null, 'a passing check never alerted: nothing to say');
  const failing = checkAlert(undefined, 'failing', 2, o)!;
  assert.deepEqual(failing, { state: 'firing', flapping: false });
  assert.equal(checkEvent(failing), 'check.failing');
  assert.equal(checkAlert(failing, 'failing', 2, o), null, 'the same state again: no second notice');
  const back = checkAlert(failing, 'passing', 3, o)!;
  assert.deepEqual(back, { state: 'resolved', flapping: false });
  assert.equal(checkEvent(back), 'check.recovered');
  assert.equal(checkAlert(back, 'passing', 3, o), null);
  assert.equal(checkAlert(back, 'pending', 3, o), null, 'a check starting over says nothing');
});

test('a flapping check is one alert while it flaps, whatever state it is in, and resolves once it settles passing', () => {
  let a: AlertState | undefined;
  a = checkAlert(a, 'failing', 2, o)!;
  assert.equal(checkEvent(a), 'check.failing');
  a = checkAlert(a, 'passing', 3, o)!;
  assert.equal(checkEvent(a), 'check.recovered');
  const flap = checkAlert(a, 'failing', 4, o)!;
  assert.deepEqual(flap, { state: 'firing', flapping: true });
  assert.equal(checkEvent(flap), 'check.flapping');
  assert.equal(checkAlert(flap, 'passing', 5, o), null, 'passing while still flapping: still the one alert');
  assert.equal(checkAlert(flap, 'failing', 6, o), null);
  const settled = checkAlert(flap, 'passing', 1, o)!;
  assert.deepEqual(settled, { state: 'resolved', flapping: false });
  // settled but failing: an ordinary failure again
  assert.deepEqual(checkAlert(flap, 'failing', 1, o), { state: 'firing', flapping: false });
});

test('offline after the threshold only for a disconnected, unrevoked agent seen before; stuck after the threshold', () => {
  const off = { offlineMs: ALERT_DEFAULTS.offlineMs };
  const now = 10_000_000;
  assert.equal(isOffline({ connected: false, revoked: false, lastSeenAt: now - off.offlineMs }, now, off), true);
  assert.equal(isOffline({ connected: false, revoked: false, lastSeenAt: now - off.offlineMs + 1 }, now, off), false);
  assert.equal(isOffline({ connected: true, revoked: false, lastSeenAt: now - 10 * off.offlineMs }, now, off), false);
  assert.equal(isOffline({ connected: false, revoked: true, lastSeenAt: now - 10 * off.offlineMs }, now, off), false, 'revoked is not offline');
  assert.equal(isOffline({ connected: false, revoked: false, lastSeenAt: null }, now, off), false, 'never seen is new, not offline');
  assert.equal(isStuck({ lastMoved: now - 1800_000 }, now, { stuckMs: 1800_000 }), true);
  assert.equal(isStuck({ lastMoved: now - 1799_999 }, now, { stuckMs: 1800_000 }), false);
  assert.deepEqual(
    [['agent-offline', 'firing'], ['agent-offline', 'resolved'], ['rollout-stuck', 'firing'], ['rollout-stuck', 'resolved'], ['audit-alarm', 'firing']].map(([kind, state]) => alertEventName({ kind: kind!, state: state as 'firing', flapping: false })),
    ['agent.offline', 'agent.online', 'rollout.stuck', 'rollout.moving', 'audit.alarm'],
  );
});

test('webhook signature: HMAC-SHA256 over the timestamp and the exact body; another secret, another body, an old or malformed header are refused', () => {
  const secret = 'sixteen chars or more';
  const body = '{"event":"check.failing"}';
  const t = 1_764_597_731_000;
  const h = signWebhook(secret, t, body);
  assert.match(h, /^t=1764597731000,v1=[0-9a-f]{64}$/);
  assert.equal(verifyWebhook(secret, h, body, t + 1000), true);
  assert.equal(verifyWebhook('another secret of length', h, body, t), false);
  assert.equal(verifyWebhook(secret, h, body + ' ', t), false, 'one byte more');
  assert.equal(verifyWebhook(secret, h, body, t + 300_001), false, 'replayed later than the tolerance');
  assert.equal(verifyWebhook(secret, h.replace(`t=${t}`, `t=${t + 1}`), body, t), false, 'the timestamp is signed too');
  for (const bad of [undefined, '', 'v1=abc', `t=${t},v1=${'0'.repeat(63)}`, `t=${t};v1=${'0'.repeat(64)}`]) assert.equal(verifyWebhook(secret, bad, body, t), false, String(bad));
});

// Per-platform rate limits and digests. Pure.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LIMITS, MAX_BYTES, digest, nextSlot, trimHistory, type Pending } from '../../hub/chat/limits.js';

test('the published limits: DingTalk and WeCom 20/min, Feishu 5/s and 100/min, Slack 1/s', () => {
  assert.deepEqual(LIMITS.dingtalk, [{ max: 20, ms: 60_000 }]);
  assert.deepEqual(LIMITS.wecom, [{ max: 20, ms: 60_000 }]);
  assert.deepEqual(LIMITS.feishu, [{ max: 5, ms: 1000 }, { max: 100, ms: 60_000 }]);
  assert.deepEqual(LIMITS.slack, [{ max: 1, ms: 1000 }]);
});

test('the next slot keeps every window', () => {
  const now = 1_000_000;
  assert.equal(nextSlot('dingtalk', [], now), now);
  const twenty = Array.from({ length: 20 }, (_, i) => now - 30_000 + i * 100);
  assert.equal(nextSlot('dingtalk', twenty, now), now - 30_000 + 60_000, 'the 20th most recent send must leave the minute');
  assert.equal(nextSlot('dingtalk', twenty.slice(1), now), now);
  const fiveInASecond = [now - 900, now - 800, now - 700, now - 600, now - 500];
  assert.equal(nextSlot('feishu', fiveInASecond, now), now + 100);
  const hundredInAMinute = Array.from({ length: 100 }, (_, i) => now - 59_000 + i * 100);
  assert.equal(nextSlot('feishu', hundredInAMinute, now), now - 59_000 + 60_000);
  assert.equal(nextSlot('slack', [now - 400], now), now + 600);
  assert.equal(trimHistory('feishu', hundredInAMinute.concat([now])).length, 100);
});

const p = (id: number, text: string, alarm = false): Pending => ({ id, text, alarm, at: id });

test('one notice alone is itself; several are one digest, alarms first', () => {
  assert.deepEqual(digest('slack', [p(1, 'R-1 wave 2 started')]), { text: 'R-1 wave 2 started', ids: [1] });
  const d = digest('dingtalk', [p(1, 'wave 1 started'), p(2, 'agent x offline'), p(3, 'ALARM on y', true)]);
  assert.deepEqual(d.ids.sort(), [1, 2, 3]);
  assert.match(d.text, /^3 updates:\n• ALARM on y\n• wave 1 started\n• agent x offline$/);
});

test('a burst longer than the platform takes is summarised, but alarms are never only counted', () => {
  const many = Array.from({ length: 500 }, (_, i) => p(i + 1, `agent sim-${String(i).padStart(5, '0')} (agt_${'x'.repeat(20)}, bank-a) offline since 12:00:00 UTC`));
  const d = digest('wecom', many);
  assert.ok(Buffer.byteLength(d.text) <= MAX_BYTES.wecom, `${Buffer.byteLength(d.text)} bytes`);
  assert.equal(d.ids.length, 500, 'every notice is delivered, listed or counted');
  assert.match(d.text, /… and \d+ more/);
  const alarms = Array.from({ length: 60 }, (_, i) => p(1000 + i, `ALARM ${i} ${'y'.repeat(60)}`, true));
  const d2 = digest('wecom', [...many, ...alarms]);
  const listed = alarms.filter((a) => d2.text.includes(a.text)).map((a) => a.id);
  assert.deepEqual(d2.ids.filter((id) => id >= 1000).sort(), listed.sort(), 'an alarm taken is an alarm shown');
  assert.ok(listed.length < 60 && /more alarms follow/.test(d2.text));
  assert.ok(!d2.ids.some((id) => id < 1000), 'other notices wait while alarms are left');
});

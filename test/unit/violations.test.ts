// The agent's tolerance for a hub that sends bad frames: a sliding window of
// time (pure, the clock is an argument), and the ws library's frame errors
// as catalogue codes. The socket behaviour is tested against a hostile hub
// process in test/integration/hostile-hub.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_VIOLATIONS, VIOLATION_WINDOW_MS, ViolationWindow, frameError } from '../../agent/connection.js';

test('the limit is reached by the tenth bad frame within the window, not by ten spread over a longer time', () => {
  const w = new ViolationWindow();
  for (let i = 1; i < MAX_VIOLATIONS; i++) assert.equal(w.add(i), false, `frame ${i}`);
  assert.equal(w.add(MAX_VIOLATIONS), true);
  const slow = new ViolationWindow();
  // one bad frame every 7 s: never more than 9 in any minute
  for (let i = 0; i < 100; i++) assert.equal(slow.add(i * 7000), false, `frame ${i}`);
  assert.equal(slow.count, Math.ceil(VIOLATION_WINDOW_MS / 7000));
});

test('a clock that steps back does not keep old violations alive', () => {
  const w = new ViolationWindow(3, 1000);
  w.add(10_000);
  w.add(10_001);
  assert.equal(w.add(5_000), false, 'violations "from the future" are dropped');
  assert.equal(w.count, 1);
});

test('frames the ws library refuses become catalogue codes; other socket errors do not', () => {
  const big = frameError(Object.assign(new RangeError('Max payload size exceeded'), { code: 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' }));
  assert.equal(big?.code, 'FERRY_E_PROTOCOL_TOO_LARGE');
  assert.match(big!.message, /over the 1048576-byte limit/);
  assert.equal(frameError(Object.assign(new Error('Invalid WebSocket frame: invalid opcode 3'), { code: 'WS_ERR_INVALID_OPCODE' }))?.code, 'FERRY_E_PROTOCOL_MALFORMED');
  assert.equal(frameError(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })), null);
});

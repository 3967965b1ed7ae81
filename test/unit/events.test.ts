// The event stream's pure parts: SSE framing both ways, the query of
// GET /v1/events, stored rows as the API shows them, and the CLI's lines.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FerryError } from '../../shared/errors.js';
import { SSE_HEARTBEAT, SseDecoder, encodeSse } from '../../shared/events.js';
import { eventView, parseEventQuery } from '../../hub/rollouts/events.js';
import { eventLine } from '../../cli/rollout-commands.js';

test('encodeSse output decodes back, split at every possible point', () => {
  const text =
    'retry: 2000\n\n' +
    encodeSse({ id: 7, event: 'ready', data: { after: 7, head: 9 } }) +
    SSE_HEARTBEAT +
    encodeSse({ id: 8, event: 'transition', data: { note: 'two\nlines and ünïcode' } }) +
    encodeSse({ event: 'end', data: { error: { code: 'FERRY_E_UNAVAILABLE' } } });
  const want = [
    { lastEventId: '7', event: 'ready', data: '{"after":7,"head":9}' },
    { lastEventId: '8', event: 'transition', data: '{"note":"two\\nlines and ünïcode"}' },
    { lastEventId: '8', event: 'end', data: '{"error":{"code":"FERRY_E_UNAVAILABLE"}}' },
  ];
  for (let cut = 0; cut <= text.length; cut++) {
    const d = new SseDecoder();
    const got = [...d.push(text.slice(0, cut)), ...d.push(text.slice(cut))];
    assert.deepEqual(got, want, `split at ${cut}`);
    assert.equal(d.retry, 2000);
    assert.equal(d.lastEventId, '8');
  }
});

test('the decoder follows the standard: CR, CRLF, comments, multi-line data, unknown fields, empty events', () => {
  const d = new SseDecoder();
  assert.deepEqual(d.push('data:a\r\ndata: b\r'), []);
  assert.deepEqual(d.push('\n\r'), [{ lastEventId: '', event: 'message', data: 'a\nb' }]);
  assert.deepEqual(d.push(': comment\nfoo: bar\nid: 3\n\n'), [], 'an event with no data is not dispatched');
  assert.equal(d.lastEventId, '3', 'but its id counts');
  assert.deepEqual(d.push('event: x\ndata\n\n'), [{ lastEventId: '3', event: 'x', data: '' }]);
  assert.deepEqual(d.push('id: a\0b\ndata: y\n\n'), [{ lastEventId: '3', event: 'message', data: 'y' }], 'an id with NUL is ignored');
  assert.deepEqual(d.push('retry: soon\n\n'), []);
  assert.equal(d.retry, undefined);
  assert.throws(() => new SseDecoder(10).push('data: 0123456789'), /longer than 10/);
});

const q = (s: string, lastEventId?: string) => parseEventQuery(new URLSearchParams(s), lastEventId);

test('GET /v1/events query: rollout, kinds and where to resume', () => {
  assert.deepEqual(q(''), { rollout: null, kinds: null, after: null });
  assert.deepEqual(q('rollout=R-17&kind=target,directive,target&since=42'), { rollout: 17, kinds: ['target', 'directive'], after: 42 });
  assert.deepEqual(q('since=0'), { rollout: null, kinds: null, after: 0 });
  assert.equal(q('since=5', '9').after, 9, 'Last-Event-ID wins over since');
  assert.equal(q('since=5', '').after, 5, 'an empty Last-Event-ID is none');
  assert.equal(parseEventQuery(new URLSearchParams(), ['4', '5']).after, 4);
});

test('bad queries are FERRY_E_EVENT_FILTER naming what is wrong', () => {
  const cases: [string, string | undefined, RegExp][] = [
    ['rollout=17', undefined, /rollout "17": ids look like R-17/],
    ['rollout=R-', undefined, /ids look like R-17/],
    ['kind=bogus', undefined, /kind "bogus": one or more of rollout, wave, target, directive/],
    ['kind=', undefined, /kind ""/],
    ['since=-1', undefined, /since "-1": an event id/],
    ['since=1.5', undefined, /since/],
    ['since=9999999999999999', undefined, /since/],
    ['', 'x', /Last-Event-ID "x"/],
    ['colour=blue', undefined, /unknown parameter "colour"/],
    ['since=1&since=2', undefined, /since given more than once/],
  ];
  for (const [query, header, re] of cases) {
    assert.throws(
      () => q(query, header),
      (e: unknown) => e instanceof FerryError && e.code === 'FERRY_E_EVENT_FILTER' && e.status === 400 && re.test(e.message),
      `${query} ${header ?? ''}`,
    );
  }
});

const row = { id: 5, at: Date.UTC(2026, 0, 2, 3, 4, 5), rollout: 17, from_state: null, to_state: null, reason: null, wave: null, agent_id: null, tenant: null, seq: null, version: null, code: null };

test('stored rows as the API shows them, and as `ferry events` prints them', () => {
  const cases = [
    [{ ...row, kind: 'rollout' as const, to_state: 'running', reason: 'created' }, { kind: 'rollout', from: null, to: 'running', reason: 'created' }, 'created (running)'],
    [{ ...row, kind: 'rollout' as const, from_state: 'running', to_state: 'paused', reason: '1 failed' }, { kind: 'rollout', from: 'running', to: 'paused', reason: '1 failed' }, 'running -> paused (1 failed)'],
    [{ ...row, kind: 'wave' as const, wave: 2 }, { kind: 'wave', wave: 2 }, 'wave 2 started'],
    [
      { ...row, kind: 'target' as const, agent_id: 'agt_1', tenant: 'bank-a', from_state: 'issued', to_state: 'failed', code: 'FERRY_E_UNHEALTHY' },
      { kind: 'target', agentId: 'agt_1', tenant: 'bank-a', from: 'issued', to: 'failed', code: 'FERRY_E_UNHEALTHY' },
      'agt_1 (bank-a) issued -> failed [FERRY_E_UNHEALTHY]',
    ],
    [
      { ...row, kind: 'directive' as const, agent_id: 'agt_1', tenant: 'bank-a', from_state: 'waiting', to_state: 'issued', seq: 4, version: '2.0.0' },
      { kind: 'directive', agentId: 'agt_1', tenant: 'bank-a', from: 'waiting', to: 'issued', seq: 4, version: '2.0.0' },
      'agt_1 (bank-a) waiting -> issued: directive 4 for 2.0.0',
    ],
  ] as const;
  for (const [r, fields, line] of cases) {
    const v = eventView(r);
    assert.deepEqual(v, { id: 5, rollout: 'R-17', at: '2026-01-02T03:04:05.000Z', ...fields });
    assert.equal(eventLine(v), `2026-01-02T03:04:05.000Z  #5  R-17  ${line}`);
  }
});

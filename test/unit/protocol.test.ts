import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FerryError } from '../../shared/errors.js';
import { MAX_PAYLOAD, decodeAgentMessage, decodeHubMessage, encode, type Hello } from '../../shared/protocol.js';

const hello: Hello = {
  type: 'hello',
  protocol: 1,
  agentVersion: '0.1.0',
  host: { hostname: 'h1', platform: 'linux', release: '6.1', arch: 'x64', cpus: 2, memoryBytes: 1024 },
  engine: { error: { code: 'FERRY_E_ENGINE_UNREACHABLE', message: 'no docker' } },
};

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof FerryError, String(err));
    return err.code;
  }
  assert.fail('expected an error');
}

test('a valid hello decodes to the same value', () => {
  assert.deepEqual(decodeAgentMessage(encode(hello)), hello);
  assert.deepEqual(decodeAgentMessage(Buffer.from(encode(hello))), hello);
});

test('malformed, unknown and invalid frames get stable codes', () => {
  assert.equal(code(() => decodeAgentMessage('{"type":')), 'FERRY_E_PROTOCOL_MALFORMED');
  assert.equal(code(() => decodeAgentMessage(null)), 'FERRY_E_PROTOCOL_MALFORMED');
  assert.equal(code(() => decodeAgentMessage('[1,2]')), 'FERRY_E_PROTOCOL_INVALID');
  assert.equal(code(() => decodeAgentMessage('"hello"')), 'FERRY_E_PROTOCOL_INVALID');
  assert.equal(code(() => decodeAgentMessage('{"kind":"hello"}')), 'FERRY_E_PROTOCOL_INVALID');
  assert.equal(code(() => decodeAgentMessage('{"type":"launch-missiles"}')), 'FERRY_E_PROTOCOL_UNKNOWN_TYPE');
  assert.equal(code(() => decodeAgentMessage('{"type":"__proto__"}')), 'FERRY_E_PROTOCOL_UNKNOWN_TYPE');
  assert.equal(code(() => decodeAgentMessage('{"type":"toString"}')), 'FERRY_E_PROTOCOL_UNKNOWN_TYPE');
  // hub-only messages are not accepted from agents
  assert.equal(code(() => decodeAgentMessage('{"type":"welcome","agentId":"a","tenant":"t","heartbeatMs":1,"serverTime":1}')), 'FERRY_E_PROTOCOL_UNKNOWN_TYPE');
});

test('unknown fields, wrong types and non-integers are refused, naming the field', () => {
  const extra = { ...hello, admin: true };
  assert.equal(code(() => decodeAgentMessage(JSON.stringify(extra))), 'FERRY_E_PROTOCOL_INVALID');
  const nested = { ...hello, host: { ...hello.host, root: true } };
  assert.equal(code(() => decodeAgentMessage(JSON.stringify(nested))), 'FERRY_E_PROTOCOL_INVALID');
  const float = { ...hello, host: { ...hello.host, cpus: 1.5 } };
  try {
    decodeAgentMessage(JSON.stringify(float));
    assert.fail('accepted a float');
  } catch (err) {
    assert.match((err as Error).message, /host\.cpus/);
  }
  const big = { ...hello, host: { ...hello.host, memoryBytes: 2 ** 53 } };
  assert.equal(code(() => decodeAgentMessage(JSON.stringify(big))), 'FERRY_E_PROTOCOL_INVALID');
  const long = { ...hello, agentVersion: 'x'.repeat(65) };
  assert.equal(code(() => decodeAgentMessage(JSON.stringify(long))), 'FERRY_E_PROTOCOL_INVALID');
});

test('frames over the payload limit are refused before parsing', () => {
  const huge = JSON.stringify({ type: 'error', code: 'X', message: 'y'.repeat(MAX_PAYLOAD) });
  assert.equal(code(() => decodeAgentMessage(huge)), 'FERRY_E_PROTOCOL_TOO_LARGE');
});

test('hub messages decode on the agent side', () => {
  const w = { type: 'welcome', agentId: 'agt_1', tenant: 'bank-a', heartbeatMs: 15000, serverTime: 1 } as const;
  assert.deepEqual(decodeHubMessage(JSON.stringify(w)), w);
  assert.equal(code(() => decodeHubMessage(JSON.stringify({ ...w, heartbeatMs: -1 }))), 'FERRY_E_PROTOCOL_INVALID');
  assert.equal(code(() => decodeHubMessage(encode(hello))), 'FERRY_E_PROTOCOL_UNKNOWN_TYPE');
});

test('a status may carry the agent\'s alarms; an alarm is checked field by field like the rest', () => {
  const status = {
    type: 'status' as const,
    releases: [],
    services: [],
    alarms: [{ at: '2026-11-02T10:00:00.000Z', code: 'FERRY_E_AUDIT_INCONSISTENT', message: 'history was rewritten', kind: 'checkpoint' as const }],
  };
  assert.deepEqual(decodeAgentMessage(encode(status)), status);
  const { alarms: _a, ...without } = status;
  assert.deepEqual(decodeAgentMessage(encode(without)), without, 'alarms are optional');
  assert.equal(code(() => decodeAgentMessage(JSON.stringify({ ...status, alarms: [{ ...status.alarms[0], severity: 'high' }] }))), 'FERRY_E_PROTOCOL_INVALID');
  assert.equal(code(() => decodeAgentMessage(JSON.stringify({ ...status, alarms: Array.from({ length: 21 }, () => status.alarms[0]) }))), 'FERRY_E_PROTOCOL_INVALID');
});

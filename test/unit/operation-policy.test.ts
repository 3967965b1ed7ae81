// The bank's rules for remote operations (agent/operations/policy.ts) and the
// operators' holds the planner plans with (agent/reconcile/holds.ts). Pure.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePolicy } from '../../agent/policy.js';
import { checkOperation, type OperationLimits } from '../../agent/operations/policy.js';
import { heldRelease, liveHolds, stoppedServices, withoutStopped, type Hold } from '../../agent/reconcile/holds.js';
import { desiredStack } from '../../agent/reconcile/model.js';
import { FerryError } from '../../shared/errors.js';
import type { Operation } from '../../shared/operation.js';
import { releaseDoc, service } from '../helpers/signing.js';

const limits = (yaml: string): OperationLimits => parsePolicy(yaml, '/etc/ferry/policy.yaml').operations;
const op = (kind: Operation['kind'], target = 'payments/api', args: Operation['args'] = {}) => {
  const [stack, svc] = target.split('/');
  return { kind, stack, service: svc, args };
};
const refusal = (fn: () => unknown): { code: string; message: string } => {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof FerryError, String(err));
    return { code: err.code, message: err.message };
  }
  assert.fail('expected a refusal');
};

test('kinds: denied everywhere, outside the allow list, by a stack or a service entry; the rest allowed', () => {
  const l = limits('operations:\n  deny: [exec]\n  allow: [restart, stop, logs, exec, stats]\n  services:\n    payments/api: { deny: [stop] }\n    payments: { allow: [restart, stop, logs] }\n');
  assert.equal(checkOperation(l, op('restart'), true, 'p.yaml'), null);
  assert.equal(checkOperation(l, op('logs', 'payments/web'), true, 'p.yaml'), null);
  assert.match(refusal(() => checkOperation(l, op('exec'), true, 'p.yaml')).message, /exec on payments\/api: denied by operations.deny \(p.yaml\)/);
  assert.match(refusal(() => checkOperation(l, op('scale'), true, 'p.yaml')).message, /not in operations.allow \(restart, stop, logs, exec, stats\)/);
  assert.match(refusal(() => checkOperation(l, op('stop'), true, null)).message, /stop on payments\/api: denied by operations.services.payments\/api.deny \(the local policy\)/);
  assert.equal(checkOperation(l, op('stop', 'payments/web'), true, null), null, 'the service entry is for api only');
  const stats = refusal(() => checkOperation(l, op('stats', 'payments/web'), true, null));
  assert.equal(stats.code, 'FERRY_E_POLICY_OPERATION');
  assert.match(stats.message, /not in operations.services.payments.allow \(restart, stop, logs\)/);
  assert.equal(checkOperation(l, op('stats', 'ledger/db'), true, null), null, 'other stacks: only the global lists');
});

test('maintenance windows: changing kinds wait for one, reads do not; operations.anytime says otherwise', () => {
  const none = limits('');
  for (const k of ['restart', 'stop', 'start', 'scale', 'reconnect', 'exec'] as const) {
    assert.equal(refusal(() => checkOperation(none, op(k, 'payments/api', k === 'exec' ? { command: 'x' } : {}), false, null)).code, 'FERRY_E_POLICY_WINDOW', k);
  }
  for (const k of ['logs', 'stats', 'networks'] as const) assert.equal(checkOperation(none, op(k), false, null), null, k);
  const anytime = limits('operations:\n  anytime: [restart]\n');
  assert.equal(checkOperation(anytime, op('restart'), false, null), null);
  assert.match(refusal(() => checkOperation(anytime, op('logs'), false, null)).message, /operations.anytime lists what runs outside them: restart/);
});

test('exec: only listed commands, arguments by whole-argument pattern, a shell only where allowed; the nearest entry wins', () => {
  const l = limits(
    "operations:\n  exec:\n    payments/api:\n      commands:\n        tail-log: { argv: [tail, -n], args: ['[0-9]{1,4}', '/var/log/app/[a-z.]+'], timeout: 30s }\n    payments:\n      commands:\n        status: { argv: [/bin/status] }\n      shell: true\n",
  );
  assert.deepEqual(checkOperation(l, op('exec', 'payments/api', { command: 'tail-log', argv: ['20', '/var/log/app/api.log'] }), true, null), { argv: ['tail', '-n', '20', '/var/log/app/api.log'], timeoutMs: 30_000 });
  assert.deepEqual(checkOperation(l, op('exec', 'payments/api', { command: 'tail-log' }), true, null), { argv: ['tail', '-n'], timeoutMs: 30_000 }, 'arguments are optional');
  assert.deepEqual(checkOperation(l, op('exec', 'payments/api', { command: 'status' }), true, null), { argv: ['/bin/status'], timeoutMs: 60_000 }, 'the stack entry applies to its services');
  assert.deepEqual(checkOperation(l, op('exec', 'payments/web', { shell: 'ls' }), true, null), { argv: ['/bin/sh', '-c', 'ls'], timeoutMs: 60_000 });
  const bad: [Operation['args'], RegExp][] = [
    [{ command: 'tail-log', argv: ['20', '/etc/shadow'] }, /tail-log: argument 2 "\/etc\/shadow" does not match \/var\/log\/app\/\[a-z.\]\+/],
    [{ command: 'tail-log', argv: ['20; rm -rf /'] }, /argument 1 .* does not match \[0-9\]\{1,4\}/],
    [{ command: 'tail-log', argv: ['1', '/var/log/app/a', 'x'] }, /tail-log takes at most 2 argument\(s\)/],
    [{ command: 'rm' }, /command "rm" is not listed \(operations.exec lists: tail-log, status\)/],
  ];
  for (const [args, why] of bad) {
    const r = refusal(() => checkOperation(l, op('exec', 'payments/api', args), true, null));
    assert.equal(r.code, 'FERRY_E_POLICY_EXEC');
    assert.match(r.message, why);
  }
  assert.match(refusal(() => checkOperation(l, op('exec', 'ledger/db', { command: 'status' }), true, null)).message, /operations.exec lists no commands for this service/);
  const noShell = limits("operations:\n  exec:\n    payments/api:\n      commands:\n        status: { argv: [/bin/status] }\n");
  assert.match(refusal(() => checkOperation(noShell, op('exec', 'payments/api', { shell: 'id' }), true, null)).message, /a shell is not allowed here \(operations.exec.payments\/api.shell is not true\)/);
});

test('a policy with a bad pattern, timeout or kind is refused when read, naming the key', () => {
  const bad: [string, RegExp][] = [
    ["operations:\n  exec:\n    payments/api:\n      commands:\n        x: { argv: [a], args: ['('] }\n", /operations.exec.payments\/api.commands.x.args\[0\]: not a regular expression/],
    ["operations:\n  exec:\n    payments/api:\n      commands:\n        x: { argv: [a], timeout: 2h }\n", /operations.exec.payments\/api.commands.x.timeout: between 1s and 1h/],
    ["operations:\n  exec:\n    payments/api:\n      commands:\n        x: { argv: [a], timeout: soon }\n", /timeout: a duration like 30s or 5m/],
  ];
  for (const [yaml, why] of bad) {
    const r = refusal(() => limits(yaml));
    assert.equal(r.code, 'FERRY_E_POLICY_INVALID');
    assert.match(r.message, why);
  }
  assert.equal(refusal(() => limits('operations:\n  deny: [reboot]\n')).code, 'FERRY_E_POLICY_INVALID');
  assert.equal(refusal(() => limits('operations:\n  services:\n    payments/api: { deny: [deploy] }\n')).code, 'FERRY_E_POLICY_INVALID', 'per service: operation kinds only');
});

test('holds: a stop removes the service from what is planned, a scale changes its count, both only for the release they were made under', () => {
  const rel = releaseDoc('payments', '1.0.0', {}, { api: service('img@sha256:' + 'a'.repeat(64), { replicas: 2 }), web: service('img@sha256:' + 'b'.repeat(64)) });
  const hold = (service: string, h: Partial<Hold>): Hold => ({ stack: 'payments', service, state: 'stopped', release: '1.0.0', digest: 'sha256:one', operation: 'op_x', since: '2026-12-01T00:00:00.000Z', ...h }) as Hold;
  const holds = { 'payments/web': hold('web', {}), 'payments/api': hold('api', { state: 'scaled', replicas: 4 }) };

  const scaled = heldRelease(rel, 'sha256:one', holds);
  assert.equal(scaled.services.api!.replicas, 4);
  assert.equal(scaled.services.web!.replicas, 1);
  assert.equal(rel.services.api!.replicas, 2, 'the release itself is not changed');
  assert.equal(heldRelease(rel, 'sha256:two', holds), rel, 'another release: as it is');

  const stopped = stoppedServices(holds);
  assert.deepEqual(stopped, ['payments/web']);
  const planned = withoutStopped(desiredStack('agt_0123456789abcdef', scaled), stopped);
  assert.deepEqual(planned.containers.map((c) => `${c.service}#${c.replica}`).sort(), ['api#0', 'api#1', 'api#2', 'api#3']);

  assert.deepEqual(Object.keys(liveHolds(holds, [{ stack: 'payments', digest: 'sha256:one' }])).sort(), ['payments/api', 'payments/web']);
  assert.deepEqual(liveHolds(holds, [{ stack: 'payments', digest: 'sha256:two' }]), {}, 'a new release ends them');
  assert.deepEqual(liveHolds(holds, []), {}, 'so does the stack going away');
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ERRORS, FerryError, asFerryError, isErrorCode } from '../../shared/errors.js';
import { EXIT, exitCodeFor } from '../../shared/exit.js';

test('every catalogue key is a FERRY_E_ code with a message and an actionable hint', () => {
  for (const [code, spec] of Object.entries(ERRORS)) {
    assert.match(code, /^FERRY_E_[A-Z0-9_]+$/);
    assert.ok(spec.message.length > 5, code);
    assert.match(spec.hint, /\.$/, `${code} hint should be a sentence`);
    assert.ok(spec.status >= 400 && spec.status < 600, code);
    assert.equal(new FerryError(code as keyof typeof ERRORS).code, code);
  }
});

test('FerryError carries detail in its message and serialises to the wire shape', () => {
  const e = new FerryError('FERRY_E_NOT_FOUND', 'agent agt_1');
  assert.equal(e.message, 'No such resource: agent agt_1');
  assert.deepEqual(e.toJSON(), { code: 'FERRY_E_NOT_FOUND', message: 'No such resource: agent agt_1', hint: ERRORS.FERRY_E_NOT_FOUND.hint });
  assert.equal(asFerryError(new Error('boom')).code, 'FERRY_E_INTERNAL');
  assert.equal(asFerryError(e), e);
  assert.ok(isErrorCode('FERRY_E_DB'));
  assert.ok(!isErrorCode('FERRY_E_NOPE'));
  assert.ok(!isErrorCode('toString'));
});

test('exit codes follow the documented table', () => {
  assert.equal(exitCodeFor(new FerryError('FERRY_E_AUTH_INVALID')), EXIT.auth);
  assert.equal(exitCodeFor(new FerryError('FERRY_E_FORBIDDEN')), EXIT.auth);
  assert.equal(exitCodeFor(new FerryError('FERRY_E_NOT_FOUND')), EXIT.notFound);
  assert.equal(exitCodeFor(new FerryError('FERRY_E_CONFLICT')), EXIT.conflict);
  assert.equal(exitCodeFor(new FerryError('FERRY_E_HUB_UNREACHABLE')), EXIT.unreachable);
  assert.equal(exitCodeFor(new FerryError('FERRY_E_VALIDATION')), EXIT.invalid);
  assert.equal(exitCodeFor(new FerryError('FERRY_E_AGENT_REVOKED')), EXIT.revoked);
  assert.equal(exitCodeFor(new FerryError('FERRY_E_INTERNAL')), EXIT.failure);
});

import { test } from 'node:test';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
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

test('exit codes follow the documented table (README.md, "Exit codes")', () => {
  // The numbers as README.md documents them, not the module's own constants.
  const documented: [string, number][] = [
    ['FERRY_E_INTERNAL', 1],
    ['FERRY_E_DB', 1],
    ['FERRY_E_AUTH_INVALID', 3],
    ['FERRY_E_FORBIDDEN', 3],
    ['FERRY_E_TOKEN_USED', 3],
    ['FERRY_E_NOT_FOUND', 4],
    ['FERRY_E_CONFLICT', 5],
    ['FERRY_E_AUDIT_INCONSISTENT', 5],
    ['FERRY_E_HUB_UNREACHABLE', 6],
    ['FERRY_E_ENGINE_UNREACHABLE', 6],
    ['FERRY_E_HUB_TLS', 6],
    ['FERRY_E_VALIDATION', 7],
    ['FERRY_E_CONFIG_INVALID', 7],
    ['FERRY_E_AGENT_REVOKED', 78],
  ];
  for (const [code, exit] of documented) assert.equal(exitCodeFor(new FerryError(code as keyof typeof ERRORS)), exit, code);
  assert.deepEqual({ ...EXIT }, { ok: 0, failure: 1, usage: 2, auth: 3, notFound: 4, conflict: 5, unreachable: 6, invalid: 7, revoked: 78 });
});

test('README.md documents every exit code the binaries use', () => {
  const readme = readFileSync(fileURLToPath(new URL('../../../README.md', import.meta.url)), 'utf8');
  const table = readme.slice(readme.indexOf('### Exit codes'), readme.indexOf('### Errors'));
  const rows = [...table.matchAll(/^\| (\d+) \|/gm)].map((m) => Number(m[1]));
  assert.deepEqual(rows.sort((a, b) => a - b), Object.values(EXIT).sort((a, b) => a - b));
});

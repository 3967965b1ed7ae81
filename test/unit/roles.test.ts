// A token's role against the grants of the person minting it (shared/roles.ts
// roleWithin): a vendor-wide role covers each tenant, and a name found in both
// tables (operator, viewer) is read from the table of what is held.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { roleWithin } from '../../shared/roles.js';

test('a vendor-wide role covers a narrower role on one tenant', () => {
  assert.equal(roleWithin('viewer', 'admin', 'tenant', 'vendor'), true);
  assert.equal(roleWithin('operator', 'operator', 'tenant', 'vendor'), true);
  assert.equal(roleWithin('viewer', 'viewer', 'tenant', 'vendor'), true);
  // admin is no tenant role: read as one, it covers nothing (the defect a vendor admin hit minting a bank-b viewer token)
  assert.equal(roleWithin('viewer', 'admin', 'tenant'), false);
});

test('nothing wider than what is held', () => {
  assert.equal(roleWithin('tenant-admin', 'viewer', 'tenant', 'vendor'), false);
  assert.equal(roleWithin('operator', 'viewer', 'tenant', 'vendor'), false);
  assert.equal(roleWithin('operator', 'viewer', 'tenant'), false);
  assert.equal(roleWithin('admin', 'operator', 'vendor'), false);
  assert.equal(roleWithin('viewer', 'operator', 'tenant'), true);
});

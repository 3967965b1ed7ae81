// The install root's housekeeping (agent/upgrade/install.ts), on a temp dir:
// which version directories an upgrade may remove.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SELF_INSTALLED, pruneVersions } from '../../agent/upgrade/install.js';

test('pruneVersions removes old self-installed versions only: not the kept ones, not the package\'s, not the current link', (t) => {
  const root = mkdtempSync(join(tmpdir(), 'ferry-prune-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  for (const v of ['0.1.0', '0.2.0', '0.3.0', '0.4.0']) {
    mkdirSync(join(root, v, 'dist'), { recursive: true });
    if (v !== '0.1.0') writeFileSync(join(root, v, SELF_INSTALLED), `${v}\n`); // 0.1.0 came from the package
  }
  symlinkSync('0.4.0', join(root, 'current'));
  writeFileSync(join(root, 'launch.json'), '{}');
  assert.deepEqual(pruneVersions(root, ['0.4.0', '0.3.0']), ['0.2.0']);
  assert.deepEqual(readdirSync(root).sort(), ['0.1.0', '0.3.0', '0.4.0', 'current', 'launch.json']);
  assert.equal(readlinkSync(join(root, 'current')), '0.4.0');
});

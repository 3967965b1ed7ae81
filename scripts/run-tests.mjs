#!/usr/bin/env node
// Runs the compiled test suite with Node's test runner.
//   node scripts/run-tests.mjs            unit, then integration
//   node scripts/run-tests.mjs unit       only test/unit
//   node scripts/run-tests.mjs integration [name-filter]
// Unit tests run in parallel; integration tests (real Docker, sqlite files,
// processes, sockets) run one file at a time so they do not fight over the
// engine and ports.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const tiers = process.argv[2] ? [process.argv[2]] : ['unit', 'integration'];
const filter = process.argv[3];

function find(dir) {
  let out = [];
  let entries = [];
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const e of entries.sort()) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out = out.concat(find(p));
    else if (e.endsWith('.test.js') && (!filter || p.includes(filter))) out.push(p);
  }
  return out;
}

const files = tiers.flatMap((t) => find(join(root, 'dist', 'test', t)).map((f) => ({ tier: t, f })));
if (files.length === 0) {
  console.error(`no test files found for ${tiers.join(', ')}${filter ? ` matching ${filter}` : ''}; did the build run?`);
  process.exit(1);
}
const unit = files.filter((x) => x.tier === 'unit').map((x) => x.f);
const integration = files.filter((x) => x.tier !== 'unit').map((x) => x.f);
const args = ['--test', '--test-reporter=spec', '--test-timeout=300000'];
// One run, so the runner prints one summary ("# pass N / # fail N") at the end.
const concurrency = integration.length > 0 ? 1 : Math.max(2, unit.length);
const r = spawnSync(process.execPath, [...args, `--test-concurrency=${concurrency}`, ...unit, ...integration], { stdio: 'inherit', cwd: root });
process.exit(r.status ?? 1);

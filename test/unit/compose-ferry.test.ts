// x-ferry in a compose file: checks, verification jobs and autoscaling are
// imported into the release (and pass its schema); mistakes are refused with
// the file, line and key path, like every compose key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ComposeRefused, importCompose } from '../../cli/compose.js';
import { canonicalJson, parseRelease, type Release } from '../../shared/release.js';
import { tempDir } from '../helpers/tmp.js';

const IMG = 'registry.example/shop/web@sha256:' + 'a'.repeat(64);

function load(t: Parameters<typeof tempDir>[0], text: string, profiles: string[] = []) {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'compose.yaml'), text);
  return importCompose({ file: join(dir, 'compose.yaml'), env: {}, profiles });
}

function problems(t: Parameters<typeof tempDir>[0], text: string): string[] {
  try {
    load(t, text);
  } catch (err) {
    assert.ok(err instanceof ComposeRefused, String(err));
    return err.problems.map((p) => p.replace(/^.*compose\.yaml:/, 'compose.yaml:'));
  }
  return assert.fail('expected a refusal');
}

const FILE = `
name: shop
x-other-tool: { ignored: true }
x-ferry:
  checks:
    web-ok:
      http: { url: "http://web:8080/health", status: [200, 204], body: "^ok" }
      interval: 10s
      timeout: 2s
      failures: 2
      successes: 2
    db-port:
      tcp: db:5432
    db-ready:
      command: { service: db, run: pg_isready -U shop }
      interval: 30s
services:
  web:
    image: registry.example/shop/web:1
    mem_limit: 256m
    x-ferry:
      autoscale: { min: 2, max: 6, cpu: 70%, cooldown: 1m, down_cooldown: 5m }
  db:
    image: registry.example/shop/db:1
  itest:
    image: registry.example/shop/itest:1
    profiles: [test]
    command: ["sh", "/run-tests.sh"]
    x-ferry:
      verify: { timeout: 3m }
`;

test('x-ferry checks, autoscale and verify import into what the release schema accepts', (t) => {
  const got = load(t, FILE);
  assert.deepEqual(got.checks, {
    'web-ok': { http: { url: 'http://web:8080/health', method: 'GET', status: [200, 204], body: '^ok' }, intervalMs: 10_000, timeoutMs: 2000, failures: 2, successes: 2 },
    'db-port': { tcp: { address: 'db:5432' }, intervalMs: 10_000, timeoutMs: 2000, failures: 3, successes: 1 },
    'db-ready': { command: { service: 'db', run: ['pg_isready', '-U', 'shop'] }, intervalMs: 30_000, timeoutMs: 2000, failures: 3, successes: 1 },
  });
  assert.deepEqual(got.services.web!.autoscale, { min: 2, max: 6, cpuPercent: 70, upCooldownMs: 60_000, downCooldownMs: 300_000 });
  assert.equal(got.services.web!.replicas, 2, 'starts at min when the file says nothing');
  assert.deepEqual(got.services.itest!.verify, { timeoutMs: 180_000 });
  assert.deepEqual(got.skipped, [], 'a verification job is imported whatever its profiles');
  // what `ferry release create` signs parses on the agent
  const services = Object.fromEntries(Object.entries(got.services).map(([n, { imageRef: _ref, ...s }]) => [n, { ...s, image: IMG }]));
  const rel: Release = { _type: 'release', stack: 'shop', version: '1.0.0', createdAt: 1, services, networks: got.networks, volumes: got.volumes, checks: got.checks };
  assert.deepEqual(parseRelease(canonicalJson(rel)).checks, got.checks);
});

test('x-ferry mistakes are refused with file, line and key path', (t) => {
  assert.deepEqual(problems(t, `
x-ferry:
  checks:
    bad:
      htp: http://web/
services:
  web: { image: x }
`), [
    'compose.yaml:5: x-ferry.checks.bad.htp is not a compose key (did you mean http or tcp?)',
    'compose.yaml:4: x-ferry.checks.bad needs exactly one of http:, tcp: or command: (got none)',
  ]);
  assert.deepEqual(problems(t, `
x-ferry:
  checks:
    slow: { tcp: "web:80", interval: 5s, timeout: 10s }
    cmd: { command: { service: nope, run: "true" } }
    re: { http: { url: "http://web/", body: "(" } }
services:
  web:
    image: x
    x-ferry:
      autoscale: { min: 3, max: 2, cpu: 50% }
      verify: { timeout: 10s }
      scale: 3
`).map((p) => p.replace(/: Invalid regular expression.*/, ': Invalid regular expression')), [
    'compose.yaml:13: services.web.x-ferry.scale is not a compose key here (README.md lists the keys Ferry reads)',
    'compose.yaml:11: services.web.x-ferry.autoscale.max must be at least min (3)',
    'compose.yaml:4: x-ferry.checks.slow.timeout must be from 100ms to the interval (5000 ms)',
    'compose.yaml:5: x-ferry.checks.cmd.command.service names nope, which is not a service of this file',
    'compose.yaml:6: x-ferry.checks.re.http.body is not a regular expression: Invalid regular expression',
  ]);
  const mem = problems(t, `
services:
  web:
    image: x
    x-ferry: { autoscale: { min: 1, max: 2, memory: 80% } }
`);
  assert.equal(mem.length, 1);
  assert.match(mem[0]!, /^compose\.yaml:\d+: x-ferry is not valid: web: an autoscale memory target is a percentage of the memory limit; give the service mem_limit$/);
});

// What the long-running agent process loads. Its idle RSS is a target of
// issue 4 (bench/reconcile, part d); these guard the structural savings
// behind it: no undici in the agent (Node's http carries its two plain
// requests), dockerode's ssh2 and gRPC deferred until something uses them, and
// the agent's node flags (agent/node-flags.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const dist = fileURLToPath(new URL('../../', import.meta.url));

function loadedPackages(modules: string[]): string[] {
  const script = `
    import { createRequire } from 'node:module';
    for (const m of ${JSON.stringify(modules)}) await import(m);
    const cache = Object.keys(createRequire(import.meta.url).cache);
    const pkgs = new Set(cache.map((f) => /node_modules\\/((?:@[^/]+\\/)?[^/]+)/.exec(f)?.[1]).filter(Boolean));
    process.stdout.write(JSON.stringify([...pkgs].sort()));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: dist, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as string[];
}

test('the agent run path loads dockerode but neither undici, ssh2 nor gRPC', () => {
  const pkgs = loadedPackages([`${dist}agent/runtime.js`, `${dist}agent/engine/docker.js`, `${dist}agent/proxy.js`, `${dist}agent/connection.js`]);
  assert.ok(pkgs.includes('dockerode') && pkgs.includes('docker-modem'), `dockerode is the engine client: ${pkgs.join(' ')}`);
  for (const heavy of ['undici', 'ssh2', '@grpc/grpc-js', '@grpc/proto-loader', 'protobufjs']) assert.ok(!pkgs.includes(heavy), `${heavy} loaded: ${pkgs.join(' ')}`);
});

test('the deferred dockerode modules are the real ones when called', async () => {
  const { DEFERRED } = await import('../../agent/engine/dockerode-deferred.js');
  assert.equal(DEFERRED.length, 2, `both resolve in this dockerode: ${DEFERRED.join(', ')}`);
  // docker-modem's ssh transport: calling the stand-in loads ssh2 and returns its http.Agent.
  const { createRequire } = await import('node:module');
  const req = createRequire(import.meta.url);
  const sshFile = DEFERRED.find((f) => f.endsWith('ssh.js'))!;
  const ssh = req(sshFile) as (opt: object) => { createConnection?: unknown };
  const agent = ssh({ host: '127.0.0.1', port: 1 });
  assert.equal(typeof agent.createConnection, 'function');
  assert.ok(Object.keys(req.cache).some((f) => f.includes('/node_modules/ssh2/')), 'ssh2 loaded on first use');
});

test('the agent runs under its unit\'s node flags (no JIT, no WebAssembly) and says nothing about them', async () => {
  const { AGENT_NODE_FLAGS } = await import('../../agent/node-flags.js');
  const r = spawnSync(process.execPath, [...AGENT_NODE_FLAGS, `${dist}agent/main.js`, '--version'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');
  const probe = spawnSync(process.execPath, [...AGENT_NODE_FLAGS, '-e', 'process.stdout.write(typeof WebAssembly)'], { encoding: 'utf8' });
  assert.equal(probe.stdout, 'undefined');
});

test('no test hook ships in the agent: nothing under dist/agent reads a FERRY_TEST_ variable', async () => {
  const { readdirSync, readFileSync } = await import('node:fs');
  const files = (readdirSync(`${dist}agent`, { recursive: true, encoding: 'utf8' }) as string[]).filter((f) => f.endsWith('.js'));
  assert.ok(files.length > 20, `${files.length} agent modules`);
  const hooked = files.filter((f) => /FERRY_TEST_/.test(readFileSync(`${dist}agent/${f}`, 'utf8')));
  assert.deepEqual(hooked, [], 'fault injection is test code loaded with --import (test/helpers/crash-hook.ts), never part of the agent');
});

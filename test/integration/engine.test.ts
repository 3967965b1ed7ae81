// The agent's engine adapter against the real Docker engine, and the agent
// binary end to end: enrolled with a real hub, it reports the engine's facts
// over its one outbound connection and listens on nothing.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { test } from 'node:test';
import { DockerEngine } from '../../agent/engine/docker.js';
import { FerryError } from '../../shared/errors.js';
import { buildTestImage, dockerOk, requireDocker, serverVersion, testLabel } from '../helpers/docker.js';
import { startHub } from '../helpers/hub.js';
import { daemon, run } from '../helpers/proc.js';
import { tempDir, waitFor } from '../helpers/tmp.js';

const IMAGE = 'ferry-test/busybox';

async function containerCount(): Promise<number> {
  return (await dockerOk(['ps', '-aq'])).split('\n').filter(Boolean).length;
}

test('info() reports the real engine, and its container count follows docker create / rm', async (t) => {
  if (!(await requireDocker(t))) return;
  const engine = new DockerEngine();
  const img = await buildTestImage(IMAGE, 'v1');
  const label = testLabel(t);

  const facts = await engine.info();
  assert.equal(facts.version, await serverVersion());
  assert.match(facts.apiVersion, /^\d+\.\d+$/);
  assert.ok(facts.os.length > 0 && facts.arch.length > 0 && facts.kernel.length > 0 && facts.storageDriver.length > 0, JSON.stringify(facts));
  for (const n of [facts.containers, facts.containersRunning, facts.images]) assert.ok(Number.isInteger(n) && n >= 0, JSON.stringify(facts));
  assert.ok(facts.images >= 1, 'the test image counts');
  assert.ok(facts.containersRunning <= facts.containers);

  // The engine is shared with whatever else runs on the host: measure the
  // step only when `docker ps -a` saw nobody else create or remove anything.
  let measured = false;
  for (let attempt = 0; attempt < 5 && !measured; attempt++) {
    const psBefore = await containerCount();
    const before = (await engine.info()).containers;
    const id = await dockerOk(['create', '--label', label, img.image]);
    const during = (await engine.info()).containers;
    await dockerOk(['rm', '-f', id]);
    const after = (await engine.info()).containers;
    const psAfter = await containerCount();
    if (psBefore !== psAfter || before !== psBefore) continue;
    assert.equal(during, before + 1, 'one more container after docker create');
    assert.equal(after, before, 'back to the start after docker rm');
    measured = true;
  }
  assert.ok(measured, 'other processes kept changing the container count; could not measure');
});

test('info() against a socket nobody serves fails with FERRY_E_ENGINE_UNREACHABLE', async () => {
  const engine = new DockerEngine({ socketPath: '/nonexistent.sock', timeoutMs: 2_000 });
  await assert.rejects(engine.info(), (err: unknown) => {
    assert.ok(err instanceof FerryError, `expected a FerryError, got ${String(err)}`);
    assert.equal(err.code, 'FERRY_E_ENGINE_UNREACHABLE');
    assert.match(err.message, /ENOENT/);
    return true;
  });
});

test('an enrolled agent reports the engine to the hub, and listens on nothing', async (t) => {
  if (!(await requireDocker(t))) return;
  const hub = await startHub(t);
  const tenant = await hub.api('POST', '/v1/tenants', { name: 'bank-a' });
  assert.equal(tenant.status, 201, JSON.stringify(tenant.body));
  const tok = await hub.api<{ token: string }>('POST', '/v1/tenants/bank-a/enrollment-tokens', {});
  assert.equal(tok.status, 201, JSON.stringify(tok.body));

  const stateDir = tempDir(t, 'ferry-agent-');
  const enrolled = await run('agent', ['enroll', '--hub', hub.url, '--token', tok.body.token, '--state-dir', stateDir, '--name', 'host-1', '--json']);
  assert.equal(enrolled.code, 0, enrolled.stderr);
  const { agentId } = JSON.parse(enrolled.stdout) as { agentId: string };

  const agent = daemon(t, 'agent', ['run', '--state-dir', stateDir]);
  const view = await waitFor(
    'the agent to connect and report its engine',
    async () => {
      const r = await hub.api<{ status: string; facts: { engine?: { version?: string } } | null }>('GET', `/v1/agents/${agentId}`);
      return r.body.status === 'connected' && r.body.facts?.engine?.version ? r.body : undefined;
    },
    20_000,
    100,
  ).catch((err: Error) => {
    throw new Error(`${err.message}\nagent output:\n${agent.output().slice(-4000)}`);
  });
  assert.equal(view.facts?.engine?.version, await serverVersion());

  // The agent dials out; it must not hold a single listening socket.
  const pid = agent.child.pid!;
  assert.deepEqual(listeningSockets(pid), [], 'listening sockets held by the agent (from /proc)');
  const ss = ssListeners();
  if (ss !== undefined) {
    assert.deepEqual(ss.filter((l) => l.includes(`pid=${pid},`)), [], 'listening sockets held by the agent (from ss -ltnupH)');
  }
  // Positive control: the same checks do see the hub listening in this process.
  assert.ok(listeningSockets(process.pid).some((s) => s.startsWith('tcp')), 'the /proc check sees the hub listening');
  if (ss !== undefined) assert.ok(ss.some((l) => l.includes(`pid=${process.pid},`)), 'ss sees the hub listening');

  assert.equal(await agent.stop('SIGTERM'), 0, agent.output().slice(-4000));
});

/**
 * Listening sockets owned by a process, from /proc: the socket inodes among
 * its file descriptors, matched against the kernel's socket tables. TCP counts
 * in state LISTEN (0A); UDP when bound (any UDP socket in the table may
 * receive); unix sockets with __SO_ACCEPTCON.
 */
function listeningSockets(pid: number): string[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // fd closed while we looked
    }
  }
  const found: string[] = [];
  for (const proto of ['tcp', 'tcp6', 'udp', 'udp6']) {
    const rows = readFileSync(`/proc/${pid}/net/${proto}`, 'utf8').trim().split('\n').slice(1);
    for (const row of rows) {
      const f = row.trim().split(/\s+/);
      const [local, state, inode] = [f[1]!, f[3]!, f[9]!];
      const listening = proto.startsWith('tcp') ? state === '0A' : true;
      if (listening && inodes.has(inode)) found.push(`${proto} ${local}`);
    }
  }
  for (const row of readFileSync(`/proc/${pid}/net/unix`, 'utf8').trim().split('\n').slice(1)) {
    const f = row.trim().split(/\s+/);
    if ((parseInt(f[3]!, 16) & 0x10000) !== 0 && inodes.has(f[6]!)) found.push(`unix ${f[7] ?? '(unnamed)'}`);
  }
  return found;
}

/** `ss -ltnupH` lines (listening TCP/UDP with owners), or undefined without ss. */
function ssListeners(): string[] | undefined {
  const r = spawnSync('ss', ['-ltnupH'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return undefined;
  return r.stdout.split('\n').filter(Boolean);
}

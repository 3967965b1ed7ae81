// What a container may be is the bank's decision, on the real engine: a
// release signed by the vendor's release managers that asks for the Docker
// socket, a host path outside the allowed prefix, a host port outside the
// range, user 0, a capability not listed, or host networking is refused
// before any container exists, naming service, key and policy line; allowed
// by the policy, the same release runs with exactly those settings.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Service } from '../../shared/release.js';
import { buildTestImage, dockerOk, requireRegistry } from '../helpers/docker.js';
import { freePort } from '../helpers/faults.js';
import { fleet } from '../helpers/fleet.js';
import { run } from '../helpers/proc.js';
import { service } from '../helpers/signing.js';
import { tempDir, waitFor } from '../helpers/tmp.js';

async function owned(agentId: string): Promise<string[]> {
  return (await dockerOk(['ps', '-aq', '--no-trunc', '--filter', `label=ferry.agent=${agentId}`])).split('\n').filter(Boolean);
}

test('each container limit is refused on the real engine before any container exists; allowed by the policy, the release runs with those settings', async (t) => {
  if (!(await requireRegistry(t))) return;
  const hostDir = tempDir(t, 'ferry-policy-host-');
  writeFileSync(join(hostDir, 'hello'), 'from the host\n');
  const port = await freePort();
  const strict = [
    'containers:',
    `  bindMounts: [${hostDir}]`,
    `  ports: ["${port + 1}-${port + 9}"]`,
    '  root: false',
    '  capabilities: [NET_BIND_SERVICE]',
    '',
  ].join('\n');
  const f = await fleet(t, { policy: strict, bakeMs: 300 });
  const a = f.agents[0]!;
  const img = (await buildTestImage('ferry-test/policy-web', 'v1', { push: true, cmd: ['httpd', '-f', '-p', '8080', '-h', '/www'], files: { '/www/index.html': 'policy\n' } })).ref!;
  const base: Partial<Service> = { user: '1000', stopGracePeriodMs: 1000 };
  const P = a.policyFile.replace(/[.]/g, '\\.');
  const cases: [string, Partial<Service>, RegExp][] = [
    ['the Docker socket', { volumes: [{ type: 'bind', source: '/var/run/docker.sock', target: '/var/run/docker.sock', readOnly: false }] }, new RegExp(`guarded/web: volumes\\[0\\] bind-mounts /var/run/docker\\.sock \\(the Docker socket\\); not allowed by ${P}:2 \\(containers\\.bindMounts\\)`)],
    ['a host path outside the prefix', { volumes: [{ type: 'bind', source: '/etc', target: '/host-etc', readOnly: true }] }, new RegExp(`guarded/web: volumes\\[0\\] bind-mounts /etc read-only; not allowed by ${P}:2`)],
    ['a host port outside the range', { ports: [{ target: 8080, published: port, protocol: 'tcp', hostIp: '127.0.0.1' }] }, new RegExp(`guarded/web: ports\\[0\\] publishes host port ${port}/tcp; not allowed by ${P}:3 \\(containers\\.ports\\)`)],
    ['user 0', { user: '0' }, new RegExp(`guarded/web: user runs as 0 \\(uid 0\\); not allowed by ${P}:4 \\(containers\\.root\\)`)],
    ['a capability not listed', { capAdd: ['NET_ADMIN'] }, new RegExp(`guarded/web: capAdd adds capability NET_ADMIN; not allowed by ${P}:5 \\(containers\\.capabilities\\)`)],
    ['host networking', { networkMode: 'host' }, new RegExp(`guarded/web: networkMode uses network mode host; not allowed by ${P}, which does not set containers\\.networkModes \\(default: none and bridge only\\)`)],
  ];
  let n = 0;
  for (const [what, extra, re] of cases) {
    const version = `1.0.${n++}`;
    await f.publish('guarded', version, { web: service(img, { ...base, ...extra }) });
    const d = await f.deploy(a, 'guarded', version);
    assert.deepEqual({ status: d.status, code: d.code }, { status: 'refused', code: 'FERRY_E_POLICY_CONTAINER' }, what);
    assert.match(d.message ?? '', re, what);
    assert.deepEqual(await owned(a.id), [], `${what}: no container was created`);
  }
  // the operator sees the refusal with its code; the bank sees it in status, with what its policy allows
  const env = { FERRY_HUB: f.th.url, FERRY_TOKEN: f.th.adminToken, XDG_CONFIG_HOME: tempDir(t) };
  const cli = await run('ferry', ['deploy', 'guarded@1.0.4', '--agent', a.id, '--wait', '20'], { env });
  assert.equal(cli.code, 3, cli.stdout + cli.stderr);
  assert.match(cli.stdout + cli.stderr, /FERRY_E_POLICY_CONTAINER/);
  const st = await run('agent', ['status', '--state-dir', a.stateDir, '--config', a.configFile]);
  assert.match(st.stdout, /refused\s+\S+ directive seq \d+ FERRY_E_POLICY_CONTAINER/);
  assert.match(st.stdout, new RegExp(`containers bind mounts ${hostDir.replace(/[.]/g, '\\.')}/… \\(${P}:2\\)`));
  assert.match(st.stdout, /^\s+added capabilities NET_BIND_SERVICE \(.*:5\)$/m);

  // one release needing all of it, reviewed before it arrives
  const all = {
    web: service(img, {
      user: '0',
      stopGracePeriodMs: 1000,
      capAdd: ['NET_ADMIN'],
      ports: [{ target: 8080, published: port, protocol: 'tcp', hostIp: '127.0.0.1' }],
      volumes: [
        { type: 'bind', source: '/var/run/docker.sock', target: '/var/run/docker.sock', readOnly: false },
        { type: 'bind', source: hostDir, target: '/host', readOnly: true },
      ],
    }),
    edge: service(img, { ...base, networkMode: 'host', command: ['sleep', '3600'] }),
  };
  await f.publish('guarded', '2.0.0', all);
  const file = join(tempDir(t), 'release.json');
  writeFileSync(file, (await run('ferry', ['release', 'show', 'guarded@2.0.0', '--json'], { env })).stdout);
  const review = await run('agent', ['policy', 'check', '--release', file, '--policy', a.policyFile, '--state-dir', a.stateDir]);
  assert.equal(review.code, 3, review.stderr);
  assert.match(review.stdout, /^signatures\s+1 release signature\(s\) verify against trust root v1 \(rm\)$/m);
  for (const need of ['edge\\s+networkMode uses network mode host', 'web\\s+user runs as 0', 'web\\s+capAdd adds capability NET_ADMIN', 'web\\s+volumes\\[0\\] bind-mounts /var/run/docker\\.sock', `web\\s+ports\\[0\\] publishes host port ${port}/tcp`]) {
    assert.match(review.stdout, new RegExp(`^  NO\\s+${need}`, 'm'), need);
  }
  assert.match(review.stdout, new RegExp(`^  ok\\s+web\\s+volumes\\[1\\] bind-mounts ${hostDir.replace(/[.]/g, '\\.')} read-only$`, 'm'));
  assert.match(review.stdout, /^verdict\s+refused: 5 of \d+ needs exceed what this host allows$/m);

  // the bank allows it: the same checks pass, and the agent (restarted to read its policy) runs it so
  writeFileSync(a.policyFile, ['containers:', `  bindMounts: [${hostDir}, /var/run/docker.sock]`, `  ports: ["${port}-${port + 9}"]`, '  root: true', '  capabilities: [NET_BIND_SERVICE, NET_ADMIN]', '  networkModes: [host]', ''].join('\n'));
  const ok = await run('agent', ['policy', 'check', '--release', file, '--policy', a.policyFile]);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /^verdict\s+allowed: this agent would accept it$/m);
  await a.daemon.stop();
  a.start();
  await waitFor('the agent reconnected', async () => (await f.th.api('GET', `/v1/agents/${a.id}`)).body.status === 'connected', 15_000);
  assert.equal((await f.deploy(a, 'guarded', '2.0.0')).status, 'accepted');
  await f.waitRelease(a, 'guarded', '2.0.0', 'applied');
  const inspect = async (svc: string) => {
    const id = (await dockerOk(['ps', '-q', '--no-trunc', '--filter', `label=ferry.agent=${a.id}`, '--filter', `label=ferry.service=${svc}`])).split('\n')[0]!;
    return { id, c: JSON.parse(await dockerOk(['inspect', id]))[0] as any };
  };
  const web = await inspect('web');
  assert.equal(web.c.Config.User, '0');
  assert.deepEqual(web.c.HostConfig.CapAdd, ['NET_ADMIN']);
  assert.deepEqual(web.c.HostConfig.PortBindings['8080/tcp'], [{ HostIp: '127.0.0.1', HostPort: String(port) }]);
  assert.equal(await dockerOk(['exec', web.id, 'cat', '/host/hello']), 'from the host');
  assert.match(await dockerOk(['exec', web.id, 'ls', '-l', '/var/run/docker.sock']), /^s/, 'the Docker socket is in the container');
  assert.equal(await dockerOk(['exec', web.id, 'id', '-u']), '0');
  assert.equal(await (await fetch(`http://127.0.0.1:${port}/`)).text(), 'policy\n');
  const edge = await inspect('edge');
  assert.equal(edge.c.HostConfig.NetworkMode, 'host');
  assert.deepEqual(Object.keys(edge.c.NetworkSettings.Networks), ['host']);
});

// What a container may be, decided by the institution's policy: each limit
// refuses on its own, names service, key and policy line, and the same
// release passes once the policy allows it. Pure (the real engine's side is
// test/integration/policy-engine.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FerryError } from '../../shared/errors.js';
import type { Release, Service } from '../../shared/release.js';
import { NO_POLICY, checkRelease, parsePolicy, type Policy } from '../../agent/policy.js';
import { containerNeeds, hostPath, isRootUser } from '../../agent/policy-containers.js';
import { releaseDoc, service } from '../helpers/signing.js';

const IMG = '127.0.0.1:5000/ferry/web@sha256:' + 'c'.repeat(64);
const rel = (extra: Partial<Service>): Release => releaseDoc('payments', '1.0.0', {}, { web: service(IMG, { user: '1000', ...extra }) });
const check = (p: Policy, r: Release) => checkRelease(p, r, () => 0);

function refused(p: Policy, r: Release): string {
  try {
    check(p, r);
  } catch (err) {
    assert.ok(err instanceof FerryError && err.code === 'FERRY_E_POLICY_CONTAINER', String(err));
    return err.message;
  }
  assert.fail('allowed; expected FERRY_E_POLICY_CONTAINER');
}

const POLICY = `registries: ["127.0.0.1:5000"]
containers:
  bindMounts:
    - /srv/payments
    - /var/run/docker.sock
  ports: [443, "8000-8999"]
  root: false
  capabilities: [NET_BIND_SERVICE, CAP_NET_ADMIN]
  networkModes: [host]
  hostNamespaces: [pid]
  devices: [/dev/ttyUSB0]
  sysctls: [net.core.*, kernel.msgmax]
`;

test('a release that needs nothing special passes the strict defaults; the defaults refuse what widens a container', () => {
  check(NO_POLICY, rel({}));
  check(NO_POLICY, rel({ ports: [{ target: 80, published: 8088, protocol: 'tcp' }], capDrop: ['ALL'], networkMode: 'none' }));
  assert.match(refused(NO_POLICY, rel({ volumes: [{ type: 'bind', source: '/srv/data', target: '/data', readOnly: true }] })), /payments\/web: volumes\[0\] bind-mounts \/srv\/data read-only; not allowed by no policy file, so containers\.bindMounts takes its default \(no bind mounts\)/);
  assert.match(refused(NO_POLICY, rel({ capAdd: ['NET_ADMIN'] })), /capAdd adds capability NET_ADMIN.*default \(no added capability\)/);
  assert.match(refused(NO_POLICY, rel({ networkMode: 'host' })), /networkMode uses network mode host/);
  assert.match(refused(NO_POLICY, rel({ privileged: true })), /privileged runs privileged/);
  assert.match(refused(NO_POLICY, rel({ pid: 'host' })), /pid shares the host's pid namespace/);
  assert.match(refused(NO_POLICY, rel({ devices: [{ host: '/dev/kvm', container: '/dev/kvm', permissions: 'rw' }] })), /devices\[0\] gets host device \/dev\/kvm/);
  assert.match(refused(NO_POLICY, rel({ sysctls: { 'net.ipv4.ip_forward': '1' } })), /sysctls\.net\.ipv4\.ip_forward/);
  check(NO_POLICY, rel({ ipc: 'private' }));
});

test('each limit of a policy refuses on its own, naming service, key and the policy line', () => {
  const p = parsePolicy(POLICY, '/etc/ferry/policy.yaml');
  check(p, rel({
    volumes: [{ type: 'bind', source: '/srv/payments/in', target: '/in', readOnly: false }, { type: 'bind', source: '/run/docker.sock', target: '/var/run/docker.sock', readOnly: false }],
    ports: [{ target: 8443, published: 443, protocol: 'tcp' }, { target: 80, published: 8080, protocol: 'tcp', hostIp: '127.0.0.1' }],
    capAdd: ['NET_ADMIN', 'NET_BIND_SERVICE'],
    networkMode: 'host',
    pid: 'host',
    devices: [{ host: '/dev/ttyUSB0', container: '/dev/ttyS0', permissions: 'rw' }],
    sysctls: { 'net.core.somaxconn': '1024', 'kernel.msgmax': '65536' },
  }));
  const cases: [Partial<Service>, RegExp][] = [
    [{ volumes: [{ type: 'bind', source: '/srv/paymentsX', target: '/x', readOnly: false }] }, /web: volumes\[0\] bind-mounts \/srv\/paymentsX; not allowed by \/etc\/ferry\/policy\.yaml:3 \(containers\.bindMounts\)/],
    [{ volumes: [{ type: 'bind', source: '/srv/payments/../../etc', target: '/x', readOnly: false }] }, /bind-mounts \/srv\/payments\/\.\.\/\.\.\/etc; not allowed by .*:3/],
    [{ volumes: [{ type: 'bind', source: '/var/run', target: '/x', readOnly: false }] }, /bind-mounts \/var\/run \(holds the Docker socket \/run\/docker\.sock\)/],
    [{ ports: [{ target: 80, published: 80, protocol: 'tcp' }] }, /web: ports\[0\] publishes host port 80\/tcp; not allowed by \/etc\/ferry\/policy\.yaml:6 \(containers\.ports\)/],
    [{ ports: [{ target: 80, published: 9000, protocol: 'udp' }] }, /ports\[0\] publishes host port 9000\/udp/],
    [{ user: '0' }, /web: user runs as 0 \(uid 0\); not allowed by \/etc\/ferry\/policy\.yaml:7 \(containers\.root\)/],
    [{ user: 'root:root' }, /user runs as root:root \(uid 0\)/],
    [{ user: undefined }, /user leaves the user to the image \(often root\): set `user`; not allowed by .*:7/],
    [{ capAdd: ['SYS_ADMIN'] }, /capAdd adds capability SYS_ADMIN; not allowed by \/etc\/ferry\/policy\.yaml:8 \(containers\.capabilities\)/],
    [{ capAdd: ['ALL'] }, /adds capability ALL/],
    [{ networkMode: 'bridge' }, /uses network mode bridge; not allowed by .*:9 \(containers\.networkModes\)/],
    [{ ipc: 'host' }, /ipc shares the host's ipc namespace; not allowed by .*:10 \(containers\.hostNamespaces\)/],
    [{ devices: [{ host: '/dev/ttyUSB1', container: '/dev/ttyS0', permissions: 'r' }] }, /devices\[0\] gets host device \/dev\/ttyUSB1 \(r\); not allowed by .*:11/],
    [{ sysctls: { 'kernel.shmmax': '1' } }, /sysctls\.kernel\.shmmax sets sysctl kernel\.shmmax; not allowed by .*:12/],
    [{ privileged: true }, /privileged runs privileged .*; not allowed by \/etc\/ferry\/policy\.yaml, which does not set containers\.privileged \(default: not privileged\)/],
  ];
  for (const [extra, re] of cases) assert.match(refused(p, rel(extra)), re, JSON.stringify(extra));
  // several at once: the first is named, the count of the others is given
  assert.match(refused(p, rel({ user: '0', capAdd: ['SYS_ADMIN'] })), /user runs as 0 .* \(and 1 more: `ferry-agent policy check --release FILE` lists them\)/);
});

test('the Docker socket only by its own name: no prefix, not even /, lets it in', () => {
  const everything = parsePolicy('containers:\n  bindMounts: ["/"]\n', 'p.yaml');
  check(everything, rel({ volumes: [{ type: 'bind', source: '/etc/ssl/certs', target: '/certs', readOnly: true }] }));
  for (const source of ['/var/run/docker.sock', '/run/docker.sock', '/run', '/', '/run/containerd/containerd.sock']) {
    assert.match(refused(everything, rel({ volumes: [{ type: 'bind', source, target: '/x', readOnly: false }] })), /Docker socket/, source);
  }
  const named = parsePolicy('containers:\n  bindMounts: ["/", "/run/docker.sock"]\n', 'p.yaml');
  check(named, rel({ volumes: [{ type: 'bind', source: '/var/run/docker.sock', target: '/var/run/docker.sock', readOnly: false }] }));
});

test('what a release needs, listed for review; helpers read users and paths as the host does', () => {
  const needs = containerNeeds(rel({ user: '0', ports: [{ target: 80, published: 8080, protocol: 'tcp' }], capAdd: ['NET_ADMIN'] }));
  assert.deepEqual(needs.map((n) => `${n.service} ${n.key} ${n.limit}`), ['web ports[0] ports', 'web ports[0].hostIp hostIps', 'web user root', 'web capAdd capabilities']);
  assert.deepEqual([isRootUser('0'), isRootUser('00:1'), isRootUser('root'), isRootUser('1000'), isRootUser('app'), isRootUser(undefined)], [true, true, true, false, false, null]);
  assert.deepEqual(['/var/run/docker.sock', '/srv//a/', '/srv/a/../b', '/'].map(hostPath), ['/run/docker.sock', '/srv/a', '/srv/b', '/']);
});

test('a containers section that does not make sense is refused when the policy loads, by name', () => {
  const bad = (text: string, re: RegExp) => assert.throws(() => parsePolicy(text, 'p.yaml'), (e: unknown) => e instanceof FerryError && e.code === 'FERRY_E_POLICY_INVALID' && re.test(e.message));
  bad('containers:\n  ports: ["9000-8000"]\n', /containers\.ports: 9000-8000 is not a port or a growing range/);
  bad('containers:\n  bindMounts: ["srv"]\n', /containers\.bindMounts\.0: an absolute path/);
  bad('containers:\n  capabilities: [net_admin]\n', /containers\.capabilities\.0: a capability/);
  bad('containers:\n  networkModes: [container]\n', /containers\.networkModes\.0/);
  bad('containers:\n  wheels: true\n', /containers: Unrecognized key/);
  bad('containers:\n  root: false\n  root: true\n', /p\.yaml: Map keys must be unique/);
});

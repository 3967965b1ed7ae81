// Equivalence on the real engine: one compose file using the keys Ferry
// imports, deployed by Debian's docker-compose (1.29) and by Ferry (import,
// pin, sign, deploy through the hub to a real agent process), and every
// container's `docker inspect` compared field by field. The
// privilege-widening keys (cap_add, privileged, …) are left out: the agent's
// policy limits decide those (see the agent-hardening tests).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { importCompose } from '../../cli/compose.js';
import { pinImages } from '../../cli/registry.js';
import { buildTestImage, docker, dockerOk, requireDocker } from '../helpers/docker.js';
import { fleet } from '../helpers/fleet.js';
import { run } from '../helpers/proc.js';
import { tempDir } from '../helpers/tmp.js';

const COMPOSE = `
services:
  web:
    image: \${IMAGE}
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    hostname: web1
    domainname: shop.internal
    user: "65534"
    working_dir: /www
    environment:
      MODE: prod
      EMPTY: ""
    env_file: [web.env]
    expose: ["9000", "53/udp"]
    ports:
      - "127.0.0.1:\${WEB_PORT}:8080"
      - "8081"
      - "127.0.0.1::8082"
      - {target: 8083, protocol: udp}
    networks: [front, back]
    healthcheck:
      test: ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8080/"]
      interval: 1s
      timeout: 2s
      retries: 5
      start_period: 1s
    restart: unless-stopped
    stop_signal: SIGINT
    stop_grace_period: 3s
    labels: {com.example.tier: front}
    read_only: true
    tmpfs: ["/run", "/tmp:size=1m"]
    security_opt: [no-new-privileges:true]
    init: true
    shm_size: 32m
    extra_hosts: ["legacy.internal:10.9.8.7"]
    dns: [10.0.0.53]
    dns_search: [shop.internal]
    dns_opt: ["ndots:2"]
    ulimits:
      nofile: {soft: 1024, hard: 2048}
      nproc: 512
    logging:
      driver: json-file
      options: {max-size: 1m, max-file: "2"}
    deploy:
      resources:
        limits: {cpus: "0.5", memory: 64m}
        reservations: {memory: 16m}
    pids_limit: 64
    secrets: [db_password]
    volumes:
      - static:/www/static:ro
      - /var/cache/web
      - {type: volume, source: data, target: /data}
      - {type: bind, source: ./conf, target: /conf, read_only: true}
  worker:
    image: \${IMAGE}
    entrypoint: ["/bin/sh", "-c"]
    command: ["trap 'exit 0' TERM; while :; do sleep 1; done"]
    deploy: {replicas: 2}
    depends_on: {web: {condition: service_healthy}}
    stdin_open: true
    tty: true
    mem_limit: 32m
    cpus: 0.25
    healthcheck: {disable: true}
    networks: [back]
  one:
    image: \${IMAGE}
    container_name: \${ONE_NAME}
    restart: on-failure
    healthcheck: {test: [NONE]}
networks:
  front: {driver: bridge, labels: {com.example.net: front}}
  back: {internal: true}
volumes:
  static: {driver: local, labels: {com.example.backup: nightly}}
  data: {}
secrets:
  db_password: {file: ./db_password.txt}
`;

/** Labels the tools put on for themselves, and the test's own cleanup label. */
const OWN_LABEL = /^(com\.docker\.compose\.|ferry\.)/;

interface Inspect {
  Id: string;
  Name: string;
  Config: Record<string, any>;
  HostConfig: Record<string, any>;
  Mounts: { Type: string; Name?: string; Source: string; Destination: string; RW: boolean }[];
  NetworkSettings: { Networks: Record<string, { Aliases: string[] | null }> };
}

/** What a person compares between the two deployments, with the tools' own names taken out. */
function comparable(c: Inspect, names: { network: (n: string) => string; volume: (n: string) => string; container?: string }) {
  const h = c.HostConfig;
  const short = c.Id.slice(0, 12);
  return {
    image: c.Config.Image,
    command: c.Config.Cmd,
    entrypoint: c.Config.Entrypoint,
    env: [...(c.Config.Env ?? [])].sort(),
    user: c.Config.User,
    workingDir: c.Config.WorkingDir,
    hostname: c.Config.Hostname.length === 12 && c.Id.startsWith(c.Config.Hostname) ? '(container id)' : c.Config.Hostname,
    domainname: c.Config.Domainname,
    exposed: Object.keys(c.Config.ExposedPorts ?? {}).sort(),
    ports: Object.fromEntries(Object.entries((h.PortBindings ?? {}) as Record<string, { HostIp: string; HostPort: string }[]>).sort().map(([k, v]) => [k, v.map((b) => `${b.HostIp}:${b.HostPort}`)])),
    labels: Object.fromEntries(Object.entries((c.Config.Labels ?? {}) as Record<string, string>).filter(([k]) => !OWN_LABEL.test(k)).sort()),
    healthcheck: c.Config.Healthcheck ?? null,
    restart: h.RestartPolicy,
    stopSignal: c.Config.StopSignal ?? 'SIGTERM',
    stopTimeout: c.Config.StopTimeout ?? 10,
    openStdin: c.Config.OpenStdin,
    tty: c.Config.Tty,
    init: h.Init ?? false,
    readOnly: h.ReadonlyRootfs,
    tmpfs: h.Tmpfs ?? null,
    securityOpt: h.SecurityOpt ?? null,
    shmSize: h.ShmSize,
    extraHosts: h.ExtraHosts ?? null,
    dns: [h.Dns ?? [], h.DnsSearch ?? [], h.DnsOptions ?? []],
    resources: { nanoCpus: h.NanoCpus, memory: h.Memory, reservation: h.MemoryReservation, pids: h.PidsLimit || null },
    ulimits: h.Ulimits ?? null,
    log: h.LogConfig,
    mounts: c.Mounts.map((m) => ({
      type: m.Type,
      at: m.Destination,
      rw: m.RW,
      // named volumes by their compose name; anonymous ones and secrets by kind (each tool names those itself)
      what: m.Type === 'bind' ? (m.Destination.startsWith('/run/secrets/') ? 'a secret' : m.Source) : /^[0-9a-f]{64}$/.test(m.Name ?? '') || /_anon_/.test(m.Name ?? '') ? 'anonymous' : names.volume(m.Name ?? ''),
    })).sort((a, b) => a.at.localeCompare(b.at)),
    networks: Object.fromEntries(Object.entries(c.NetworkSettings.Networks).map(([n, e]) => [names.network(n), (e.Aliases ?? []).filter((a) => a !== short && a !== names.container).sort()]).sort()),
    name: names.container ?? '(the tool\'s own)',
  };
}

async function inspectAll(filter: string): Promise<Inspect[]> {
  const ids = (await dockerOk(['ps', '-aq', '--filter', filter])).split('\n').filter(Boolean);
  return ids.length ? (JSON.parse(await dockerOk(['inspect', ...ids])) as Inspect[]) : [];
}

const serviceOf = (c: Inspect) => c.Config.Labels['com.docker.compose.service'] ?? c.Config.Labels['ferry.service'];

test('a compose file deploys through Ferry with the same container config as through docker-compose', async (t) => {
  if (!(await requireDocker(t))) return;
  const dc = spawnSync('docker-compose', ['version', '--short'], { encoding: 'utf8' });
  if (dc.status !== 0) {
    const why = 'docker-compose is not installed; run `bash scripts/test-env.sh` (installs Debian\'s docker-compose)';
    if (process.env.CI) throw new Error(why);
    return void t.skip(why);
  }
  const img = await buildTestImage('ferry-test/equiv', 'v1', { push: true, cmd: ['httpd', '-f', '-p', '8080', '-h', '/www'], files: { '/www/index.html': 'equiv\n' } });
  const dir = tempDir(t);
  writeFileSync(join(dir, 'docker-compose.yml'), COMPOSE);
  writeFileSync(join(dir, 'web.env'), 'FROM_FILE=1\nMODE=overridden-by-environment\n');
  writeFileSync(join(dir, 'db_password.txt'), 'not-a-real-password\n');
  spawnSync('mkdir', ['-p', join(dir, 'conf')]);
  const project = `ferryeq${randomBytes(3).toString('hex')}`;
  const env = { IMAGE: img.ref!, WEB_PORT: '18391', ONE_NAME: `${project}-one` };

  // 1. docker-compose up, inspect, down.
  const compose = (...args: string[]) => spawnSync('docker-compose', ['-p', project, '-f', join(dir, 'docker-compose.yml'), ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 180_000 });
  t.after(() => void compose('down', '-v', '--timeout', '1'));
  const up = compose('up', '-d');
  assert.equal(up.status, 0, up.stderr);
  const theirs = await inspectAll(`label=com.docker.compose.project=${project}`);
  const down = compose('down', '-v', '--timeout', '1');
  assert.equal(down.status, 0, down.stderr);

  // 2. Ferry: import, pin, sign, deploy to a real agent; the bank provides the secret on the agent host.
  const imported = importCompose({ file: join(dir, 'docker-compose.yml'), env });
  assert.deepEqual(imported.warnings, []);
  const services = await pinImages(imported.services);
  // The institution allows the one bind mount this file has (its policy refuses bind mounts by default).
  const f = await fleet(t, { bakeMs: 500, policy: `containers:\n  bindMounts: [${join(dir, 'conf')}]\n` });
  const [a] = f.agents as [(typeof f.agents)[0]];
  const set = await run('agent', ['secret', 'set', 'db_password', '--from-file', join(dir, 'db_password.txt'), '--state-dir', a.stateDir]);
  assert.equal(set.code, 0, set.stderr);
  await f.publish(project, '1.0.0', services, { networks: imported.networks, volumes: imported.volumes });
  assert.equal((await f.deploy(a, project, '1.0.0')).status, 'accepted');
  await f.waitRelease(a, project, '1.0.0', 'applied');
  const ours = await inspectAll(`label=ferry.agent=${a.id}`);

  // 3. Field by field, per service and replica.
  const byService = (list: Inspect[]) => {
    const out: Record<string, Inspect[]> = {};
    for (const c of list) (out[serviceOf(c)] ??= []).push(c);
    return out;
  };
  const [mine, other] = [byService(ours), byService(theirs)];
  assert.deepEqual(Object.keys(mine).sort(), ['one', 'web', 'worker']);
  assert.deepEqual(Object.keys(other).sort(), ['one', 'web', 'worker'], 'docker-compose ran the same services');
  for (const svc of Object.keys(other).sort()) {
    assert.equal(mine[svc]!.length, other[svc]!.length, `${svc}: replicas`);
    const customName = svc === 'one' ? env.ONE_NAME : undefined;
    const want = comparable(other[svc]![0]!, { network: (n) => n.replace(`${project}_`, ''), volume: (n) => n.replace(`${project}_`, ''), container: customName });
    for (const c of mine[svc]!) {
      const got = comparable(c, { network: (n) => n.replace(a.network(project, ''), ''), volume: (n) => n.replace(a.network(project, ''), ''), container: customName });
      assert.deepEqual(got, want, `${svc}: ferry's container ${c.Name} differs from docker-compose's`);
    }
    if (customName) assert.equal(mine[svc]![0]!.Name, `/${customName}`, 'container_name is the container\'s name');
  }
  // The networks and volumes carry the file's labels too.
  const netLabels = JSON.parse(await dockerOk(['network', 'inspect', a.network(project, 'front'), '--format', '{{json .Labels}}']));
  assert.equal(netLabels['com.example.net'], 'front');
  const volLabels = JSON.parse(await dockerOk(['volume', 'inspect', a.network(project, 'static'), '--format', '{{json .Labels}}']));
  assert.equal(volLabels['com.example.backup'], 'nightly');
  // And the secret is the bank's value, read-only, where compose puts it.
  const web = mine.web![0]!.Id;
  assert.equal((await dockerOk(['exec', web, 'cat', '/run/secrets/db_password'])), 'not-a-real-password');
  const write = await docker(['exec', web, 'sh', '-c', 'echo x > /run/secrets/db_password']);
  assert.notEqual(write.code, 0, 'the secret is mounted read-only');
});

// Compose projects as docker compose reads them: .env and --env-file
// interpolation, every problem reported in one run, include/extends with
// !reset and !override, and the keys the issue lists, each converted to what
// the agent deploys.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ComposeRefused, importCompose, type ComposeOptions } from '../../cli/compose.js';
import { tempDir } from '../helpers/tmp.js';

function project(dir: string, files: Record<string, string>): string {
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(join(dir, name, '..'), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
  return join(dir, 'compose.yaml');
}

function refusedIn(dir: string, opts: ComposeOptions): ComposeRefused {
  try {
    importCompose(opts);
  } catch (err) {
    assert.ok(err instanceof ComposeRefused, String(err));
    const strip = (x: string) => x.split(`${dir}/`).join('');
    return Object.assign(err, { problems: err.problems.map(strip), warnings: err.warnings.map(strip) });
  }
  assert.fail('expected a refusal');
}

test('the project .env is read, --env-file replaces it (later files win), and the shell environment wins over both', (t) => {
  const dir = tempDir(t);
  const file = project(dir, {
    'compose.yaml': 'name: ${STACK}\nservices:\n  app:\n    image: app:${TAG:-latest}\n    ports: ["${WEB_PORT:-8080}:80"]\n    environment: {MODE: "${MODE}"}\n',
    '.env': 'STACK=shop\nTAG=1.4.2\nWEB_PORT=18080\nMODE=dotenv\n',
    'prod.env': 'TAG=2.0.0\nMODE=prod\n',
    'late.env': 'MODE=late\n',
  });
  const fromDotEnv = importCompose({ file, env: {} });
  assert.equal(fromDotEnv.name, 'shop');
  assert.equal(fromDotEnv.services.app!.imageRef, 'app:1.4.2', 'the .env value, not the default');
  assert.deepEqual(fromDotEnv.services.app!.ports, [{ target: 80, published: 18080, protocol: 'tcp' }]);

  const withFiles = importCompose({ file, env: { STACK: 'shop' }, envFiles: [join(dir, 'prod.env'), join(dir, 'late.env')] });
  assert.equal(withFiles.services.app!.imageRef, 'app:2.0.0');
  assert.equal(withFiles.services.app!.ports[0]!.published, 8080, '--env-file replaces .env: WEB_PORT falls back to its default');
  assert.deepEqual(withFiles.services.app!.environment, { MODE: 'late' });

  const shell = importCompose({ file, env: { TAG: 'from-shell', MODE: 'shell' } });
  assert.equal(shell.services.app!.imageRef, 'app:from-shell');
  assert.deepEqual(shell.services.app!.environment, { MODE: 'shell' });
});

test('an unset variable without a default is an error in image, ports and name, a warning elsewhere; warnings come with a refusal too', (t) => {
  const dir = tempDir(t);
  const file = project(dir, {
    'compose.yaml': 'name: ${PROJECT}\nservices:\n  app:\n    image: app:${TAG}\n    ports: ["${PORT}:80"]\n    environment: {PASSWORD: "${DB_PASSWORD}"}\n',
  });
  const r = refusedIn(dir, { file, env: {} });
  assert.equal(r.code, 'FERRY_E_COMPOSE_INVALID');
  assert.deepEqual(r.problems, [
    'compose.yaml:1: name uses variable PROJECT, which is not set and has no default (set it, or write ${PROJECT:-default})',
    'compose.yaml:4: services.app.image uses variable TAG, which is not set and has no default (set it, or write ${TAG:-default})',
    'compose.yaml:5: services.app.ports[0] uses variable PORT, which is not set and has no default (set it, or write ${PORT:-default})',
  ]);
  assert.deepEqual(r.warnings, ['DB_PASSWORD is not set; services.app.environment.PASSWORD (compose.yaml:6) uses an empty string in its place']);
});

test('one run lists every problem of a file, each with its file, line and key', (t) => {
  const dir = tempDir(t);
  const file = project(dir, {
    'compose.yaml': [
      'services:',
      '  web:',
      '    image: web',
      '    blkio_config: {weight: 300}',
      '    expose: ["http"]',
      '    cpu_shares: 512',
      '  db:',
      '    build: ./db',
      '    volumes: [data:/var/lib/db]',
      '    platform: linux/amd64',
      'networks:',
      '  front: {ipam: {config: [{subnet: 10.5.0.0/16}]}}',
      '',
    ].join('\n'),
  });
  const r = refusedIn(dir, { file, env: {} });
  assert.deepEqual(r.problems.sort(), [
    'compose.yaml:12: networks.front.ipam is not supported by Ferry: address ranges are assigned by the engine',
    'compose.yaml:4: services.web.blkio_config is not supported by Ferry: block I/O limits are not supported; remove the key',
    'compose.yaml:6: services.web.cpu_shares is not supported by Ferry: use cpus (or deploy.resources.limits.cpus) for a CPU limit',
    'compose.yaml:5: services.web.expose[0] must be a port like 8080 or 53/udp (got "http")',
    'compose.yaml:9: services.db.volumes[0] uses volume data, which is not declared under top-level volumes:',
    'compose.yaml:7: services.db has build: but no image: build and push it with `ferry release create --build --push-to REGISTRY/PREFIX`, or add image: with a pushed name',
  ].sort());
  assert.deepEqual(r.warnings, ['services.db.platform is ignored: images are pinned by digest; the engine runs the platform it is, from a multi-platform image']);
});

test('include: and extends: are flattened at import; their errors name the file they came from', (t) => {
  const dir = tempDir(t);
  const file = project(dir, {
    'compose.yaml': [
      'include:',
      '  - path: db/compose.yaml',
      'services:',
      '  web:',
      '    extends: {file: common.yaml, service: base}',
      '    image: web:${WEB_TAG}',
      '    environment: [MODE=web]',
      '    ports: !override ["8080:80"]',
      '    labels: !reset {}',
      '  worker:',
      '    extends: web',
      '    command: ["work"]',
      '',
    ].join('\n'),
    'common.yaml': 'services:\n  base:\n    image: base\n    environment: {MODE: base, REGION: eu}\n    ports: ["9000:9000"]\n    labels: {team: shop}\n    volumes: ["./conf:/conf:ro"]\n    restart: always\n',
    'db/compose.yaml': 'services:\n  db:\n    image: db:${DB_TAG}\n    volumes: ["./init:/docker-entrypoint-initdb.d:ro"]\n',
    'db/.env': 'DB_TAG=16\n',
    '.env': 'WEB_TAG=3\n',
  });
  const got = importCompose({ file, env: {} });
  assert.deepEqual(Object.keys(got.services).sort(), ['db', 'web', 'worker']);
  const web = got.services.web!;
  assert.equal(web.imageRef, 'web:3');
  assert.deepEqual(web.environment, { MODE: 'web', REGION: 'eu' }, 'environment merges by key');
  assert.deepEqual(web.ports, [{ target: 80, published: 8080, protocol: 'tcp' }], '!override replaces the base ports');
  assert.deepEqual(web.labels, {}, '!reset drops the base labels');
  assert.equal(web.restart, 'always');
  assert.deepEqual(web.volumes, [{ type: 'bind', source: join(dir, 'conf'), target: '/conf', readOnly: true }], 'relative paths of common.yaml resolve against its directory');
  assert.deepEqual(got.services.worker!.command, ['work']);
  assert.equal(got.services.worker!.imageRef, 'web:3');
  assert.equal(got.services.db!.imageRef, 'db:16', 'an included file uses its own directory\'s .env');
  assert.deepEqual(got.services.db!.volumes, [{ type: 'bind', source: join(dir, 'db', 'init'), target: '/docker-entrypoint-initdb.d', readOnly: true }]);

  writeFileSync(join(dir, 'db/compose.yaml'), 'services:\n  db:\n    image: db\n    privileged: maybe\n  web:\n    image: other\n');
  const r = refusedIn(dir, { file, env: {} });
  assert.deepEqual(r.problems.sort(), [
    'compose.yaml:2: include[0].path includes services.web (db/compose.yaml:5), which compose.yaml:4 defines too',
    'db/compose.yaml:4: services.db.privileged must be true or false (got "maybe")',
  ]);
});

test('the keys docker compose users write are converted to what the agent deploys', (t) => {
  const dir = tempDir(t);
  const file = project(dir, {
    'compose.yaml': `
services:
  app:
    image: app
    container_name: shop-app
    hostname: app1
    domainname: shop.internal
    expose: ["8080", "53/udp"]
    stop_signal: SIGQUIT
    stdin_open: true
    tty: true
    init: true
    read_only: true
    extra_hosts: ["db.legacy:10.0.0.5", "cache=10.0.0.6"]
    dns: 10.0.0.2
    dns_search: [shop.internal]
    shm_size: 64m
    tmpfs: ["/run", "/tmp:size=64m"]
    security_opt: [no-new-privileges:true]
    mem_limit: 256m
    cpus: 0.5
    pids_limit: 100
    deploy:
      resources:
        reservations: {memory: 64m}
      restart_policy: {condition: on-failure}
    ulimits:
      nofile: {soft: 1024, hard: 2048}
      nproc: 512
    logging:
      driver: json-file
      options: {max-size: 10m, max-file: "3"}
    ports: ["80", "127.0.0.1::81", {target: 82}]
    volumes:
      - /var/cache/app
      - {type: tmpfs, target: /scratch, tmpfs: {size: 1m}}
      - {type: volume, source: data, target: /data, volume: {nocopy: true}}
    healthcheck: {test: [NONE]}
    secrets:
      - db_password
      - {source: tls_key, target: tls.key, mode: 0400, uid: "1000", gid: "1000"}
    configs:
      - app_conf
      - {source: app_conf, target: /etc/app/app.conf}
    cap_add: [NET_ADMIN]
    cap_drop: [ALL]
    sysctls: {net.core.somaxconn: "1024"}
    devices: ["/dev/fuse"]
    ipc: host
  tools:
    image: tools
    network_mode: host
    profiles: [debug]
networks:
  default: {driver: bridge, labels: {tier: front}}
volumes:
  data: {driver: local, labels: [backup=nightly]}
secrets:
  db_password: {file: ./secrets/db_password.txt}
  tls_key: {environment: TLS_KEY}
configs:
  app_conf: {file: ./app.conf}
`,
  });
  const got = importCompose({ file, env: {} });
  assert.deepEqual(got.skipped, ['tools'], 'a service whose profiles are not active is left out, as compose does');
  assert.deepEqual(got.networks, { default: { internal: false, labels: { tier: 'front' } } });
  assert.deepEqual(got.volumes, { data: { labels: { backup: 'nightly' } } });
  const app = got.services.app!;
  assert.deepEqual(app, {
    imageRef: 'app',
    environment: {},
    ports: [{ target: 80, protocol: 'tcp' }, { target: 81, protocol: 'tcp', hostIp: '127.0.0.1' }, { target: 82, protocol: 'tcp' }],
    volumes: [
      { type: 'anonymous', source: '', target: '/var/cache/app', readOnly: false },
      { type: 'tmpfs', source: '', target: '/scratch', readOnly: false, tmpfsSize: 1048576 },
      { type: 'volume', source: 'data', target: '/data', readOnly: false, noCopy: true },
    ],
    networks: ['default'],
    dependsOn: {},
    healthcheck: { test: ['NONE'] },
    restart: 'on-failure',
    labels: {},
    stopGracePeriodMs: 10_000,
    replicas: 1,
    updateOrder: 'stop-first',
    containerName: 'shop-app',
    expose: [{ target: 8080, protocol: 'tcp' }, { target: 53, protocol: 'udp' }],
    hostname: 'app1',
    domainname: 'shop.internal',
    stopSignal: 'SIGQUIT',
    stdinOpen: true,
    tty: true,
    init: true,
    readOnly: true,
    extraHosts: ['db.legacy:10.0.0.5', 'cache:10.0.0.6'],
    dns: ['10.0.0.2'],
    dnsSearch: ['shop.internal'],
    shmSizeBytes: 64 * 1048576,
    tmpfs: { '/run': '', '/tmp': 'size=64m' },
    securityOpt: ['no-new-privileges:true'],
    resources: { nanoCpus: 500_000_000, memoryBytes: 256 * 1048576, memoryReservationBytes: 64 * 1048576, pids: 100 },
    ulimits: { nofile: { soft: 1024, hard: 2048 }, nproc: { soft: 512, hard: 512 } },
    logging: { driver: 'json-file', options: { 'max-size': '10m', 'max-file': '3' } },
    secrets: [
      { name: 'db_password', target: '/run/secrets/db_password' },
      { name: 'tls_key', target: '/run/secrets/tls.key', mode: 0o400, uid: '1000', gid: '1000' },
    ],
    configs: [{ name: 'app_conf', target: '/app_conf' }, { name: 'app_conf', target: '/etc/app/app.conf' }],
    capAdd: ['NET_ADMIN'],
    capDrop: ['ALL'],
    sysctls: { 'net.core.somaxconn': '1024' },
    devices: [{ host: '/dev/fuse', container: '/dev/fuse', permissions: 'rwm' }],
    ipc: 'host',
  });
  assert.deepEqual(got.policyGated, ['app: cap_add NET_ADMIN', 'app: devices /dev/fuse:/dev/fuse:rwm', 'app: ipc host', 'app: sysctls net.core.somaxconn=1024']);

  const debug = importCompose({ file, env: {}, profiles: ['debug'] });
  assert.equal(debug.services.tools!.networkMode, 'host');
  assert.deepEqual(debug.services.tools!.networks, [], 'network_mode replaces the stack networks');
  assert.ok(debug.policyGated.includes('tools: network_mode host'));
});

test('build: is refused without --build and collected for it with --build', (t) => {
  const dir = tempDir(t);
  const file = project(dir, {
    'compose.yaml': 'services:\n  api:\n    build: {context: ./api, dockerfile: Containerfile, args: {VERSION: "1"}, target: prod}\n',
  });
  const r = refusedIn(dir, { file, env: {} });
  assert.match(r.problems[0]!, /^compose\.yaml:2: services\.api has build: but no image: build and push it with `ferry release create --build --push-to/);
  const got = importCompose({ file, env: {}, build: true });
  assert.deepEqual(got.builds.api, { context: join(dir, 'api'), dockerfile: 'Containerfile', args: { VERSION: '1' }, target: 'prod', labels: {}, noCache: false, pull: false, at: `${file}:3` });
});

test('a compose file that does not exist is FERRY_E_COMPOSE_FILE, not a key problem', (t) => {
  const dir = tempDir(t);
  const r = refusedIn(dir, { file: join(dir, 'nope.yml'), env: {} });
  assert.equal(r.code, 'FERRY_E_COMPOSE_FILE');
  assert.deepEqual(r.problems, ['nope.yml:1: cannot be read: ENOENT']);
  assert.match(r.hint, /Check the path/);
});

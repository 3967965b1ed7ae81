import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ComposeRefused, importCompose, parsePortSpec, type ComposeImport, type ComposeOptions } from '../../cli/compose.js';
import { interpolate, shellSplit } from '../../cli/compose-interpolate.js';
import { parseDurationMs } from '../../shared/duration.js';
import { tempDir } from '../helpers/tmp.js';

const DIGEST = `sha256:${'ab'.repeat(32)}`;

// A payments stack using every key Ferry supports, in the forms people write.
const STACK = `# payments: a web front, an API and its database
version: "3.9"
name: payments
x-defaults: &defaults
  restart: unless-stopped
  labels:
    com.example.team: payments
services:
  web:
    <<: *defaults
    image: 127.0.0.1:5000/payments/web:\${WEB_TAG:-1.4.2}
    command: ["httpd", "-f", "-p", "8080"]
    ports:
      - "8080:80"
      - "127.0.0.1:8443:443/tcp"
      - 9000
      - target: 9090
        published: "19090"
        protocol: udp
        host_ip: 10.0.0.5
    networks: [front]
    depends_on:
      api:
        condition: service_healthy
    healthcheck:
      test: wget -q -O- http://localhost:8080/health || exit 1
      interval: 1m30s
      timeout: 500ms
      retries: 3
      start_period: 1.5s
    deploy:
      replicas: 2
      update_config:
        order: start-first
  api:
    image: registry.example.com:5443/payments/api@${DIGEST}
    entrypoint: /bin/api --config '/etc/api/config file.yml' --price "\\$$5"
    user: "1000:1000"
    working_dir: /srv/api
    env_file:
      - api.env
    environment:
      DB_HOST: db
      DB_PASSWORD: \${DB_PASSWORD:?set DB_PASSWORD to the database password}
      LOG_LEVEL: \${LOG_LEVEL:-info}
      FEATURE_X: true
      REPLICA_ID:
      NOT_IN_ENV:
    labels:
      - com.example.tier=backend
      - com.example.empty
    volumes:
      - "api-cache:/var/cache/api"
      - "./config:/etc/api:ro"
      - /var/log/payments:/var/log/api
      - type: volume
        source: api-data
        target: /data
        read_only: false
      - type: bind
        source: ./certs
        target: /certs
        read_only: true
    networks:
      front:
      back: {}
    depends_on:
      - db
    healthcheck:
      disable: true
    stop_grace_period: 45s
    restart: on-failure
  db:
    image: postgres
    environment:
      - POSTGRES_DB=payments
      - POSTGRES_PASSWORD=\${DB_PASSWORD}
    volumes: [db-data:/var/lib/postgresql/data]
    networks: [back]
    healthcheck:
      test: [CMD, pg_isready, -U, postgres]
      interval: 10s
    restart: always
    x-note: extensions are ignored
networks:
  front:
  back:
    internal: true
volumes:
  api-cache:
  api-data: {}
  db-data:
`;

const API_ENV = `# settings shared by every API replica
API_PORT=9000
export API_NAME="payments api"
API_URL=http://\${DB_HOST_OVERRIDE:-db}:5432/\${API_NAME} # trailing comment
LOG_LEVEL=debug
QUOTED='literal $NOT_EXPANDED'

`;

const ENV = { DB_PASSWORD: 's3cret', REPLICA_ID: '7' };
const FILE = 'docker-compose.yml';

/** Writes `text` as docker-compose.yml in `dir` and imports it, named as the user would name it. */
function importIn(dir: string, text: string, env: Record<string, string> = ENV, more: Partial<ComposeOptions> = {}): ComposeImport {
  writeFileSync(join(dir, FILE), text);
  return importCompose({ file: join(dir, FILE), env, ...more });
}

/** The refusal of a compose file, with the directory taken out of the paths it names. */
function refused(text: string, env: Record<string, string> = {}, dir?: string, more: Partial<ComposeOptions> = {}): ComposeRefused {
  const d = dir ?? mkdtempSync(join(tmpdir(), 'ferry-compose-'));
  try {
    importIn(d, text, env, more);
  } catch (err) {
    assert.ok(err instanceof ComposeRefused, String(err));
    const strip = (x: string) => x.split(`${d}/`).join('');
    return Object.assign(err, { problems: err.problems.map(strip), warnings: err.warnings.map(strip) });
  } finally {
    if (!dir) rmSync(d, { recursive: true, force: true });
  }
  assert.fail(`expected a refusal of:\n${text}`);
}

/** The one problem of a refused compose file, `docker-compose.yml:LINE: …`. */
function refusal(text: string, env: Record<string, string> = {}, dir?: string): string {
  const r = refused(text, env, dir);
  assert.equal(r.problems.length, 1, r.problems.join('\n'));
  return r.problems[0]!;
}

test('a realistic compose file converts to Ferry services, networks and volumes', (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'api.env'), API_ENV);
  const got = importIn(dir, STACK);

  assert.deepEqual(Object.keys(got.services), ['web', 'api', 'db']);
  assert.deepEqual(got.networks, { front: { internal: false }, back: { internal: true } });
  assert.deepEqual(got.volumes, { 'api-cache': {}, 'api-data': {}, 'db-data': {} });
  assert.deepEqual(got.warnings, ['version is ignored: compose itself ignores it; the file is read as the Compose specification']);
  assert.equal(got.name, 'payments');

  assert.deepEqual(got.services.web, {
    imageRef: '127.0.0.1:5000/payments/web:1.4.2',
    command: ['httpd', '-f', '-p', '8080'],
    environment: {},
    ports: [
      { target: 80, published: 8080, protocol: 'tcp' },
      { target: 443, published: 8443, protocol: 'tcp', hostIp: '127.0.0.1' },
      { target: 9000, protocol: 'tcp' },
      { target: 9090, published: 19090, protocol: 'udp', hostIp: '10.0.0.5' },
    ],
    volumes: [],
    networks: ['front'],
    dependsOn: { api: { condition: 'service_healthy' } },
    healthcheck: {
      test: ['CMD-SHELL', 'wget -q -O- http://localhost:8080/health || exit 1'],
      intervalMs: 90_000,
      timeoutMs: 500,
      retries: 3,
      startPeriodMs: 1500,
    },
    restart: 'unless-stopped',
    labels: { 'com.example.team': 'payments' },
    stopGracePeriodMs: 10_000,
    replicas: 2,
    updateOrder: 'start-first',
  });

  assert.deepEqual(got.services.api, {
    imageRef: `registry.example.com:5443/payments/api@${DIGEST}`,
    entrypoint: ['/bin/api', '--config', '/etc/api/config file.yml', '--price', '$5'],
    user: '1000:1000',
    workingDir: '/srv/api',
    environment: {
      API_PORT: '9000',
      API_NAME: 'payments api',
      API_URL: 'http://db:5432/payments api',
      LOG_LEVEL: 'info', // environment: wins over env_file
      QUOTED: 'literal $NOT_EXPANDED',
      DB_HOST: 'db',
      DB_PASSWORD: 's3cret',
      FEATURE_X: 'true',
      REPLICA_ID: '7', // a bare name takes the variable; NOT_IN_ENV is left out
    },
    ports: [],
    volumes: [
      { type: 'volume', source: 'api-cache', target: '/var/cache/api', readOnly: false },
      { type: 'bind', source: join(dir, 'config'), target: '/etc/api', readOnly: true },
      { type: 'bind', source: '/var/log/payments', target: '/var/log/api', readOnly: false },
      { type: 'volume', source: 'api-data', target: '/data', readOnly: false },
      { type: 'bind', source: join(dir, 'certs'), target: '/certs', readOnly: true },
    ],
    networks: ['front', 'back'],
    dependsOn: { db: { condition: 'service_started' } },
    healthcheck: { test: ['NONE'] }, // disable: true switches the image's own healthcheck off too
    restart: 'on-failure',
    labels: { 'com.example.tier': 'backend', 'com.example.empty': '' },
    stopGracePeriodMs: 45_000,
    replicas: 1,
    updateOrder: 'stop-first',
  });

  assert.deepEqual(got.services.db, {
    imageRef: 'postgres',
    environment: { POSTGRES_DB: 'payments', POSTGRES_PASSWORD: 's3cret' },
    ports: [],
    volumes: [{ type: 'volume', source: 'db-data', target: '/var/lib/postgresql/data', readOnly: false }],
    networks: ['back'],
    dependsOn: {},
    healthcheck: { test: ['CMD', 'pg_isready', '-U', 'postgres'], intervalMs: 10_000 },
    restart: 'always',
    labels: {},
    stopGracePeriodMs: 10_000,
    replicas: 1,
    updateOrder: 'stop-first',
  });
});

test('interpolation follows compose: defaults, alternatives, $$, and unset names warned and emptied', (t) => {
  const dir = tempDir(t);
  const got = importIn(dir, `services:
  app:
    image: app:\${TAG-latest}
    environment:
      A: \${EMPTY:-fallback}
      B: \${EMPTY-kept-empty}
      C: \${SET:+alternative}
      D: \${MISSING}
      E: $$HOME and $SET and \${OUTER:-\${SET}-nested}
    labels: {x: "\${MISSING}"}
    deploy: {replicas: "\${REPLICAS:-3}"}
    stop_grace_period: \${GRACE:-1m30s}
`, { EMPTY: '', SET: 'yes' });
  const app = got.services.app!;
  assert.equal(app.imageRef, 'app:latest');
  assert.deepEqual(app.environment, { A: 'fallback', B: '', C: 'alternative', D: '', E: '$HOME and yes and yes-nested' });
  assert.equal(app.replicas, 3);
  assert.equal(app.stopGracePeriodMs, 90_000);
  assert.deepEqual(got.warnings, [
    'MISSING is not set; services.app.environment.D (docker-compose.yml:8) uses an empty string in its place',
    'MISSING is not set; services.app.labels.x (docker-compose.yml:10) uses an empty string in its place',
  ].map((w) => w.replace('docker-compose.yml', join(dir, FILE))));
});

test('defaults: no networks means the default network; healthcheck forms', (t) => {
  const dir = tempDir(t);
  const got = importIn(dir, `services:
  a:
    image: a
    healthcheck: {test: [NONE]}
    build: ./a
  b:
    image: b
    healthcheck: {test: [CMD-SHELL, "curl -f http://localhost/ || exit 1"], disable: false}
    networks: {default: null}
    depends_on: {a: {}}
    ports: ["127.0.0.1::8080", "[::1]:8053:53/udp"]
`);
  assert.deepEqual(got.services.a!.healthcheck, { test: ['NONE'] });
  assert.deepEqual(got.services.a!.networks, ['default']);
  assert.deepEqual(got.services.b!.healthcheck, { test: ['CMD-SHELL', 'curl -f http://localhost/ || exit 1'] });
  assert.deepEqual(got.services.b!.networks, ['default']);
  assert.deepEqual(got.services.b!.dependsOn, { a: { condition: 'service_started' } });
  assert.deepEqual(got.services.b!.ports, [
    { target: 8080, protocol: 'tcp', hostIp: '127.0.0.1' },
    { target: 53, published: 8053, protocol: 'udp', hostIp: '::1' },
  ]);
  assert.deepEqual(got.warnings, ['services.a.build is ignored: Ferry uses the pushed image a (give --build to build it)']);
});

test('unsupported keys and bad values are refused naming the key and its line', () => {
  const cases: [string, string, RegExp][] = [
    ['build without image', 'services:\n  web:\n    build: .\n    ports: ["80"]\n',
      /^docker-compose\.yml:2: services\.web has build: but no image: build and push it with `ferry release create --build --push-to REGISTRY\/PREFIX`/],
    ['network aliases', 'services:\n  web:\n    image: x\n    networks:\n      front:\n        aliases: [www]\nnetworks:\n  front:\n',
      /^docker-compose\.yml:6: services\.web\.networks\.front\.aliases is not supported by Ferry: services reach each other by service name/],
    ['port range', 'services:\n  web:\n    image: x\n    ports:\n      - "80:80"\n      - "8000-8010:8000-8010"\n',
      /^docker-compose\.yml:6: services\.web\.ports\[1\] is a port range \(8000-8010:8000-8010\); Ferry does not support port ranges/],
    ['port range, long syntax', 'services:\n  web:\n    image: x\n    ports:\n      - target: 80\n        published: "8000-8001"\n',
      /^docker-compose\.yml:6: services\.web\.ports\[0\]\.published is a port range/],
    ['sctp', 'services:\n  web:\n    image: x\n    ports: ["5000/sctp"]\n',
      /^docker-compose\.yml:4: services\.web\.ports\[0\] uses protocol "sctp"/],
    ['refused top-level key', 'services:\n  web:\n    image: x\nmodels:\n  llm: {model: ai/x}\n',
      /^docker-compose\.yml:4: models is not supported by Ferry: AI model runners are not part of a Ferry release$/],
    ['a typo', 'services:\n  web:\n    image: x\n    enviroment: {A: 1}\n',
      /^docker-compose\.yml:4: services\.web\.enviroment is not a compose key \(did you mean environment\?\)$/],
    ['undeclared named volume', 'services:\n  db:\n    image: x\n    volumes:\n      - pgdata:/var/lib/postgresql/data\n',
      /^docker-compose\.yml:5: services\.db\.volumes\[0\] uses volume pgdata, which is not declared under top-level volumes/],
    ['volume driver', 'services:\n  db:\n    image: x\nvolumes:\n  data:\n    driver: nfs\n',
      /^docker-compose\.yml:6: volumes\.data\.driver must be one of local \(got "nfs"\)/],
    ['undeclared network', 'services:\n  web:\n    image: x\n    networks: [dmz]\n',
      /^docker-compose\.yml:4: services\.web\.networks\[0\] uses network dmz, which is not declared under top-level networks/],
    ['external network', 'services:\n  web:\n    image: x\nnetworks:\n  dmz:\n    external: true\n',
      /^docker-compose\.yml:6: networks\.dmz\.external is not supported by Ferry: Ferry owns every network of a stack/],
    ['depends_on unknown service', 'services:\n  web:\n    image: x\n    depends_on:\n      - api\n',
      /^docker-compose\.yml:5: services\.web\.depends_on\[0\] names api, which is not a service of this file/],
    ['depends_on condition', 'services:\n  a:\n    image: x\n  b:\n    image: x\n    depends_on:\n      a: {condition: service_ready}\n',
      /^docker-compose\.yml:7: services\.b\.depends_on\.a\.condition must be one of service_started, service_healthy, service_completed_successfully/],
    ['depends_on cycle', 'services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on: [a]\n',
      /^docker-compose\.yml:4: services\.a\.depends_on forms a cycle: a -> b -> a; remove one of these depends_on entries/],
    ['bad service name', 'services:\n  web:\n    image: x\n  Payments_API:\n    image: y\n',
      /^docker-compose\.yml:4: services\.Payments_API is not a valid service name: use lowercase letters/],
    ['bad duration', 'services:\n  web:\n    image: x\n    healthcheck:\n      test: "true"\n      interval: 10 seconds\n',
      /^docker-compose\.yml:6: services\.web\.healthcheck\.interval must be a duration like 10s, 1m30s or 500ms \(got "10 seconds"\)/],
    ['missing required variable', 'services:\n  api:\n    image: x\n    environment:\n      DB_PASSWORD: ${DB_PASSWORD:?set it to the database password}\n',
      /^docker-compose\.yml:5: services\.api\.environment\.DB_PASSWORD needs variable DB_PASSWORD, which is not set: set it to the database password/],
    ['healthcheck start_interval', 'services:\n  web:\n    image: x\n    healthcheck:\n      test: "true"\n      start_interval: 1s\n',
      /^docker-compose\.yml:6: services\.web\.healthcheck\.start_interval is not supported by Ferry: needs Docker 25 or later/],
    ['CPU reservation', 'services:\n  web:\n    image: x\n    deploy:\n      resources: {reservations: {cpus: "0.5"}}\n',
      /^docker-compose\.yml:5: services\.web\.deploy\.resources\.reservations\.cpus is not supported by Ferry/],
    ['restart with a count', 'services:\n  web:\n    image: x\n    restart: on-failure:3\n',
      /^docker-compose\.yml:4: services\.web\.restart must be one of no, always, on-failure, unless-stopped \(got "on-failure:3"\)/],
    ['no image', 'services:\n  web:\n    command: ["true"]\n',
      /^docker-compose\.yml:2: services\.web has no image:/],
    ['invalid image reference', 'services:\n  web:\n    image: Payments/Web:1\n',
      /^docker-compose\.yml:3: services\.web\.image is not a valid image reference/],
    ['replicas out of range', 'services:\n  web:\n    image: x\n    deploy: {replicas: 500}\n',
      /^docker-compose\.yml:4: services\.web\.deploy\.replicas must be a whole number from 0 to 100/],
    ['a lone $', 'services:\n  web:\n    image: x\n    command: echo costs 5$\n',
      /^docker-compose\.yml:4: services\.web\.command has an invalid \$ .*write \$\$ for a literal \$/],
    ['unterminated quote', 'services:\n  web:\n    image: x\n    entrypoint: sh -c \'echo hi\n',
      /^docker-compose\.yml:4: services\.web\.entrypoint has an unterminated '/],
    ['no services', 'version: "3"\nname: empty\n',
      /^docker-compose\.yml:1: the file has no services:/],
    ['container_name with replicas', 'services:\n  web:\n    image: x\n    container_name: web\n    deploy: {replicas: 2}\n',
      /^docker-compose\.yml:4: services\.web\.container_name cannot name 2 replicas/],
    ['link alias', 'services:\n  db:\n    image: x\n  web:\n    image: x\n    links: ["db:database"]\n',
      /^docker-compose\.yml:6: services\.web\.links\[0\] gives db the alias database: Ferry does not support link aliases/],
    ['an unknown YAML tag', 'services:\n  web:\n    image: !custom x\n',
      /^docker-compose\.yml:3: uses the YAML tag !custom; compose knows only !reset and !override/],
    ['security_opt that loosens confinement', 'services:\n  web:\n    image: x\n    security_opt: ["seccomp:unconfined"]\n',
      /^docker-compose\.yml:4: services\.web\.security_opt\[0\] must be one of no-new-privileges, no-new-privileges:true/],
    ['volumes_from', 'services:\n  a:\n    image: x\n  b:\n    image: x\n    volumes_from: [a]\n',
      /^docker-compose\.yml:6: services\.b\.volumes_from is not supported by Ferry: declare a named volume/],
  ];
  for (const [what, text, expected] of cases) assert.match(refusal(text), expected, what);
});

test('bad YAML and duplicate keys are refused with the YAML error\'s line', () => {
  assert.match(refusal('services:\n  web:\n    image: x\n    ports: [80\n  db:\n    image: y\n'), /^docker-compose\.yml:\d+: is not valid YAML: /);
  assert.match(refusal('services:\n  web:\n    image: "x\n'), /^docker-compose\.yml:3: is not valid YAML: /);
  assert.match(refusal('services:\n  web:\n    image: x\n  db:\n    image: y\n  web:\n    image: z\n'), /^docker-compose\.yml:6: is not valid YAML: Map keys must be unique/);
  assert.match(refusal('services:\n  web:\n    image: x\n    environment:\n      A: 1\n      A: 2\n'), /^docker-compose\.yml:6: is not valid YAML: Map keys must be unique/);
  assert.match(refusal(''), /^docker-compose\.yml:1: the file is empty/);
  assert.equal(refused('services:\n  web:\n    image: "x\n').code, 'FERRY_E_COMPOSE_YAML', 'a YAML error has its own code, and a hint about YAML');
  assert.match(refusal('- web\n- db\n'), /^docker-compose\.yml:1: the file must be a map/);
  assert.match(refusal('services:\n  web:\n    image: x\n---\nservices: {}\n'), /^docker-compose\.yml:4: is not valid YAML: /);
});

test('env_file errors name the compose line and the env file', (t) => {
  const dir = tempDir(t);
  assert.match(refusal('services:\n  web:\n    image: x\n    env_file: missing.env\n', {}, dir), /^docker-compose\.yml:4: services\.web\.env_file cannot be read: ENOENT/);
  assert.equal(refused('services:\n  web:\n    image: x\n    env_file: missing.env\n', {}, dir).code, 'FERRY_E_COMPOSE_FILE');
  mkdirSync(join(dir, 'conf'));
  writeFileSync(join(dir, 'conf', 'bad.env'), 'GOOD=1\nthis is not a variable\n');
  assert.match(refusal('services:\n  web:\n    image: x\n    env_file: [conf/bad.env]\n', {}, dir), /^docker-compose\.yml:4: services\.web\.env_file\[0\] .*bad\.env: line 2: expected KEY=VALUE/);
  // An optional env file that does not exist is skipped, as compose does.
  const got = importIn(dir, 'services:\n  web:\n    image: x\n    env_file: [{path: nope.env, required: false}]\n');
  assert.deepEqual(got.services.web!.environment, {});
});

test('durations, ports, interpolation and shell words parse like compose', () => {
  for (const [s, ms] of [['10s', 10_000], ['1m30s', 90_000], ['500ms', 500], ['1.5s', 1500], ['1h', 3_600_000], ['2m3s4ms', 123_004], ['0', 0], ['1500us', 2]] as const) {
    assert.equal(parseDurationMs(s), ms, s);
  }
  assert.equal(parseDurationMs('2d'), 2 * 86_400_000, 'days, for CLI flags');
  for (const s of ['', '10', 's', '10 s', '-1s', '1m30', '1y']) assert.equal(parseDurationMs(s), undefined, s);

  assert.deepEqual(parsePortSpec('80'), { target: 80, protocol: 'tcp' });
  assert.deepEqual(parsePortSpec('8080:80'), { target: 80, published: 8080, protocol: 'tcp' });
  assert.deepEqual(parsePortSpec('127.0.0.1:8080:80/udp'), { target: 80, published: 8080, protocol: 'udp', hostIp: '127.0.0.1' });
  for (const bad of ['0', '70000', '8080:80:80:80', 'http', '1-2', ':80:']) assert.throws(() => parsePortSpec(bad), Error, bad);

  const env: Record<string, string> = { A: 'a', E: '' };
  const unset: string[] = [];
  const i = (s: string) => interpolate(s, (k) => env[k], (k) => unset.push(k));
  assert.equal(i('$A-${A}-$$A-${E:-d}-${E-d}-${U-d}-${A:+x}-${U+x}-${U}'), 'a-a-$A-d--d-x--');
  assert.deepEqual(unset, ['U']);
  assert.throws(() => i('${U?must be set}'), /needs variable U, which is not set: must be set/);
  assert.throws(() => i('${E:?}'), /needs variable E, which is empty/);
  assert.equal(i('${E?}'), '');
  assert.throws(() => i('${A'), /unterminated/);
  assert.throws(() => i('${A!}'), /invalid interpolation/);

  assert.deepEqual(shellSplit(`sh -c 'echo "a b"'  x\\ y "q\\"uote" ''`), ['sh', '-c', 'echo "a b"', 'x y', 'q"uote', '']);
  assert.deepEqual(shellSplit('  '), []);
});

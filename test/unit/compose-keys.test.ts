// Nothing silently dropped: every key the Compose specification defines (its
// services, networks, volumes, secrets, configs and top level, and the maps
// nested in them) is imported, refused with a reason, or ignored with a
// warning and listed as ignored in README.md. The key lists below are the
// specification's (compose-spec/compose-spec, schema/compose-spec.json, as of
// 2026-06), written out here so a new key there is one line here, and a key
// missing from Ferry's table fails this test.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ComposeRefused, importCompose } from '../../cli/compose.js';
import { KEYS, keyPath } from '../../cli/compose-keys.js';
import { ROOT } from '../helpers/proc.js';
import { tempDir } from '../helpers/tmp.js';

const SPEC: Record<string, string> = {
  top: 'version name include services models networks volumes secrets configs',
  include: 'path project_directory env_file',
  service:
    'develop deploy annotations attach build blkio_config cap_add cap_drop cgroup cgroup_parent command configs container_name cpu_count cpu_percent ' +
    'cpu_shares cpu_quota cpu_period cpu_rt_period cpu_rt_runtime cpus cpuset credential_spec depends_on device_cgroup_rules devices dns dns_opt dns_search ' +
    'domainname entrypoint env_file label_file environment expose extends provider external_links extra_hosts gpus group_add healthcheck hostname image init ' +
    'ipc isolation labels links logging mac_address mem_limit mem_reservation mem_swappiness memswap_limit network_mode models networks oom_kill_disable ' +
    'oom_score_adj pid pids_limit platform ports post_start pre_stop privileged profiles pull_policy pull_refresh_after read_only restart runtime scale ' +
    'security_opt shm_size secrets sysctls stdin_open stop_grace_period stop_signal storage_opt tmpfs tty ulimits use_api_socket user uts userns_mode volumes ' +
    'volumes_from working_dir',
  'service.build':
    'context dockerfile dockerfile_inline entitlements args ssh labels cache_from cache_to no_cache additional_contexts network provenance sbom pull target ' +
    'shm_size extra_hosts isolation privileged secrets tags ulimits platforms',
  'service.deploy': 'mode endpoint_mode replicas labels rollback_config update_config resources restart_policy placement',
  'service.deploy.update_config': 'parallelism delay failure_action monitor max_failure_ratio order',
  'service.deploy.restart_policy': 'condition delay max_attempts window',
  'service.deploy.resources': 'limits reservations',
  'service.deploy.resources.limits': 'cpus memory pids',
  'service.deploy.resources.reservations': 'cpus memory generic_resources devices',
  'service.healthcheck': 'disable interval retries test timeout start_period start_interval',
  'service.port': 'name mode host_ip target published protocol app_protocol',
  'service.volume': 'type source target read_only consistency bind volume tmpfs image',
  'service.volume.bind': 'propagation create_host_path recursive selinux',
  'service.volume.volume': 'labels nocopy subpath',
  'service.volume.tmpfs': 'size mode',
  'service.network': 'aliases interface_name ipv4_address ipv6_address link_local_ips mac_address driver_opts priority gw_priority',
  'service.depends_on': 'restart required condition',
  'service.logging': 'driver options',
  'service.extends': 'service file',
  'service.secret': 'source target uid gid mode',
  'service.config': 'source target uid gid mode',
  'service.device': 'source target permissions',
  'service.ulimit': 'soft hard',
  'service.env_file': 'path required format',
  network: 'name driver driver_opts ipam external internal enable_ipv4 enable_ipv6 attachable labels',
  volume: 'name driver driver_opts external labels',
  secret: 'name environment file external labels driver driver_opts template_driver',
  config: 'name content environment file external labels template_driver',
};

/** Where each scope's map sits in a minimal project: the document with `entry` (`{key: value}`) placed there. */
const PLACE: Record<string, (entry: Record<string, unknown>) => Record<string, unknown>> = {
  top: (e) => ({ services: { a: { image: 'x' } }, ...e }),
  include: (e) => ({ include: [{ path: 'other.yaml', ...e }], services: { a: { image: 'x' } } }),
  service: (e) => ({ services: { a: { image: 'x', ...e }, b: { image: 'x' } } }),
  'service.build': (e) => ({ services: { a: { image: 'x', build: { context: '.', ...e } } } }),
  'service.deploy': (e) => ({ services: { a: { image: 'x', deploy: e } } }),
  'service.deploy.update_config': (e) => ({ services: { a: { image: 'x', deploy: { update_config: e } } } }),
  'service.deploy.restart_policy': (e) => ({ services: { a: { image: 'x', deploy: { restart_policy: e } } } }),
  'service.deploy.resources': (e) => ({ services: { a: { image: 'x', deploy: { resources: e } } } }),
  'service.deploy.resources.limits': (e) => ({ services: { a: { image: 'x', deploy: { resources: { limits: e } } } } }),
  'service.deploy.resources.reservations': (e) => ({ services: { a: { image: 'x', deploy: { resources: { reservations: e } } } } }),
  'service.healthcheck': (e) => ({ services: { a: { image: 'x', healthcheck: { test: ['CMD', 'true'], ...e } } } }),
  'service.port': (e) => ({ services: { a: { image: 'x', ports: [{ target: 80, ...e }] } } }),
  'service.volume': (e) => ({ services: { a: { image: 'x', volumes: [{ type: 'volume', target: '/d', ...e }] } }, volumes: { v: {} } }),
  'service.volume.bind': (e) => ({ services: { a: { image: 'x', volumes: [{ type: 'bind', source: '/srv', target: '/d', bind: e }] } } }),
  'service.volume.volume': (e) => ({ services: { a: { image: 'x', volumes: [{ type: 'volume', target: '/d', volume: e }] } } }),
  'service.volume.tmpfs': (e) => ({ services: { a: { image: 'x', volumes: [{ type: 'tmpfs', target: '/d', tmpfs: e }] } } }),
  'service.network': (e) => ({ services: { a: { image: 'x', networks: { n: e } } }, networks: { n: {} } }),
  'service.depends_on': (e) => ({ services: { a: { image: 'x', depends_on: { b: e } }, b: { image: 'x' } } }),
  'service.logging': (e) => ({ services: { a: { image: 'x', logging: e } } }),
  'service.extends': (e) => ({ services: { a: { extends: { service: 'b', ...e } }, b: { image: 'x' } } }),
  'service.secret': (e) => ({ services: { a: { image: 'x', secrets: [{ source: 's', ...e }] } }, secrets: { s: { file: './s' } } }),
  'service.config': (e) => ({ services: { a: { image: 'x', configs: [{ source: 'c', ...e }] } }, configs: { c: { file: './c' } } }),
  'service.device': (e) => ({ services: { a: { image: 'x', devices: [{ source: '/dev/fuse', ...e }] } } }),
  'service.ulimit': (e) => ({ services: { a: { image: 'x', ulimits: { nofile: { soft: 1, hard: 2, ...e } } } } }),
  'service.env_file': (e) => ({ services: { a: { image: 'x', env_file: [{ path: 'a.env', ...e }] } } }),
  network: (e) => ({ services: { a: { image: 'x' } }, networks: { n: e } }),
  volume: (e) => ({ services: { a: { image: 'x' } }, volumes: { v: e } }),
  secret: (e) => ({ services: { a: { image: 'x' } }, secrets: { s: e } }),
  config: (e) => ({ services: { a: { image: 'x' } }, configs: { c: e } }),
};

/** A value docker compose accepts for each imported key (the default is a string). */
const SAMPLE: Record<string, unknown> = {
  'top.version': '3.9', 'top.name': 'shop', 'top.include': [], 'top.services': { a: { image: 'x' } }, 'top.networks': { n: {} }, 'top.volumes': { v: {} },
  'top.secrets': { s: { file: './s' } }, 'top.configs': { c: { file: './c' } },
  'include.path': 'other.yaml', 'include.project_directory': '.', 'include.env_file': ['o.env'],
  'service.build': '.', 'service.cap_add': ['NET_ADMIN'], 'service.cap_drop': ['ALL'], 'service.command': ['true'], 'service.configs': [], 'service.container_name': 'c1',
  'service.cpus': 0.5, 'service.depends_on': [], 'service.deploy': {}, 'service.devices': ['/dev/fuse'], 'service.dns': ['10.0.0.2'], 'service.dns_opt': ['ndots:1'],
  'service.dns_search': ['x.internal'], 'service.domainname': 'x.internal', 'service.entrypoint': ['sh'], 'service.env_file': [], 'service.environment': { A: '1' },
  'service.expose': ['80'], 'service.extends': { service: 'b' }, 'service.extra_hosts': ['h:10.0.0.1'], 'service.group_add': ['100'], 'service.healthcheck': { test: ['NONE'] },
  'service.hostname': 'h1', 'service.image': 'x', 'service.init': true, 'service.ipc': 'host', 'service.labels': { a: 'b' }, 'service.links': [], 'service.logging': { driver: 'json-file' },
  'service.mem_limit': '64m', 'service.mem_reservation': '32m', 'service.network_mode': 'host', 'service.networks': ['default'], 'service.pid': 'host', 'service.pids_limit': 10,
  'service.ports': ['80'], 'service.privileged': true, 'service.profiles': [], 'service.read_only': true, 'service.restart': 'always', 'service.scale': 1, 'service.secrets': [],
  'service.security_opt': ['no-new-privileges'], 'service.shm_size': '64m', 'service.sysctls': { 'net.core.somaxconn': '1024' }, 'service.stdin_open': true,
  'service.stop_grace_period': '5s', 'service.stop_signal': 'SIGINT', 'service.tmpfs': ['/run'], 'service.tty': true, 'service.ulimits': { nofile: 1024 }, 'service.user': '1000',
  'service.volumes': [], 'service.working_dir': '/srv',
  'service.build.context': '.', 'service.build.dockerfile': 'Dockerfile', 'service.build.args': { A: '1' }, 'service.build.target': 'prod', 'service.build.labels': { a: 'b' },
  'service.build.no_cache': true, 'service.build.pull': true,
  'service.deploy.mode': 'replicated', 'service.deploy.replicas': 1, 'service.deploy.resources': {}, 'service.deploy.restart_policy': { condition: 'any' }, 'service.deploy.update_config': {},
  'service.deploy.update_config.order': 'start-first', 'service.deploy.restart_policy.condition': 'on-failure', 'service.deploy.resources.limits': {}, 'service.deploy.resources.reservations': {},
  'service.deploy.resources.limits.cpus': '0.5', 'service.deploy.resources.limits.memory': '64m', 'service.deploy.resources.limits.pids': 10, 'service.deploy.resources.reservations.memory': '32m',
  'service.healthcheck.disable': false, 'service.healthcheck.interval': '10s', 'service.healthcheck.retries': 3, 'service.healthcheck.test': ['CMD', 'true'], 'service.healthcheck.timeout': '1s',
  'service.healthcheck.start_period': '1s',
  'service.port.mode': 'host', 'service.port.host_ip': '127.0.0.1', 'service.port.target': 80, 'service.port.published': 8080, 'service.port.protocol': 'udp',
  'service.volume.type': 'volume', 'service.volume.source': 'v', 'service.volume.target': '/d', 'service.volume.read_only': true, 'service.volume.bind': {}, 'service.volume.volume': {}, 'service.volume.tmpfs': {},
  'service.volume.bind.create_host_path': true, 'service.volume.volume.nocopy': true, 'service.volume.tmpfs.size': '1m', 'service.volume.tmpfs.mode': '1777',
  'service.depends_on.required': true, 'service.depends_on.condition': 'service_started',
  'service.logging.driver': 'json-file', 'service.logging.options': { 'max-size': '1m' }, 'service.extends.service': 'b', 'service.extends.file': 'base.yaml',
  'service.secret.source': 's', 'service.secret.target': '/run/secrets/t', 'service.secret.uid': '1', 'service.secret.gid': '1', 'service.secret.mode': '0400',
  'service.config.source': 'c', 'service.config.target': '/etc/c', 'service.config.uid': '1', 'service.config.gid': '1', 'service.config.mode': '0444',
  'service.device.source': '/dev/fuse', 'service.device.target': '/dev/fuse', 'service.device.permissions': 'rw',
  'service.ulimit.soft': 1, 'service.ulimit.hard': 2, 'service.env_file.path': 'a.env', 'service.env_file.required': false,
  'network.driver': 'bridge', 'network.internal': true, 'network.labels': { a: 'b' }, 'network.enable_ipv4': true,
  'volume.driver': 'local', 'volume.labels': { a: 'b' },
  'secret.file': './s', 'secret.environment': 'S', 'secret.external': true, 'config.file': './c', 'config.environment': 'C', 'config.external': true,
};

function importOne(dir: string, doc: Record<string, unknown>): { problems: string[]; warnings: string[] } {
  writeFileSync(join(dir, 'compose.yaml'), JSON.stringify(doc)); // JSON is YAML
  try {
    const got = importCompose({ file: join(dir, 'compose.yaml'), env: { S: 'x', C: 'x' }, build: true });
    return { problems: [], warnings: got.warnings };
  } catch (err) {
    if (!(err instanceof ComposeRefused)) throw err;
    return { problems: err.problems, warnings: err.warnings };
  }
}

test('every key of the Compose specification is imported, refused with a reason, or ignored with a warning', (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'other.yaml'), JSON.stringify({ services: { o: { image: 'o' } } }));
  writeFileSync(join(dir, 'base.yaml'), JSON.stringify({ services: { b: { image: 'x' } } }));
  writeFileSync(join(dir, 'a.env'), 'A=1\n');
  writeFileSync(join(dir, 'o.env'), 'O=1\n');
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const unknown: string[] = [];
  for (const [scope, keys] of Object.entries(SPEC)) {
    for (const key of keys.split(' ')) {
      const d = KEYS[scope]?.[key];
      if (!d) {
        unknown.push(`${scope}.${key}`);
        continue;
      }
      const id = `${scope}.${key}`;
      const value = SAMPLE[id] ?? 'x';
      const { problems, warnings } = importOne(dir, PLACE[scope]!({ [key]: value }));
      const about = (s: string) => new RegExp(`(^|[.\\]: ])${key}( |\\[|\\.|$)`).test(s.split(': ').slice(1).join(': ').split(' ')[0] ?? '');
      switch (d.kind) {
        case 'refuse':
          assert.ok(problems.some((p) => about(p) && p.includes(`is not supported by Ferry: ${d.why}`)), `${id} is refused with its reason; got ${JSON.stringify(problems)}`);
          break;
        case 'ignore':
          assert.deepEqual(problems, [], `${id} is ignored, not refused`);
          assert.ok(warnings.some((w) => w.includes(`.${key} is ignored: ${d.why}`) || w.startsWith(`${key} is ignored: ${d.why}`)), `${id} warns that it is ignored; got ${JSON.stringify(warnings)}`);
          assert.ok(readme.includes(`\`${keyPath(scope, key)}\``), `README.md lists ${keyPath(scope, key)} among the ignored keys`);
          break;
        case 'import':
        case 'policy':
          assert.deepEqual(problems, [], `${id} imports with ${JSON.stringify(value)}`);
          assert.ok(!warnings.some((w) => w.includes(`${key} is ignored`)), `${id} is not ignored`);
          break;
      }
    }
  }
  assert.deepEqual(unknown, [], 'keys of the specification that Ferry\'s table does not list');
});

test('Ferry\'s table lists no key the specification does not define (besides its own x-ferry extension)', () => {
  for (const [scope, keys] of Object.entries(KEYS)) {
    const spec = new Set(SPEC[scope]?.split(' ') ?? []);
    assert.deepEqual(Object.keys(keys).filter((k) => !spec.has(k) && k !== 'x-ferry'), [], `scope ${scope}`);
  }
  assert.equal(KEYS.top!['x-ferry']?.kind, 'import');
  assert.equal(KEYS.service!['x-ferry']?.kind, 'import');
});

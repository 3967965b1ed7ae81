// What Ferry does with every key the Compose specification defines, in one
// table: imported (deployed with the container config docker compose gives),
// imported but policy-gated (signed as written; each bank's agent policy must
// allow it), ignored (with a warning saying why; listed in README.md), or
// refused (with the reason and what to write instead). The reader consults it
// for every map it reads, so a key is never dropped without a word, and
// test/unit/compose-keys.test.ts walks the specification's keys against it.

export type Disposition =
  | { kind: 'import' }
  | { kind: 'policy'; why: string }
  | { kind: 'ignore'; why: string }
  | { kind: 'refuse'; why: string };

const imp: Disposition = { kind: 'import' };
const policy = (why: string): Disposition => ({ kind: 'policy', why });
const ignore = (why: string): Disposition => ({ kind: 'ignore', why });
const refuse = (why: string): Disposition => ({ kind: 'refuse', why });

const SWARM = 'it applies to Swarm services only';
const WINDOWS = 'it applies to Windows containers only';
const PRIV = 'widens what the container may do on the host';
const CPU = 'use cpus (or deploy.resources.limits.cpus) for a CPU limit';

/** Scope name -> key -> disposition. Scopes name where a map sits: `service`, `service.deploy`, `network`, … */
export const KEYS: Readonly<Record<string, Readonly<Record<string, Disposition>>>> = {
  top: {
    version: ignore('compose itself ignores it; the file is read as the Compose specification'),
    name: imp, include: imp, services: imp, networks: imp, volumes: imp, secrets: imp, configs: imp,
    models: refuse('AI model runners are not part of a Ferry release'),
    'x-ferry': imp,
  },
  include: { path: imp, project_directory: imp, env_file: imp },
  service: {
    annotations: refuse('container annotations need Docker API 1.43 or later; use labels'),
    attach: ignore('Ferry never attaches to container output; read logs with docker logs'),
    build: imp,
    blkio_config: refuse('block I/O limits are not supported; remove the key'),
    cap_add: policy('adds Linux capabilities'),
    cap_drop: imp,
    cgroup: refuse('the cgroup namespace is the host\'s choice'),
    cgroup_parent: refuse('where containers sit in the host\'s cgroups is the institution\'s choice'),
    command: imp, configs: imp, container_name: imp,
    cpu_count: refuse(WINDOWS), cpu_percent: refuse(WINDOWS),
    cpu_shares: refuse(CPU), cpu_quota: refuse(CPU), cpu_period: refuse(CPU), cpu_rt_period: refuse(CPU), cpu_rt_runtime: refuse(CPU),
    cpus: imp,
    cpuset: refuse('pinning to host CPUs is the institution\'s choice; use cpus for a limit'),
    credential_spec: refuse(WINDOWS),
    depends_on: imp,
    deploy: imp,
    develop: ignore('compose watch is a development tool'),
    device_cgroup_rules: refuse(`${PRIV} (device access rules); list devices instead`),
    devices: policy('maps host devices into the container'),
    dns: imp, dns_opt: imp, dns_search: imp, domainname: imp, entrypoint: imp, env_file: imp,
    label_file: refuse('write the labels under labels:'),
    environment: imp, expose: imp, extends: imp,
    provider: refuse('provider services are run by compose plugins, not by the engine'),
    external_links: refuse('containers outside the stack are not reachable by name; put the service in the stack'),
    extra_hosts: imp,
    gpus: refuse('GPU reservations are not supported'),
    group_add: imp, healthcheck: imp, hostname: imp, image: imp, init: imp,
    ipc: policy('shares an IPC namespace (host: the host\'s)'),
    isolation: refuse(WINDOWS),
    labels: imp, links: imp, logging: imp,
    mac_address: refuse('MAC addresses are assigned by the engine'),
    mem_limit: imp, mem_reservation: imp,
    mem_swappiness: refuse('swap tuning is the host\'s choice; use mem_limit'),
    memswap_limit: refuse('swap limits are the host\'s choice; use mem_limit'),
    network_mode: policy('replaces the stack\'s networks (host: the host\'s own network stack)'),
    models: refuse('AI model runners are not part of a Ferry release'),
    networks: imp,
    oom_kill_disable: refuse(PRIV),
    oom_score_adj: refuse(PRIV),
    pid: policy('shares the host\'s process namespace'),
    pids_limit: imp,
    platform: ignore('images are pinned by digest; the engine runs the platform it is, from a multi-platform image'),
    ports: imp,
    post_start: refuse('lifecycle hooks need Docker API 1.44 or later'),
    pre_stop: refuse('lifecycle hooks need Docker API 1.44 or later'),
    privileged: policy('gives the container every capability and all host devices'),
    profiles: imp,
    pull_policy: ignore('agents pull the pinned digest when it is missing, never otherwise'),
    pull_refresh_after: ignore('agents pull the pinned digest when it is missing, never otherwise'),
    read_only: imp, restart: imp,
    runtime: refuse('the container runtime is the host\'s choice'),
    scale: imp, secrets: imp, security_opt: imp, shm_size: imp,
    sysctls: policy('sets kernel parameters'),
    stdin_open: imp, stop_grace_period: imp, stop_signal: imp,
    storage_opt: refuse('storage driver options are the host\'s choice'),
    tmpfs: imp, tty: imp, ulimits: imp,
    use_api_socket: refuse('gives the container the Docker engine itself'),
    user: imp,
    uts: refuse(`${PRIV} (the host's UTS namespace)`),
    userns_mode: refuse(`${PRIV} (user namespaces)`),
    volumes: imp,
    volumes_from: refuse('declare a named volume under volumes: and mount it in both services'),
    working_dir: imp,
    'x-ferry': imp,
  },
  'service.build': {
    context: imp, dockerfile: imp, args: imp, target: imp, labels: imp, no_cache: imp, pull: imp,
    dockerfile_inline: refuse('write the Dockerfile into the build context'),
    entitlements: refuse(PRIV), privileged: refuse(PRIV), network: refuse('builds use the engine\'s default network'),
    ssh: refuse('SSH agent forwarding into builds is not supported'), secrets: refuse('build secrets are not supported'),
    additional_contexts: refuse('one build context per service'),
    cache_from: ignore('builds use the local engine\'s cache'), cache_to: ignore('builds use the local engine\'s cache'),
    provenance: ignore('attestations need BuildKit'), sbom: ignore('attestations need BuildKit'),
    shm_size: refuse('set shm_size on the service'), extra_hosts: refuse('builds resolve names as the engine does'),
    isolation: refuse(WINDOWS), tags: ignore('the pushed name is --push-to/<service>:<version>'), ulimits: refuse('set ulimits on the service'),
    platforms: refuse('builds are for the local engine\'s platform'),
  },
  'service.deploy': {
    mode: imp, replicas: imp, resources: imp, restart_policy: imp, update_config: imp,
    endpoint_mode: ignore(SWARM), labels: ignore(SWARM), placement: ignore(SWARM),
    rollback_config: ignore('Ferry rolls a failed release back to the last good one itself'),
  },
  'service.deploy.update_config': {
    order: imp,
    parallelism: ignore('Ferry replaces one service at a time'), delay: ignore('Ferry waits for health, not for a delay'),
    failure_action: ignore('Ferry rolls back a failed release'), monitor: ignore('the agent\'s bake time (reconcile.bakeMs) is the monitor'),
    max_failure_ratio: ignore('any failed replica fails the release'),
  },
  'service.deploy.restart_policy': {
    condition: imp,
    delay: refuse('the engine restarts at once, with its own back-off'), max_attempts: refuse('Ferry restarts without a count; use restart: on-failure'),
    window: refuse('the engine restarts at once, with its own back-off'),
  },
  'service.deploy.resources': { limits: imp, reservations: imp },
  'service.deploy.resources.limits': { cpus: imp, memory: imp, pids: imp },
  'service.deploy.resources.reservations': {
    memory: imp,
    cpus: refuse('docker compose does not apply CPU reservations outside Swarm either'),
    generic_resources: refuse(SWARM), devices: refuse('GPU and device reservations are not supported'),
  },
  'service.healthcheck': {
    test: imp, interval: imp, timeout: imp, retries: imp, start_period: imp, disable: imp,
    start_interval: refuse('needs Docker 25 or later'),
  },
  'service.port': {
    target: imp, published: imp, protocol: imp, host_ip: imp, mode: imp,
    name: ignore('a name for people only'), app_protocol: ignore('a hint for people only'),
  },
  'service.volume': {
    type: imp, source: imp, target: imp, read_only: imp, bind: imp, volume: imp, tmpfs: imp,
    consistency: ignore('it applies to Docker Desktop only'),
    image: refuse('image mounts need Docker 28 or later'),
  },
  'service.volume.bind': {
    create_host_path: imp,
    propagation: refuse(`${PRIV} (mount propagation)`), recursive: refuse('recursive mount options need Docker 25 or later'),
    selinux: refuse('SELinux relabelling of host paths is the institution\'s choice'),
  },
  'service.volume.volume': { nocopy: imp, labels: refuse('label the volume under top-level volumes:'), subpath: refuse('volume subpaths need Docker 26 or later') },
  'service.volume.tmpfs': { size: imp, mode: imp },
  'service.network': {
    aliases: refuse('services reach each other by service name'),
    priority: ignore('the stack\'s networks are joined in the order listed'), gw_priority: ignore('the stack\'s networks are joined in the order listed'),
    interface_name: refuse('interface names need Docker 28 or later'),
    ipv4_address: refuse('addresses are assigned by the engine'), ipv6_address: refuse('addresses are assigned by the engine'),
    link_local_ips: refuse('addresses are assigned by the engine'), mac_address: refuse('MAC addresses are assigned by the engine'),
    driver_opts: refuse('network driver options are the host\'s choice'),
  },
  'service.depends_on': { condition: imp, required: imp, restart: ignore('Ferry restarts a service only when its own configuration changes') },
  'service.logging': { driver: imp, options: imp },
  'service.extends': { service: imp, file: imp },
  'service.secret': { source: imp, target: imp, uid: imp, gid: imp, mode: imp },
  'service.config': { source: imp, target: imp, uid: imp, gid: imp, mode: imp },
  'service.device': { source: imp, target: imp, permissions: imp },
  'service.ulimit': { soft: imp, hard: imp },
  'service.env_file': { path: imp, required: imp, format: refuse('only the default env file format is supported') },
  network: {
    driver: imp, internal: imp, labels: imp, enable_ipv4: imp,
    attachable: ignore(SWARM),
    driver_opts: refuse('network driver options are the host\'s choice'),
    ipam: refuse('address ranges are assigned by the engine'),
    enable_ipv6: refuse('IPv6 networks are not supported yet'),
    external: refuse('Ferry owns every network of a stack; networks outside it are not joined'),
    name: refuse('Ferry names networks itself, per agent and stack'),
  },
  volume: {
    driver: imp, labels: imp,
    driver_opts: refuse('volume driver options (such as driver_opts.device for a bind) are not supported; write a bind mount in the service'),
    external: refuse('Ferry owns every volume of a stack; volumes outside it are not mounted'),
    name: refuse('Ferry names volumes itself, per agent and stack'),
  },
  secret: {
    file: imp, environment: imp, external: imp,
    name: refuse('the bank stores the value under the secret\'s key in this file'),
    labels: ignore('secrets are files on the agent host, not engine objects'),
    driver: refuse(SWARM), driver_opts: refuse(SWARM), template_driver: refuse(SWARM),
  },
  config: {
    file: imp, environment: imp, external: imp,
    content: refuse('the bank provides every config\'s value on the agent host; put the content in a file the bank installs with `ferry-agent config set`'),
    name: refuse('the bank stores the value under the config\'s key in this file'),
    labels: ignore('configs are files on the agent host, not engine objects'),
    template_driver: refuse(SWARM),
  },
};

/**
 * Ferry's own extension (`x-ferry`, which compose itself ignores): checks at
 * the top level, autoscaling and verification jobs per service. Read through
 * the same reader, so a misspelt key is refused with the key's path.
 */
export const FERRY_KEYS: Readonly<Record<string, Readonly<Record<string, Disposition>>>> = {
  'x-ferry': { checks: imp },
  'x-ferry.check': { http: imp, tcp: imp, command: imp, interval: imp, timeout: imp, failures: imp, successes: imp },
  'x-ferry.check.http': { url: imp, method: imp, status: imp, body: imp },
  'x-ferry.check.command': { service: imp, run: imp },
  'service.x-ferry': { autoscale: imp, verify: imp },
  'service.x-ferry.autoscale': { min: imp, max: imp, cpu: imp, memory: imp, cooldown: imp, up_cooldown: imp, down_cooldown: imp },
  'service.x-ferry.verify': { timeout: imp },
};

/** The policy-gated keys of a service, in the order the README lists them. */
export const POLICY_KEYS = Object.entries(KEYS.service!).filter(([, d]) => d.kind === 'policy').map(([k]) => k);

/** Where a scope's map sits in a compose file, as README.md names keys: `services.*.deploy`. */
const SCOPE_PATH: Readonly<Record<string, string>> = {
  top: '', include: 'include[]', service: 'services.*', 'service.build': 'services.*.build', 'service.deploy': 'services.*.deploy',
  'service.deploy.update_config': 'services.*.deploy.update_config', 'service.deploy.restart_policy': 'services.*.deploy.restart_policy',
  'service.deploy.resources': 'services.*.deploy.resources', 'service.deploy.resources.limits': 'services.*.deploy.resources.limits',
  'service.deploy.resources.reservations': 'services.*.deploy.resources.reservations', 'service.healthcheck': 'services.*.healthcheck',
  'service.port': 'services.*.ports[]', 'service.volume': 'services.*.volumes[]', 'service.volume.bind': 'services.*.volumes[].bind',
  'service.volume.volume': 'services.*.volumes[].volume', 'service.volume.tmpfs': 'services.*.volumes[].tmpfs', 'service.network': 'services.*.networks.*',
  'service.depends_on': 'services.*.depends_on.*', 'service.logging': 'services.*.logging', 'service.extends': 'services.*.extends',
  'service.secret': 'services.*.secrets[]', 'service.config': 'services.*.configs[]', 'service.device': 'services.*.devices[]',
  'service.ulimit': 'services.*.ulimits.*', 'service.env_file': 'services.*.env_file[]', network: 'networks.*', volume: 'volumes.*', secret: 'secrets.*', config: 'configs.*',
  'x-ferry': 'x-ferry', 'x-ferry.check': 'x-ferry.checks.*', 'x-ferry.check.http': 'x-ferry.checks.*.http', 'x-ferry.check.command': 'x-ferry.checks.*.command',
  'service.x-ferry': 'services.*.x-ferry', 'service.x-ferry.autoscale': 'services.*.x-ferry.autoscale', 'service.x-ferry.verify': 'services.*.x-ferry.verify',
};

/** The key as README.md names it: `services.*.platform`, `networks.*.ipam`, `version`. */
export function keyPath(scope: string, key: string): string {
  const at = SCOPE_PATH[scope] ?? scope;
  return at ? `${at}.${key}` : key;
}

// One model for both sides of the diff (after balena-supervisor's
// service.ts): the desired side is built from accepted releases
// (`desiredContainers`), the observed side from the engine (the Engine
// returns ObservedContainer). They meet on one value: the config hash, which
// the desired side computes from the full container spec and the observed
// side reads from the `ferry.config-hash` label it was created with.
import { createHash } from 'node:crypto';
import { FerryError } from '../../shared/errors.js';
import { canonicalJson, type FileRef, type Release, type Service } from '../../shared/release.js';

export const LABEL = {
  agent: 'ferry.agent',
  stack: 'ferry.stack',
  service: 'ferry.service',
  replica: 'ferry.replica',
  release: 'ferry.release',
  configHash: 'ferry.config-hash',
  /** On a verification job's container: the run it belongs to (`<seq>.<digest>`), see `jobRun`. */
  jobRun: 'ferry.job-run',
} as const;

export type ContainerStatus = 'created' | 'running' | 'paused' | 'restarting' | 'removing' | 'exited' | 'dead';
export type Health = 'none' | 'starting' | 'healthy' | 'unhealthy';

export interface ContainerSpec {
  name: string;
  image: string;
  labels: Record<string, string>;
  env: string[];
  command?: string[];
  entrypoint?: string[];
  user?: string;
  workingDir?: string;
  /** Published ports; without `published` the engine picks a free host port (on `hostIp` when given). */
  ports: { target: number; published?: number; protocol: 'tcp' | 'udp'; hostIp?: string }[];
  /** Engine volume names (named and anonymous volumes resolved), host paths, tmpfs. */
  mounts: { type: 'volume' | 'bind' | 'tmpfs'; source: string; target: string; readOnly: boolean; noCopy?: boolean; tmpfsSize?: number; tmpfsMode?: number }[];
  /** Engine network names; the container joins each with its service name as alias. */
  networks: string[];
  aliases: string[];
  restart: Service['restart'];
  healthcheck?: { test?: string[]; intervalMs?: number; timeoutMs?: number; retries?: number; startPeriodMs?: number };
  stopGraceMs: number;
  // Optional settings (compose keys); absent means the engine's default, and
  // the config hash of a container that uses none of them is what it was before they existed.
  expose?: { target: number; protocol: 'tcp' | 'udp' }[];
  hostname?: string;
  domainname?: string;
  stopSignal?: string;
  stdinOpen?: boolean;
  tty?: boolean;
  init?: boolean;
  readOnly?: boolean;
  extraHosts?: string[];
  dns?: string[];
  dnsOptions?: string[];
  dnsSearch?: string[];
  groupAdd?: string[];
  shmSizeBytes?: number;
  tmpfs?: Record<string, string>;
  securityOpt?: string[];
  resources?: Service['resources'];
  ulimits?: Service['ulimits'];
  logging?: Service['logging'];
  // Privilege-widening settings, each only when the release sets it (absent: Docker's default). The
  // institution's policy (agent/policy.ts) has allowed them before a container is ever created.
  capAdd?: string[];
  capDrop?: string[];
  privileged?: boolean;
  /** Instead of the stack's networks (then `networks` and `aliases` are empty). */
  networkMode?: NonNullable<Service['networkMode']>;
  pid?: NonNullable<Service['pid']>;
  ipc?: NonNullable<Service['ipc']>;
  devices?: NonNullable<Service['devices']>;
  sysctls?: Record<string, string>;
}

/** A secret's or config's value prepared on this host: the file mounted read-only, and its digest (kept locally, never sent). */
export interface ProvidedFile {
  path: string;
  digest: string;
}

/** Finds the prepared file for a service's secret or config; undefined when the bank has not provided it. */
export type FileProvider = (kind: 'secret' | 'config', ref: FileRef) => ProvidedFile | undefined;

export interface ObservedContainer {
  id: string;
  name: string;
  labels: Record<string, string>;
  status: ContainerStatus;
  health: Health;
  exitCode: number | null;
  restartCount: number;
  startedAt: string | null;
  image: string;
  /**
   * The networks it is attached to (engine names), each with the aliases it
   * was given there (not the short id Docker adds to every container). A
   * stopped container keeps its attachments; a drained one has no aliases.
   */
  networks: Record<string, string[]>;
  /** Its IPv4 address on each network it is attached to (checks reach services by them). */
  addresses?: Record<string, string>;
}

export interface ObservedNetwork {
  id: string;
  name: string;
  labels: Record<string, string>;
}

export interface ObservedVolume {
  name: string;
  labels: Record<string, string>;
}

/** What observe() returns: everything this agent owns on the engine. */
export interface Current {
  containers: ObservedContainer[];
  networks: ObservedNetwork[];
  volumes: ObservedVolume[];
  /** Digest refs present locally among those the desired state needs. */
  images: string[];
}

/** One service replica as it should exist. */
export interface DesiredContainer {
  stack: string;
  service: string;
  replica: number;
  release: string;
  spec: ContainerSpec;
  configHash: string;
  dependsOn: Service['dependsOn'];
  updateOrder: Service['updateOrder'];
  hasHealthcheck: boolean;
}

/**
 * A verification job (x-ferry.verify): a one-shot container run once the rest
 * of the release is up and healthy, on the stack's networks without an alias.
 */
export interface DesiredJob {
  stack: string;
  service: string;
  release: string;
  /** The container spec without its run-specific name and label (see `jobContainer`). */
  spec: ContainerSpec;
  configHash: string;
  timeoutMs: number;
}

export interface DesiredStack {
  stack: string;
  version: string;
  networks: { name: string; internal: boolean; labels?: Record<string, string> }[];
  /** Named volumes of the release and each replica's anonymous ones. */
  volumes: string[];
  /** The release's labels for some of `volumes`. */
  volumeLabels?: Record<string, Record<string, string>>;
  containers: DesiredContainer[];
  /** Its verification jobs (absent: none). */
  jobs?: DesiredJob[];
}

/** The run of a release's verification jobs under one directive: jobs run again for each apply. */
export const jobRun = (seq: number, digest: string) => `${seq}.${digest.replace(/^sha256:/, '').slice(0, 12)}`;

/** Whether a container is a verification job's. */
export const isJob = (c: { labels: Record<string, string> }) => c.labels[LABEL.jobRun] !== undefined;

/** The container spec of one run of a job: its own name and run label, so a crash mid-run finds the same container. */
export function jobContainer(prefix: string, job: DesiredJob, run: string): ContainerSpec {
  return { ...job.spec, name: `${prefix}_${job.stack}_${job.service}_job_${run.replace(/\./g, '_')}`, labels: { ...job.spec.labels, [LABEL.jobRun]: run } };
}

/** Short, stable, engine-unique prefix for this agent's objects (several agents may share one engine). */
export function agentPrefix(agentId: string): string {
  return `ferry_${agentId.replace(/^agt_/, '').slice(0, 8)}`;
}

export const networkName = (prefix: string, stack: string, net: string) => `${prefix}_${stack}_${net}`;
export const volumeName = (prefix: string, stack: string, vol: string) => `${prefix}_${stack}_${vol}`;
/** A replica's own volume for an anonymous mount at `target`: the same name across updates, so its data stays. */
export const anonymousVolumeName = (prefix: string, stack: string, service: string, replica: number, target: string) =>
  `${prefix}_${stack}_${service}_${replica}_anon_${createHash('sha256').update(target).digest('hex').slice(0, 12)}`;

/** The hash over everything that shapes a container except its own name and Ferry's bookkeeping labels. */
export function configHash(spec: Omit<ContainerSpec, 'name'>): string {
  const { labels, ...rest } = spec;
  const userLabels = Object.fromEntries(Object.entries(labels).filter(([k]) => !k.startsWith('ferry.')));
  return createHash('sha256').update(canonicalJson({ ...rest, labels: userLabels })).digest('hex');
}

/**
 * The containers, networks and volumes a release asks for on this agent.
 * `files` finds the prepared secrets and configs. `pull` maps a pinned image
 * to the reference it is pulled and run from (the bank's registry, same
 * digest); the config hash stays the pinned image's, so running from a
 * standby instead of the primary recreates nothing. `scale`: the replicas
 * of autoscaled services, by service (clamped to their signed bounds).
 */
export function desiredStack(agentId: string, release: Release, files: FileProvider = () => undefined, pull: Readonly<Record<string, string>> = {}, scale: Readonly<Record<string, number>> = {}): DesiredStack {
  const prefix = agentPrefix(agentId);
  const stack = release.stack;
  const declared = Object.entries(release.networks).map(([n, v]) => ({ name: networkName(prefix, stack, n), internal: v.internal, ...(v.labels && { labels: v.labels }) }));
  const usesDefault = Object.values(release.services).some((s) => !s.networkMode && (s.networks.length === 0 || s.networks.includes('default')));
  const networks = usesDefault && !release.networks.default ? [{ name: networkName(prefix, stack, 'default'), internal: false }, ...declared] : declared;
  const volumes = Object.keys(release.volumes).map((v) => volumeName(prefix, stack, v));
  const volumeLabels = Object.fromEntries(Object.entries(release.volumes).flatMap(([v, x]) => (x.labels ? [[volumeName(prefix, stack, v), x.labels]] : [])));
  const containers: DesiredContainer[] = [];
  const jobs: DesiredJob[] = [];
  const missing: string[] = [];
  for (const [service, s] of Object.entries(release.services).sort(([a], [b]) => a.localeCompare(b))) {
    // A service with a network mode (host, none, bridge) joins none of the stack's networks, and has no alias there.
    const nets = s.networkMode ? [] : (s.networks.length ? s.networks : ['default']).map((n) => networkName(prefix, stack, n));
    const fileMounts = [...(s.secrets ?? []).map((f) => ['secret', f] as const), ...(s.configs ?? []).map((f) => ['config', f] as const)].flatMap(([kind, ref]) => {
      const got = files(kind, ref);
      if (!got) missing.push(`${kind} ${ref.name} (for ${service})`);
      return got ? [{ type: 'bind' as const, source: got.path, target: ref.target, readOnly: true }] : [];
    });
    const replicaMounts = (replica: number): ContainerSpec['mounts'] =>
      s.volumes.map((m) => {
        const { type, source, ...rest } = m;
        if (type === 'anonymous') return { ...rest, type: 'volume', source: anonymousVolumeName(prefix, stack, service, replica, m.target) };
        if (type === 'volume') return { ...rest, type, source: volumeName(prefix, stack, source) };
        return { ...rest, type, source };
      });
    const base = (replica: number): Omit<ContainerSpec, 'name'> => defined({
      image: s.image,
      labels: { ...s.labels },
      env: Object.entries(s.environment)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([k, v]) => `${k}=${v}`),
      ...(s.command ? { command: s.command } : {}),
      ...(s.entrypoint ? { entrypoint: s.entrypoint } : {}),
      ...(s.user ? { user: s.user } : {}),
      ...(s.workingDir ? { workingDir: s.workingDir } : {}),
      ports: s.ports,
      mounts: [...replicaMounts(replica), ...fileMounts],
      networks: nets,
      aliases: s.networkMode ? [] : [service],
      restart: s.restart,
      ...(s.healthcheck ? { healthcheck: s.healthcheck } : {}),
      stopGraceMs: s.stopGracePeriodMs,
      expose: s.expose,
      hostname: s.hostname,
      domainname: s.domainname,
      stopSignal: s.stopSignal,
      stdinOpen: s.stdinOpen,
      tty: s.tty,
      init: s.init,
      readOnly: s.readOnly,
      extraHosts: s.extraHosts,
      dns: s.dns,
      dnsOptions: s.dnsOptions,
      dnsSearch: s.dnsSearch,
      groupAdd: s.groupAdd,
      shmSizeBytes: s.shmSizeBytes,
      tmpfs: s.tmpfs,
      securityOpt: s.securityOpt,
      resources: s.resources,
      ulimits: s.ulimits,
      logging: s.logging,
      // privilege-widening settings: the institution's policy (agent/policy.ts) has allowed them before any container is created
      capAdd: s.capAdd,
      capDrop: s.capDrop,
      privileged: s.privileged,
      networkMode: s.networkMode,
      pid: s.pid,
      ipc: s.ipc,
      devices: s.devices,
      sysctls: s.sysctls,
    });
    if (s.verify) {
      // A job runs once and exits: no restart, no alias, and none of the service's replicas.
      const spec = { ...base(0), restart: 'no' as const, aliases: [] };
      for (const m of spec.mounts) if (m.type === 'volume' && !volumes.includes(m.source)) volumes.push(m.source);
      const hash = configHash(spec);
      const labels = { ...spec.labels, [LABEL.agent]: agentId, [LABEL.stack]: stack, [LABEL.service]: service, [LABEL.replica]: '0', [LABEL.release]: release.version, [LABEL.configHash]: hash };
      jobs.push({ stack, service, release: release.version, spec: { ...spec, image: pull[s.image] ?? s.image, labels, name: '' }, configHash: hash, timeoutMs: s.verify.timeoutMs });
      continue;
    }
    // `scale`: replicas the autoscaler chose inside the service's signed bounds (agent/autoscale).
    const replicas = s.autoscale && scale[service] !== undefined ? Math.min(s.autoscale.max, Math.max(s.autoscale.min, scale[service])) : s.replicas;
    for (let replica = 0; replica < replicas; replica++) {
      const spec = base(replica);
      for (const m of spec.mounts) if (m.type === 'volume' && !volumes.includes(m.source)) volumes.push(m.source);
      // Anonymous volumes differ per replica by name only: hash replica 0's spec, so replicas share one hash.
      const hash = configHash(replica === 0 || !s.volumes.some((m) => m.type === 'anonymous') ? spec : base(0));
      const labels = {
        ...spec.labels,
        [LABEL.agent]: agentId,
        [LABEL.stack]: stack,
        [LABEL.service]: service,
        [LABEL.replica]: String(replica),
        [LABEL.release]: release.version,
        [LABEL.configHash]: hash,
      };
      containers.push({
        stack,
        service,
        replica,
        release: release.version,
        // Run from where the image was placed (same digest); hashed as pinned.
        spec: { ...spec, image: pull[s.image] ?? s.image, labels, name: s.containerName ?? `${prefix}_${stack}_${service}_${replica}_${hash.slice(0, 8)}` },
        configHash: hash,
        dependsOn: s.dependsOn,
        updateOrder: s.updateOrder,
        hasHealthcheck: !!s.healthcheck?.test && s.healthcheck.test[0] !== 'NONE',
      });
    }
  }
  if (missing.length) throw new FerryError('FERRY_E_SECRET_MISSING', `${stack}@${release.version} needs ${[...new Set(missing)].join(', ')}`);
  return { stack, version: release.version, networks, volumes, ...(Object.keys(volumeLabels).length && { volumeLabels }), containers, ...(jobs.length && { jobs }) };
}

/** The object without its undefined properties (so specs compare and print as they hash). */
function defined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

// One model for both sides of the diff (after balena-supervisor's
// service.ts): the desired side is built from accepted releases
// (`desiredContainers`), the observed side from the engine (the Engine
// returns ObservedContainer). They meet on one value: the config hash, which
// the desired side computes from the full container spec and the observed
// side reads from the `ferry.config-hash` label it was created with.
import { createHash } from 'node:crypto';
import { canonicalJson, type Release, type Service } from '../../shared/release.js';

export const LABEL = {
  agent: 'ferry.agent',
  stack: 'ferry.stack',
  service: 'ferry.service',
  replica: 'ferry.replica',
  release: 'ferry.release',
  configHash: 'ferry.config-hash',
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
  ports: { target: number; published?: number; protocol: 'tcp' | 'udp'; hostIp?: string }[];
  mounts: { type: 'volume' | 'bind'; source: string; target: string; readOnly: boolean }[];
  /** Engine network names; the container joins each with its service name as alias. */
  networks: string[];
  aliases: string[];
  restart: Service['restart'];
  healthcheck?: { test: string[]; intervalMs?: number; timeoutMs?: number; retries?: number; startPeriodMs?: number };
  stopGraceMs: number;
}

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

export interface DesiredStack {
  stack: string;
  version: string;
  networks: { name: string; internal: boolean }[];
  volumes: string[];
  containers: DesiredContainer[];
}

/** Short, stable, engine-unique prefix for this agent's objects (several agents may share one engine). */
export function agentPrefix(agentId: string): string {
  return `ferry_${agentId.replace(/^agt_/, '').slice(0, 8)}`;
}

export const networkName = (prefix: string, stack: string, net: string) => `${prefix}_${stack}_${net}`;
export const volumeName = (prefix: string, stack: string, vol: string) => `${prefix}_${stack}_${vol}`;

/** The hash over everything that shapes a container except its own name and Ferry's bookkeeping labels. */
export function configHash(spec: Omit<ContainerSpec, 'name'>): string {
  const { labels, ...rest } = spec;
  const userLabels = Object.fromEntries(Object.entries(labels).filter(([k]) => !k.startsWith('ferry.')));
  return createHash('sha256').update(canonicalJson({ ...rest, labels: userLabels })).digest('hex');
}

/**
 * The containers, networks and volumes a release asks for on this agent.
 * `pull` maps a pinned image to the reference it is pulled and run from (the
 * bank's registry, same digest); the config hash stays the pinned image's, so
 * running from a standby instead of the primary recreates nothing.
 */
export function desiredStack(agentId: string, release: Release, pull: Readonly<Record<string, string>> = {}): DesiredStack {
  const prefix = agentPrefix(agentId);
  const stack = release.stack;
  const declared = Object.entries(release.networks).map(([n, v]) => ({ name: networkName(prefix, stack, n), internal: v.internal }));
  const usesDefault = Object.values(release.services).some((s) => s.networks.length === 0 || s.networks.includes('default'));
  const networks = usesDefault && !release.networks.default ? [{ name: networkName(prefix, stack, 'default'), internal: false }, ...declared] : declared;
  const volumes = Object.keys(release.volumes).map((v) => volumeName(prefix, stack, v));
  const containers: DesiredContainer[] = [];
  for (const [service, s] of Object.entries(release.services).sort(([a], [b]) => a.localeCompare(b))) {
    const nets = (s.networks.length ? s.networks : ['default']).map((n) => networkName(prefix, stack, n));
    const base: Omit<ContainerSpec, 'name'> = {
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
      mounts: s.volumes.map((m) => ({ ...m, source: m.type === 'volume' ? volumeName(prefix, stack, m.source) : m.source })),
      networks: nets,
      aliases: [service],
      restart: s.restart,
      ...(s.healthcheck ? { healthcheck: s.healthcheck } : {}),
      stopGraceMs: s.stopGracePeriodMs,
    };
    const hash = configHash(base);
    base.image = pull[s.image] ?? s.image;
    for (let replica = 0; replica < s.replicas; replica++) {
      const labels = {
        ...base.labels,
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
        spec: { ...base, labels, name: `${prefix}_${stack}_${service}_${replica}_${hash.slice(0, 8)}` },
        configHash: hash,
        dependsOn: s.dependsOn,
        updateOrder: s.updateOrder,
        hasHealthcheck: !!s.healthcheck,
      });
    }
  }
  return { stack, version: release.version, networks, volumes, containers };
}

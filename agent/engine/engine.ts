// The narrow seam between Ferry and a container engine. Everything the agent
// does to Docker goes through this interface; only docker.ts implements it
// against a real engine (and is the only module that imports dockerode).
// Everything here speaks Ferry's model (agent/reconcile/model.ts), not the
// Docker API's shapes.
import type { EngineFacts } from '../../shared/protocol.js';
import type { ContainerSpec, ObservedContainer, ObservedNetwork, ObservedVolume } from '../reconcile/model.js';

export interface PullAuth {
  username: string;
  password: string;
}

export interface EngineEvent {
  /** container, network, volume, image */
  type: string;
  /** die, stop, start, destroy, health_status: healthy, ... */
  action: string;
  id: string;
  labels: Record<string, string>;
}

/** One sample of a container's resource use (agent/autoscale turns two into a CPU share). */
export interface ContainerStats {
  /** Cumulative CPU time the container used, ns. */
  cpuNanos: number;
  /** Memory in use without the page cache, bytes. */
  memoryBytes: number;
  /** Its memory limit (the host's memory without one), bytes. */
  memoryLimitBytes: number;
}

export interface ExecResult {
  exitCode: number;
  /** The first bytes of what it wrote (stdout and stderr). */
  output: string;
}

export interface Engine {
  /** Engine version and inventory, for the hub's view of the host. */
  info(): Promise<EngineFacts>;

  /** Containers carrying label `key=value` (Ferry passes ferry.agent=<id>), with state, health and network aliases. */
  listContainers(label: { key: string; value: string }): Promise<ObservedContainer[]>;
  listNetworks(label: { key: string; value: string }): Promise<ObservedNetwork[]>;
  listVolumes(label: { key: string; value: string }): Promise<ObservedVolume[]>;

  /** Whether an image `repo@sha256:…` is present locally. */
  hasImage(ref: string): Promise<boolean>;
  /**
   * Pulls `repo@sha256:…` and checks the engine now holds exactly that digest
   * (FERRY_E_IMAGE_DIGEST otherwise). Registry errors map to catalogue codes.
   */
  pullImage(ref: string, auth?: PullAuth, signal?: AbortSignal): Promise<void>;
  /** Free bytes on the filesystem holding the engine's data, or null if unknown. */
  freeDiskBytes(): Promise<number | null>;

  createNetwork(name: string, labels: Record<string, string>, internal: boolean): Promise<string>;
  removeNetwork(idOrName: string): Promise<void>;
  createVolume(name: string, labels: Record<string, string>): Promise<void>;

  /** Creates (does not start) a container from the spec; returns its id. */
  createContainer(spec: ContainerSpec): Promise<string>;
  startContainer(id: string): Promise<void>;
  /**
   * Makes the container carry exactly `aliases` on each of `networks` (the
   * short id Docker adds aside): joins those it is not attached to, and
   * re-joins (disconnect, then connect with the aliases; Docker cannot change
   * an endpoint's aliases in place) those where its aliases differ, a network
   * at a time. Networks already right are left alone, so it is idempotent.
   * With no aliases it is how a container is drained: the service name stops
   * resolving to it while it stays reachable (Docker 20.10 hands the address
   * it just released back to it, the lowest free one). A missing container or
   * network is FERRY_E_NOT_FOUND.
   */
  setAliases(id: string, networks: string[], aliases: string[]): Promise<void>;
  /** Stops with SIGTERM, then SIGKILL after `graceMs`. A stopped or missing container is fine. */
  stopContainer(id: string, graceMs: number): Promise<void>;
  /** Removes a container (not its named volumes). A missing container is fine. */
  removeContainer(id: string): Promise<void>;

  /** The last `lines` lines a container wrote, stdout and stderr in order (a verification job's output). */
  tail(id: string, lines: number): Promise<string[]>;
  /**
   * Runs `cmd` in a running container (a command check) and waits for it, at
   * most `timeoutMs` (then FERRY_E_CHECK_TIMEOUT; the engine cannot kill an
   * exec, so the process may live on in the container).
   */
  probe(id: string, cmd: string[], timeoutMs: number): Promise<ExecResult>;
  /** One sample of a running container's CPU and memory use; null when it is not running. */
  usage(id: string): Promise<ContainerStats | null>;

  /** Engine events for objects carrying the label, until `signal` aborts. */
  events(label: { key: string; value: string }, signal: AbortSignal): AsyncIterable<EngineEvent>;
}

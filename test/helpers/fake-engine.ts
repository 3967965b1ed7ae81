// An in-memory Engine for fast unit tests of pure logic (planner, executor).
// It keeps the semantics of the Docker adapter (agent/engine/docker.ts) that
// the reconciler relies on: idempotent creates, missing objects tolerated by
// stop/remove, labels kept, status and health transitions as Docker 20.10
// reports them (create → created; start → running with health `starting` when
// the spec has a healthcheck, else `none`; stop → exited, health `unhealthy`),
// and network attachments with their aliases (kept by a stopped container).
// Integration tests use the real engine; this is never a stand-in for it.
//
// Test controls: setHealth, crash, failPull, failCall, addImage, removeImage,
// freeBytes, a `calls` log of every operation that changes something (plus
// pulls), optional per-call latency. Ids are deterministic (`ctr-1`, `net-1`).
import { FerryError, type ErrorCode } from '../../shared/errors.js';
import type { EngineFacts } from '../../shared/protocol.js';
import type { ContainerStats, Engine, EngineEvent, ExecResult, PullAuth } from '../../agent/engine/engine.js';
import { LABEL, type ContainerSpec, type Health, type ObservedContainer, type ObservedNetwork, type ObservedVolume } from '../../agent/reconcile/model.js';

type Label = { key: string; value: string };

export interface FakeContainer extends ObservedContainer {
  spec: ContainerSpec;
}

export interface FakeNetwork extends ObservedNetwork {
  internal: boolean;
}

export interface FakeEngineOptions {
  /** Delay before each call, ms: a number, or per call (given the `calls` entry, e.g. `pull repo@sha256:…`). */
  latencyMs?: number | ((call: string) => number);
  /** What freeDiskBytes() answers; null means unknown. Default 100 GiB. */
  freeBytes?: number | null;
  /** Images present from the start. */
  images?: string[];
  /** Clock for startedAt; default a deterministic one ticking a second per call. */
  now?: () => Date;
}

const DIGEST_REF = /^[^@\s]+@sha256:[0-9a-f]{64}$/;

export class FakeEngine implements Engine {
  readonly containers = new Map<string, FakeContainer>();
  readonly networks = new Map<string, FakeNetwork>();
  readonly volumes = new Map<string, ObservedVolume>();
  readonly images = new Set<string>();
  /** Operations in the order they were made: `pull <ref>`, `create <name>`, `start <name>`, `stop <name>`, … */
  readonly calls: string[] = [];
  freeBytes: number | null;

  private readonly latency: FakeEngineOptions['latencyMs'];
  private readonly now: () => Date;
  private readonly pullFailures = new Map<string, { code: ErrorCode; times: number }>();
  private readonly callFailures: { match: string | RegExp; code: ErrorCode; times: number }[] = [];
  private readonly listeners = new Set<(e: EngineEvent) => void>();
  private seq = { ctr: 0, net: 0 };

  constructor(opts: FakeEngineOptions = {}) {
    this.latency = opts.latencyMs;
    this.freeBytes = opts.freeBytes === undefined ? 100 * 2 ** 30 : opts.freeBytes;
    for (const i of opts.images ?? []) this.images.add(i);
    let tick = Date.parse('2024-01-01T00:00:00Z');
    this.now = opts.now ?? (() => new Date((tick += 1000)));
  }

  // ---- test controls ------------------------------------------------------

  addImage(ref: string): void {
    this.images.add(ref);
  }

  removeImage(ref: string): void {
    this.images.delete(ref);
  }

  /** The next `times` pulls of `ref` fail with `code` (default: every pull). */
  failPull(ref: string, code: ErrorCode, times = Infinity): void {
    this.pullFailures.set(ref, { code, times });
  }

  /** The next `times` calls whose `calls` entry equals (string) or matches (RegExp) `match` fail with `code`, changing nothing. */
  failCall(match: string | RegExp, code: ErrorCode, times = 1): void {
    this.callFailures.push({ match, code, times });
  }

  /** Sets a running container's health, as its healthcheck would, with the engine's event. */
  setHealth(idOrName: string, health: Health): void {
    const c = this.mustFind(idOrName);
    c.health = health;
    this.emit(c, `health_status: ${health}`);
  }

  /** The container's process exits with `exitCode`; its restart policy applies as Docker's would. */
  crash(idOrName: string, exitCode: number): void {
    const c = this.mustFind(idOrName);
    if (c.status !== 'running') throw new Error(`fake engine: ${c.name} is ${c.status}, not running`);
    this.exited(c, exitCode);
    const r = c.spec.restart;
    if (r === 'always' || r === 'unless-stopped' || (r === 'on-failure' && exitCode !== 0)) {
      c.restartCount++;
      this.running(c);
    }
  }

  /** A container by id or name (undefined when absent). */
  container(idOrName: string): FakeContainer | undefined {
    return this.containers.get(idOrName) ?? [...this.containers.values()].find((c) => c.name === idOrName);
  }

  // ---- Engine -------------------------------------------------------------

  async info(): Promise<EngineFacts> {
    await this.enter('info', false);
    const all = [...this.containers.values()];
    return {
      version: '20.10.24-fake',
      apiVersion: '1.41',
      os: 'Fake OS',
      arch: 'x86_64',
      kernel: '6.0.0-fake',
      containers: all.length,
      containersRunning: all.filter((c) => c.status === 'running').length,
      images: this.images.size,
      storageDriver: 'fake',
    };
  }

  async listContainers(label: Label): Promise<ObservedContainer[]> {
    await this.enter('listContainers', false);
    return [...this.containers.values()].filter((c) => c.labels[label.key] === label.value).map(observed);
  }

  async listNetworks(label: Label): Promise<ObservedNetwork[]> {
    await this.enter('listNetworks', false);
    return [...this.networks.values()].filter((n) => n.labels[label.key] === label.value).map((n) => ({ id: n.id, name: n.name, labels: { ...n.labels } }));
  }

  async listVolumes(label: Label): Promise<ObservedVolume[]> {
    await this.enter('listVolumes', false);
    return [...this.volumes.values()].filter((v) => v.labels[label.key] === label.value).map((v) => ({ name: v.name, labels: { ...v.labels } }));
  }

  async hasImage(ref: string): Promise<boolean> {
    await this.enter(`hasImage ${ref}`, false);
    return this.images.has(ref);
  }

  async pullImage(ref: string, _auth?: PullAuth, signal?: AbortSignal): Promise<void> {
    if (!DIGEST_REF.test(ref)) throw new FerryError('FERRY_E_POLICY_DIGEST', ref);
    await this.enter(`pull ${ref}`, true, signal);
    const f = this.pullFailures.get(ref);
    if (f && f.times > 0) {
      f.times--;
      throw new FerryError(f.code, ref);
    }
    this.images.add(ref);
  }

  async freeDiskBytes(): Promise<number | null> {
    await this.enter('freeDiskBytes', false);
    return this.freeBytes;
  }

  async createNetwork(name: string, labels: Record<string, string>, internal: boolean): Promise<string> {
    await this.enter(`createNetwork ${name}`);
    const existing = this.network(name);
    if (existing) {
      if (sameLabels(existing.labels, labels)) return existing.id;
      throw new FerryError('FERRY_E_CONFLICT', `network ${name} exists with other labels`);
    }
    const id = `net-${++this.seq.net}`;
    this.networks.set(id, { id, name, labels: { ...labels }, internal });
    return id;
  }

  async removeNetwork(idOrName: string): Promise<void> {
    await this.enter(`removeNetwork ${this.network(idOrName)?.name ?? idOrName}`);
    const n = this.network(idOrName);
    if (!n) return;
    // Docker 20.10 refuses only while a running container has an endpoint there; stopped ones are left dangling.
    const users = [...this.containers.values()].filter((c) => c.status === 'running' && Object.hasOwn(c.networks, n.name));
    if (users.length) throw new FerryError('FERRY_E_ENGINE_FAILED', `docker: network ${n.name} has active endpoints (${users.map((c) => c.name).join(', ')})`);
    this.networks.delete(n.id);
  }

  async createVolume(name: string, labels: Record<string, string>): Promise<void> {
    await this.enter(`createVolume ${name}`);
    if (!this.volumes.has(name)) this.volumes.set(name, { name, labels: { ...labels } });
  }

  async createContainer(spec: ContainerSpec): Promise<string> {
    await this.enter(`create ${spec.name}`);
    const existing = this.container(spec.name);
    if (existing) {
      const hash = spec.labels[LABEL.configHash];
      if (hash && existing.labels[LABEL.configHash] === hash) return existing.id;
      throw new FerryError('FERRY_E_CONFLICT', `container ${spec.name} exists with another configuration`);
    }
    if (!this.images.has(spec.image)) throw new FerryError('FERRY_E_NOT_FOUND', `docker: No such image: ${spec.image}`);
    const missing = spec.networks.find((n) => !this.network(n));
    if (missing) throw new FerryError('FERRY_E_NOT_FOUND', `docker: network ${missing} not found`);
    for (const m of spec.mounts) if (m.type === 'volume' && !this.volumes.has(m.source)) this.volumes.set(m.source, { name: m.source, labels: {} }); // as Docker does
    const id = `ctr-${++this.seq.ctr}`;
    const c: FakeContainer = {
      id,
      name: spec.name,
      labels: { ...spec.labels },
      status: 'created',
      health: 'none',
      exitCode: null,
      restartCount: 0,
      startedAt: null,
      image: spec.image,
      spec: structuredClone(spec),
      networks: Object.fromEntries(spec.networks.map((n) => [n, [...spec.aliases]])),
    };
    this.containers.set(id, c);
    this.emit(c, 'create');
    return id;
  }

  async startContainer(id: string): Promise<void> {
    await this.enter(`start ${this.nameOf(id)}`);
    const c = this.container(id);
    if (!c) throw new FerryError('FERRY_E_NOT_FOUND', `docker: No such container: ${id}`);
    if (c.status === 'running') return;
    const gone = Object.keys(c.networks).find((n) => !this.network(n));
    if (gone) throw new FerryError('FERRY_E_NOT_FOUND', `docker: network ${gone} not found`);
    this.running(c);
  }

  async setAliases(id: string, networks: string[], aliases: string[]): Promise<void> {
    await this.enter(`setAliases ${this.nameOf(id)} ${aliases.join(',') || '-'}`);
    const c = this.container(id);
    if (!c) throw new FerryError('FERRY_E_NOT_FOUND', `docker: No such container: ${id}`);
    const missing = networks.find((n) => !this.network(n));
    if (missing) throw new FerryError('FERRY_E_NOT_FOUND', `docker: network ${missing} not found`);
    for (const n of networks) c.networks[n] = [...aliases];
  }

  async stopContainer(id: string, _graceMs: number): Promise<void> {
    await this.enter(`stop ${this.nameOf(id)}`);
    const c = this.container(id);
    if (!c || c.status !== 'running') return;
    this.exited(c, 0);
    this.emit(c, 'stop');
  }

  async removeContainer(id: string): Promise<void> {
    await this.enter(`remove ${this.nameOf(id)}`);
    const c = this.container(id);
    if (!c) return;
    if (c.status === 'running') this.exited(c, 137); // force: SIGKILL
    this.containers.delete(c.id);
    this.emit(c, 'destroy');
  }

  /** What logs() answers per container name (default: none). */
  readonly logLines = new Map<string, string[]>();

  async tail(id: string, lines: number): Promise<string[]> {
    await this.enter(`logs ${this.nameOf(id)}`, false);
    const c = this.container(id);
    if (!c) throw new FerryError('FERRY_E_NOT_FOUND', `docker: No such container: ${id}`);
    return (this.logLines.get(c.name) ?? []).slice(-lines);
  }

  async probe(id: string, cmd: string[], _timeoutMs: number): Promise<ExecResult> {
    await this.enter(`exec ${this.nameOf(id)} ${cmd.join(' ')}`, false);
    const c = this.container(id);
    if (!c || c.status !== 'running') throw new FerryError('FERRY_E_CONFLICT', `docker: container ${id} is not running`);
    return { exitCode: 0, output: '' };
  }

  async usage(id: string): Promise<ContainerStats | null> {
    const c = this.container(id);
    return c && c.status === 'running' ? { cpuNanos: 0, memoryBytes: 0, memoryLimitBytes: 2 ** 30 } : null;
  }

  async *events(label: Label, signal: AbortSignal): AsyncIterable<EngineEvent> {
    const queue: EngineEvent[] = [];
    let wake: (() => void) | undefined;
    const listener = (e: EngineEvent) => {
      if (e.labels[label.key] !== label.value) return;
      queue.push(e);
      wake?.();
    };
    const onAbort = () => wake?.();
    this.listeners.add(listener);
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      while (!signal.aborted) {
        const e = queue.shift();
        if (e) yield e;
        else await new Promise<void>((r) => (wake = r));
        wake = undefined;
      }
    } finally {
      this.listeners.delete(listener);
      signal.removeEventListener('abort', onAbort);
    }
  }

  // ---- internals ----------------------------------------------------------

  /** Logs the call (when it changes something), waits the latency, applies injected failures. */
  private async enter(call: string, logged = true, signal?: AbortSignal): Promise<void> {
    if (logged) this.calls.push(call);
    const ms = typeof this.latency === 'function' ? this.latency(call) : (this.latency ?? 0);
    if (ms > 0) await delay(ms, signal);
    signal?.throwIfAborted();
    const f = this.callFailures.find((x) => x.times > 0 && (typeof x.match === 'string' ? x.match === call : x.match.test(call)));
    if (f) {
      f.times--;
      throw new FerryError(f.code, `injected failure: ${call}`);
    }
  }

  private network(idOrName: string): FakeNetwork | undefined {
    return this.networks.get(idOrName) ?? [...this.networks.values()].find((n) => n.name === idOrName);
  }

  private nameOf(id: string): string {
    return this.container(id)?.name ?? id;
  }

  private mustFind(idOrName: string): FakeContainer {
    const c = this.container(idOrName);
    if (!c) throw new Error(`fake engine: no container ${idOrName}`);
    return c;
  }

  private running(c: FakeContainer): void {
    c.status = 'running';
    c.health = c.spec.healthcheck ? 'starting' : 'none';
    c.exitCode = null;
    c.startedAt = this.now().toISOString();
    this.emit(c, 'start');
  }

  private exited(c: FakeContainer, exitCode: number): void {
    c.status = 'exited';
    c.exitCode = exitCode;
    if (c.spec.healthcheck) c.health = 'unhealthy'; // Docker 20.10 marks a stopped container unhealthy
    this.emit(c, 'die', { exitCode: String(exitCode) });
  }

  private emit(c: FakeContainer, action: string, extra: Record<string, string> = {}): void {
    // Docker's container events carry the labels plus name and image among the actor's attributes.
    const e: EngineEvent = { type: 'container', action, id: c.id, labels: { ...c.labels, name: c.name, image: c.image, ...extra } };
    for (const l of this.listeners) l(e);
  }
}

function observed(c: FakeContainer): ObservedContainer {
  const { spec: _spec, ...o } = c;
  return { ...o, labels: { ...o.labels }, networks: Object.fromEntries(Object.entries(o.networks).map(([n, a]) => [n, [...a]])) };
}

function sameLabels(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => a[k] === b[k]);
}

function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(done, ms);
    function done() {
      signal?.removeEventListener('abort', abort);
      resolve();
    }
    function abort() {
      clearTimeout(t);
      reject(signal!.reason);
    }
    signal?.addEventListener('abort', abort, { once: true });
  });
}

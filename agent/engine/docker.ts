// The Engine implemented against a real Docker engine, through dockerode.
// The only module that imports dockerode; it speaks Ferry's model outward and
// turns every engine failure into a catalogue code (`engineError`).
import { statfs } from 'node:fs/promises';
import './dockerode-deferred.js'; // before dockerode: defers ssh2 and gRPC, which the agent does not use
import Docker from 'dockerode';
import { FerryError, type ErrorCode } from '../../shared/errors.js';
import type { EngineFacts } from '../../shared/protocol.js';
import { LABEL, type ContainerSpec, type ContainerStatus, type Health, type ObservedContainer, type ObservedNetwork, type ObservedVolume } from '../reconcile/model.js';
import type { ContainerStats, Engine, EngineEvent, ExecResult, PullAuth } from './engine.js';
import * as ops from './docker-operations.js';
import type { ContainerSample, ExecRun, LogLine, LogQuery, OperationsEngine } from './operations.js';

export interface DockerEngineOptions {
  /** unix socket path; by default DOCKER_HOST or /var/run/docker.sock. */
  socketPath?: string;
  /** Timeout for each engine call, ms (pulls and event streams have none; stops add their grace). */
  timeoutMs?: number;
}

type Label = { key: string; value: string };
const INSPECT_CONCURRENCY = 8;
const DIGEST_REF = /^([^@\s]+)@(sha256:[0-9a-f]{64})$/;

export class DockerEngine implements Engine, OperationsEngine {
  /** For short calls: modem's idle timeout applies. */
  private readonly docker: Docker;
  /** For pulls, event streams and stops, which may be idle longer: no idle timeout, bounded by signals. */
  private readonly slow: Docker;
  private readonly timeoutMs: number;

  constructor(opts: DockerEngineOptions = {}) {
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    const base = opts.socketPath ? { socketPath: opts.socketPath } : {};
    this.docker = new Docker({ ...base, timeout: this.timeoutMs });
    this.slow = new Docker(base);
  }

  async info(): Promise<EngineFacts> {
    try {
      const [v, i] = await Promise.all([this.docker.version(), this.docker.info()]);
      return {
        version: String(v.Version ?? ''),
        apiVersion: String(v.ApiVersion ?? ''),
        os: String(i.OperatingSystem ?? v.Os ?? ''),
        arch: String(i.Architecture ?? v.Arch ?? ''),
        kernel: String(i.KernelVersion ?? v.KernelVersion ?? ''),
        containers: Number(i.Containers ?? 0),
        containersRunning: Number(i.ContainersRunning ?? 0),
        images: Number(i.Images ?? 0),
        storageDriver: String(i.Driver ?? ''),
      };
    } catch (err) {
      throw engineError(err);
    }
  }

  async listContainers(label: Label): Promise<ObservedContainer[]> {
    try {
      const list = await this.docker.listContainers({ all: true, filters: { label: [`${label.key}=${label.value}`] } });
      const seen = await mapBounded(list, INSPECT_CONCURRENCY, async (c) => {
        try {
          return observed(await this.docker.getContainer(c.Id).inspect());
        } catch (err) {
          if (status(err) === 404) return undefined; // removed between list and inspect
          throw err;
        }
      });
      return seen.filter((c): c is ObservedContainer => c !== undefined);
    } catch (err) {
      throw engineError(err);
    }
  }

  async listNetworks(label: Label): Promise<ObservedNetwork[]> {
    try {
      const list = await this.docker.listNetworks({ filters: { label: [`${label.key}=${label.value}`] } });
      return list.map((n) => ({ id: n.Id, name: n.Name, labels: n.Labels ?? {} }));
    } catch (err) {
      throw engineError(err);
    }
  }

  async listVolumes(label: Label): Promise<ObservedVolume[]> {
    try {
      const res = await this.docker.listVolumes({ filters: { label: [`${label.key}=${label.value}`] } });
      return (res.Volumes ?? []).map((v) => ({ name: v.Name, labels: v.Labels ?? {} }));
    } catch (err) {
      throw engineError(err);
    }
  }

  async hasImage(ref: string): Promise<boolean> {
    try {
      await this.docker.getImage(ref).inspect();
      return true;
    } catch (err) {
      if (status(err) === 404) return false;
      throw engineError(err);
    }
  }

  async pullImage(ref: string, auth?: PullAuth, signal?: AbortSignal): Promise<void> {
    const m = DIGEST_REF.exec(ref);
    if (!m) throw new FerryError('FERRY_E_POLICY_DIGEST', ref);
    const [, repo, digest] = m as unknown as [string, string, string];
    const name = repo.replace(/:[^/:]+$/, ''); // `repo:tag@digest` pulls by digest alone
    signal?.throwIfAborted();
    const authconfig = auth ? { username: auth.username, password: auth.password, serveraddress: registryOf(name) } : undefined;
    let stream: NodeJS.ReadableStream | undefined;
    const onAbort = () => (stream as { destroy?: () => void } | undefined)?.destroy?.();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      stream = await this.slow.pull(`${name}@${digest}`, { ...(authconfig ? { authconfig } : {}), ...(signal ? { abortSignal: signal } : {}) });
      const progress = await new Promise<{ error?: string; errorDetail?: { message?: string } }[]>((resolve, reject) =>
        this.slow.modem.followProgress(stream!, (err: Error | null, out: unknown[]) => (err ? reject(err) : resolve(out as never))),
      );
      signal?.throwIfAborted();
      const failed = progress.find((p) => p.error || p.errorDetail?.message);
      if (failed) throw new Error(failed.errorDetail?.message ?? failed.error);
      // The engine verifies a manifest against the digest it asked for; check it recorded exactly that.
      const image = await this.docker.getImage(`${name}@${digest}`).inspect().catch((e: unknown) => {
        if (status(e) === 404) throw new FerryError('FERRY_E_IMAGE_DIGEST', `${ref}: not stored under that digest after the pull`, { cause: e });
        throw e;
      });
      const held = image.RepoDigests ?? [];
      const want = `${familiar(name)}@${digest}`;
      if (!held.some((d) => d.endsWith(`@${digest}`) && `${familiar(d.slice(0, d.indexOf('@')))}@${digest}` === want)) {
        throw new FerryError('FERRY_E_IMAGE_DIGEST', `${ref}: the engine holds ${JSON.stringify(held)}`);
      }
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      throw engineError(err, { registry: ref });
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  async freeDiskBytes(): Promise<number | null> {
    let root: string;
    try {
      root = String((await this.docker.info()).DockerRootDir ?? '');
    } catch (err) {
      throw engineError(err);
    }
    if (!root) return null;
    try {
      const s = await statfs(root);
      return s.bavail * s.bsize;
    } catch {
      return null; // the engine's data lives in another mount namespace (agent in a container)
    }
  }

  async createNetwork(name: string, labels: Record<string, string>, internal: boolean): Promise<string> {
    try {
      const net = await this.docker.createNetwork({ Name: name, Driver: 'bridge', CheckDuplicate: true, Internal: internal, Labels: labels });
      return net.id;
    } catch (err) {
      if (status(err) !== 409) throw engineError(err);
      const existing = await this.docker.getNetwork(name).inspect().catch((e: unknown) => Promise.reject(engineError(e)));
      if (sameLabels(existing.Labels ?? {}, labels)) return existing.Id as string;
      throw new FerryError('FERRY_E_CONFLICT', `network ${name} exists with other labels`, { cause: err });
    }
  }

  async removeNetwork(idOrName: string): Promise<void> {
    try {
      await this.docker.getNetwork(idOrName).remove();
    } catch (err) {
      if (status(err) !== 404) throw engineError(err);
    }
  }

  async createVolume(name: string, labels: Record<string, string>): Promise<void> {
    try {
      // The engine answers an existing name with that volume (labels unchanged): idempotent as it is.
      await this.docker.createVolume({ Name: name, Labels: labels });
    } catch (err) {
      throw engineError(err);
    }
  }

  async createContainer(spec: ContainerSpec): Promise<string> {
    let id: string;
    let joined: string[] = spec.networks.slice(0, 1);
    try {
      id = (await this.docker.createContainer(createOptions(spec))).id;
    } catch (err) {
      if (status(err) !== 409) throw engineError(err);
      // A crash after create: the same name with the same config hash is our container.
      const existing = await this.docker.getContainer(spec.name).inspect().catch((e: unknown) => Promise.reject(engineError(e)));
      const hash = spec.labels[LABEL.configHash];
      if (!hash || existing.Config.Labels?.[LABEL.configHash] !== hash) {
        throw new FerryError('FERRY_E_CONFLICT', `container ${spec.name} exists with another configuration`, { cause: err });
      }
      id = existing.Id;
      joined = Object.keys(existing.NetworkSettings?.Networks ?? {});
    }
    try {
      for (const net of spec.networks.filter((n) => !joined.includes(n))) {
        await this.docker.getNetwork(net).connect({ Container: id, EndpointConfig: { Aliases: spec.aliases } });
      }
    } catch (err) {
      throw engineError(err);
    }
    return id;
  }

  async startContainer(id: string): Promise<void> {
    try {
      await this.docker.getContainer(id).start();
    } catch (err) {
      if (status(err) !== 304) throw engineError(err);
    }
  }

  async setAliases(id: string, networks: string[], aliases: string[]): Promise<void> {
    let info: Docker.ContainerInspectInfo;
    try {
      info = await this.docker.getContainer(id).inspect();
    } catch (err) {
      throw engineError(err);
    }
    const attached = userAliases(info);
    for (const net of networks) {
      const now = attached[net];
      if (now && now.length === aliases.length && aliases.every((a) => now.includes(a))) continue;
      const network = this.docker.getNetwork(net);
      try {
        if (now) {
          await network.disconnect({ Container: info.Id, Force: false }).catch((err: unknown) => {
            if (!/is not connected/i.test(message(err))) throw err; // left it meanwhile: connect is all that is left
          });
        }
        await network.connect({ Container: info.Id, EndpointConfig: { Aliases: aliases } });
      } catch (err) {
        throw engineError(err);
      }
    }
  }

  async stopContainer(id: string, graceMs: number): Promise<void> {
    const t = Math.ceil(graceMs / 1000);
    try {
      await this.slow.getContainer(id).stop({ t, abortSignal: AbortSignal.timeout(t * 1000 + this.timeoutMs) });
    } catch (err) {
      const s = status(err);
      if (s !== 304 && s !== 404) throw engineError(err);
    }
  }

  async removeContainer(id: string): Promise<void> {
    try {
      await this.docker.getContainer(id).remove({ force: true, v: false });
    } catch (err) {
      const s = status(err);
      if (s === 404 || (s === 409 && /already in progress/i.test(message(err)))) return;
      throw engineError(err);
    }
  }

  async tail(id: string, lines: number): Promise<string[]> {
    try {
      const c = this.docker.getContainer(id);
      const info = await c.inspect();
      const raw = (await c.logs({ stdout: true, stderr: true, follow: false, tail: lines })) as unknown as Buffer;
      const text = info.Config.Tty ? raw.toString('utf8') : demux(raw);
      return text.split('\n').filter((l, i, all) => l !== '' || i < all.length - 1).slice(-lines);
    } catch (err) {
      throw engineError(err);
    }
  }

  async probe(id: string, cmd: string[], timeoutMs: number): Promise<ExecResult> {
    const deadline = AbortSignal.timeout(timeoutMs);
    try {
      const exec = await this.docker.getContainer(id).exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true, abortSignal: deadline });
      const stream = await exec.start({ hijack: true, stdin: false, abortSignal: deadline });
      const chunks: Buffer[] = [];
      let size = 0;
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => {
          stream.destroy();
          reject(new FerryError('FERRY_E_CHECK_TIMEOUT', `${cmd[0]} did not finish in ${timeoutMs} ms`));
        };
        deadline.addEventListener('abort', onAbort, { once: true });
        stream.on('data', (d: Buffer) => {
          if (size < EXEC_OUTPUT_MAX) chunks.push(d);
          size += d.length;
        });
        stream.on('error', reject);
        stream.on('end', () => {
          deadline.removeEventListener('abort', onAbort);
          resolve();
        });
      });
      const info = await exec.inspect();
      return { exitCode: info.ExitCode ?? -1, output: demux(Buffer.concat(chunks)).slice(0, EXEC_OUTPUT_MAX) };
    } catch (err) {
      if (deadline.aborted) throw new FerryError('FERRY_E_CHECK_TIMEOUT', `${cmd[0]} did not finish in ${timeoutMs} ms`);
      throw engineError(err);
    }
  }

  async usage(id: string): Promise<ContainerStats | null> {
    try {
      // one-shot (API 1.41): one sample at once, instead of waiting a second for a second sample
      const s = (await this.docker.getContainer(id).stats({ stream: false, 'one-shot': true } as { stream: false })) as unknown as DockerStats;
      if (!s.cpu_stats?.cpu_usage || !s.read || s.read.startsWith('0001-')) return null;
      const mem = s.memory_stats ?? {};
      const cache = mem.stats?.inactive_file ?? mem.stats?.total_inactive_file ?? mem.stats?.cache ?? 0;
      return { cpuNanos: Number(s.cpu_stats.cpu_usage.total_usage ?? 0), memoryBytes: Math.max(0, Number(mem.usage ?? 0) - Number(cache)), memoryLimitBytes: Number(mem.limit ?? 0) };
    } catch (err) {
      if (status(err) === 404 || status(err) === 409) return null;
      throw engineError(err);
    }
  }

  // ---- remote operations (operations.ts, docker-operations.ts) ----

  restartContainer(id: string, graceMs: number): Promise<void> {
    return ops.restartContainer(this.slow, id, graceMs, this.timeoutMs, engineError);
  }

  logs(id: string, q: LogQuery, signal: AbortSignal): AsyncIterable<LogLine> {
    return ops.logs(this.docker, this.slow, id, q, signal, engineError);
  }

  stats(id: string, signal?: AbortSignal): Promise<ContainerSample> {
    return ops.stats(this.slow, id, signal, engineError);
  }

  exec(id: string, argv: readonly string[], signal: AbortSignal): Promise<ExecRun> {
    return ops.exec(this.docker, this.slow, id, argv, signal, engineError);
  }

  async *events(label: Label, signal: AbortSignal): AsyncIterable<EngineEvent> {
    if (signal.aborted) return;
    let stream: NodeJS.ReadableStream & { destroy(): void };
    try {
      stream = (await this.slow.getEvents({ filters: { label: [`${label.key}=${label.value}`] }, abortSignal: signal })) as typeof stream;
    } catch (err) {
      if (signal.aborted) return;
      throw engineError(err);
    }
    (stream as { setEncoding?: (e: string) => void }).setEncoding?.('utf8'); // no UTF-8 sequence cut between chunks
    const stop = () => stream.destroy();
    signal.addEventListener('abort', stop, { once: true });
    const split = jsonSplitter();
    try {
      for await (const chunk of stream) {
        for (const text of split(String(chunk))) {
          const e = JSON.parse(text) as { Type?: string; Action?: string; Actor?: { ID?: string; Attributes?: Record<string, string> } };
          yield { type: e.Type ?? '', action: e.Action ?? '', id: e.Actor?.ID ?? '', labels: { ...e.Actor?.Attributes } };
        }
      }
    } catch (err) {
      if (!signal.aborted) throw engineError(err);
    } finally {
      signal.removeEventListener('abort', stop);
      stream.destroy();
    }
  }
}

/** Ferry's spec as the engine's create body: the first network at create, the others joined afterwards. */
export function createOptions(spec: ContainerSpec): Docker.ContainerCreateOptions {
  const exposed: Record<string, object> = {};
  const bindings: Record<string, { HostPort: string; HostIp?: string }[]> = {};
  for (const p of spec.expose ?? []) exposed[`${p.target}/${p.protocol}`] = {};
  for (const p of spec.ports) {
    const key = `${p.target}/${p.protocol}`;
    exposed[key] = {};
    // No published port: the engine picks a free one, as compose asks it to.
    (bindings[key] ??= []).push({ HostPort: p.published === undefined ? '' : String(p.published), ...(p.hostIp ? { HostIp: p.hostIp } : {}) });
  }
  const hc = spec.healthcheck;
  const ns = (ms?: number) => (ms === undefined ? undefined : ms * 1_000_000);
  const first = spec.networks[0];
  const r = spec.resources;
  return {
    name: spec.name,
    Image: spec.image,
    Labels: spec.labels,
    Env: spec.env,
    ...(spec.command ? { Cmd: spec.command } : {}),
    ...(spec.entrypoint ? { Entrypoint: spec.entrypoint } : {}),
    ...(spec.user ? { User: spec.user } : {}),
    ...(spec.workingDir ? { WorkingDir: spec.workingDir } : {}),
    ...(spec.hostname ? { Hostname: spec.hostname } : {}),
    ...(spec.domainname ? { Domainname: spec.domainname } : {}),
    ...(spec.stopSignal ? { StopSignal: spec.stopSignal } : {}),
    ...(spec.stdinOpen ? { OpenStdin: true } : {}),
    ...(spec.tty ? { Tty: true } : {}),
    ExposedPorts: exposed,
    StopTimeout: Math.ceil(spec.stopGraceMs / 1000),
    ...(hc ? { Healthcheck: { ...(hc.test ? { Test: hc.test } : {}), Interval: ns(hc.intervalMs), Timeout: ns(hc.timeoutMs), StartPeriod: ns(hc.startPeriodMs), Retries: hc.retries } } : {}),
    HostConfig: {
      PortBindings: bindings,
      Mounts: spec.mounts.map((m) => ({
        Type: m.type,
        Target: m.target,
        ReadOnly: m.readOnly,
        Source: m.type === 'tmpfs' ? '' : m.source,
        ...(m.noCopy ? { VolumeOptions: { NoCopy: true } } : {}),
        ...(m.type === 'tmpfs' && (m.tmpfsSize || m.tmpfsMode !== undefined) ? { TmpfsOptions: { ...(m.tmpfsSize ? { SizeBytes: m.tmpfsSize } : {}), ...(m.tmpfsMode !== undefined ? { Mode: m.tmpfsMode } : {}) } } : {}),
      })) as Docker.MountSettings[], // dockerode's types want every option; the API takes any subset
      RestartPolicy: { Name: spec.restart === 'no' ? '' : spec.restart, MaximumRetryCount: 0 },
      ...(spec.networkMode ? { NetworkMode: spec.networkMode } : first ? { NetworkMode: first } : {}),
      // what the institution's policy allowed, each only when the release asks for it
      ...(spec.capAdd ? { CapAdd: spec.capAdd } : {}),
      ...(spec.capDrop ? { CapDrop: spec.capDrop } : {}),
      ...(spec.privileged !== undefined ? { Privileged: spec.privileged } : {}),
      ...(spec.pid ? { PidMode: spec.pid } : {}),
      ...(spec.ipc ? { IpcMode: spec.ipc } : {}),
      ...(spec.devices ? { Devices: spec.devices.map((d) => ({ PathOnHost: d.host, PathInContainer: d.container, CgroupPermissions: d.permissions })) } : {}),
      ...(spec.sysctls ? { Sysctls: spec.sysctls } : {}),
      ...(spec.init ? { Init: true } : {}),
      ...(spec.readOnly ? { ReadonlyRootfs: true } : {}),
      ...(spec.extraHosts ? { ExtraHosts: spec.extraHosts } : {}),
      ...(spec.dns ? { Dns: spec.dns } : {}),
      ...(spec.dnsOptions ? { DnsOptions: spec.dnsOptions } : {}),
      ...(spec.dnsSearch ? { DnsSearch: spec.dnsSearch } : {}),
      ...(spec.groupAdd ? { GroupAdd: spec.groupAdd } : {}),
      ...(spec.shmSizeBytes ? { ShmSize: spec.shmSizeBytes } : {}),
      ...(spec.tmpfs ? { Tmpfs: spec.tmpfs } : {}),
      ...(spec.securityOpt ? { SecurityOpt: spec.securityOpt } : {}),
      ...(r?.nanoCpus ? { NanoCpus: r.nanoCpus } : {}),
      ...(r?.memoryBytes ? { Memory: r.memoryBytes } : {}),
      ...(r?.memoryReservationBytes ? { MemoryReservation: r.memoryReservationBytes } : {}),
      ...(r?.pids !== undefined ? { PidsLimit: r.pids } : {}),
      ...(spec.ulimits ? { Ulimits: Object.entries(spec.ulimits).map(([Name, u]) => ({ Name, Soft: u.soft, Hard: u.hard })) } : {}),
      ...(spec.logging ? { LogConfig: { Type: spec.logging.driver, Config: spec.logging.options } } : {}),
    },
    ...(first ? { NetworkingConfig: { EndpointsConfig: { [first]: { Aliases: spec.aliases } } } } : {}),
  };
}

function observed(c: Docker.ContainerInspectInfo): ObservedContainer {
  const state = c.State as Docker.ContainerInspectInfo['State'] & { Health?: { Status?: string } };
  const st = state.Status as ContainerStatus;
  const started = state.StartedAt && !state.StartedAt.startsWith('0001-') ? state.StartedAt : null;
  return {
    id: c.Id,
    name: c.Name.replace(/^\//, ''),
    labels: c.Config.Labels ?? {},
    status: st,
    health: ((state.Health?.Status as Health | undefined) || 'none'),
    exitCode: st === 'exited' || st === 'dead' || st === 'restarting' ? state.ExitCode : null,
    restartCount: c.RestartCount ?? 0,
    startedAt: started,
    image: c.Config.Image,
    networks: userAliases(c),
    addresses: Object.fromEntries(Object.entries((c.NetworkSettings?.Networks ?? {}) as Record<string, { IPAddress?: string }>).flatMap(([n, e]) => (e.IPAddress ? [[n, e.IPAddress]] : []))),
  };
}

interface DockerStats {
  read?: string;
  cpu_stats?: { cpu_usage?: { total_usage?: number } };
  memory_stats?: { usage?: number; limit?: number; stats?: { inactive_file?: number; total_inactive_file?: number; cache?: number } };
}

/** What an exec or a check may write that is kept. */
const EXEC_OUTPUT_MAX = 4096;

/** Docker's multiplexed stdout/stderr stream (8-byte frame headers) as text; text without frames as it is. */
function demux(buf: Buffer): string {
  const out: Buffer[] = [];
  let i = 0;
  while (i + 8 <= buf.length) {
    const kind = buf[i]!;
    const len = buf.readUInt32BE(i + 4);
    if (kind > 2 || buf[i + 1] !== 0 || buf[i + 2] !== 0 || buf[i + 3] !== 0) return buf.toString('utf8'); // not framed (a TTY)
    out.push(buf.subarray(i + 8, Math.min(buf.length, i + 8 + len)));
    i += 8 + len;
  }
  return Buffer.concat(out).toString('utf8');
}

/**
 * Each attached network with the aliases the container was given there, from
 * inspect (Docker 20.10's list reports `Aliases: null`), without the short id
 * Docker adds to every container's aliases on a user-defined network.
 */
function userAliases(c: Docker.ContainerInspectInfo): Record<string, string[]> {
  const short = c.Id.slice(0, 12);
  const nets = (c.NetworkSettings?.Networks ?? {}) as Record<string, { Aliases?: string[] | null }>;
  return Object.fromEntries(Object.entries(nets).map(([n, e]) => [n, (e.Aliases ?? []).filter((a) => a !== short)]));
}

/** Docker Hub's names in their short form, so `docker.io/library/x` and `x` compare equal. */
function familiar(repo: string): string {
  const first = repo.split('/')[0]!;
  const hasHost = repo.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost');
  if (hasHost && !/^(docker\.io|index\.docker\.io|registry-1\.docker\.io)$/.test(first)) return repo;
  return (hasHost ? repo.slice(first.length + 1) : repo).replace(/^library\//, '');
}

function registryOf(repo: string): string {
  const first = repo.split('/')[0]!;
  return repo.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost') ? first : 'https://index.docker.io/v1/';
}

function sameLabels(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => a[k] === b[k]);
}

/** Splits a byte stream of concatenated JSON objects (newline-separated or not, cut anywhere) into object texts. */
function jsonSplitter(): (chunk: string) => string[] {
  let buf = '';
  let depth = 0;
  let inString = false;
  let escaped = false;
  let start = -1;
  return (chunk) => {
    const out: string[] = [];
    const from = buf.length;
    buf += chunk;
    for (let i = from; i < buf.length; i++) {
      const ch = buf[i];
      if (inString) {
        if (escaped) escaped = false;
        else if (ch === '\\') escaped = true;
        else if (ch === '"') inString = false;
      } else if (ch === '"') inString = true;
      else if (ch === '{') {
        if (depth++ === 0) start = i;
      } else if (ch === '}' && depth > 0 && --depth === 0) out.push(buf.slice(start, i + 1));
    }
    if (depth === 0) buf = '';
    else if (start > 0) {
      buf = buf.slice(start);
      start = 0;
    }
    return out;
  };
}

async function mapBounded<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

const status = (err: unknown): number | undefined => (err as { statusCode?: number } | null)?.statusCode;
const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

const ENGINE_DOWN = new Set(['ENOENT', 'ECONNREFUSED', 'EACCES', 'ETIMEDOUT', 'ECONNRESET', 'EPIPE']);
const REGISTRY_PATTERNS: [RegExp, ErrorCode][] = [
  [/digest mismatch|manifest verification failed|content digest|does not match (the )?digest|unexpected digest/i, 'FERRY_E_IMAGE_DIGEST'],
  [/unauthorized|authentication required|no basic auth credentials|incorrect username or password/i, 'FERRY_E_REGISTRY_AUTH'],
  [/connection refused|no such host|timeout|timed out|network is unreachable|no route to host|connection reset|server misbehaving/i, 'FERRY_E_REGISTRY_UNREACHABLE'],
  [/manifest unknown|not found|does not exist|name unknown/i, 'FERRY_E_IMAGE_NOT_FOUND'],
  [/denied/i, 'FERRY_E_REGISTRY_AUTH'],
];

/**
 * Every dockerode failure to a catalogue code. Socket-level errors (no HTTP
 * status) mean the engine itself is unreachable; with `registry` (the ref being
 * pulled), the engine's message says what the registry did.
 */
function engineError(err: unknown, ctx: { registry?: string } = {}): FerryError {
  if (err instanceof FerryError) return err;
  const e = err as NodeJS.ErrnoException & { statusCode?: number };
  const msg = message(err).replace(/^\(HTTP code \d+\) [^-]*- /, '').trim();
  const timedOut = e.name === 'TimeoutError' || (e.cause as Error | undefined)?.name === 'TimeoutError';
  if (e.statusCode === undefined && ((e.code && ENGINE_DOWN.has(e.code)) || /socket hang up/i.test(msg) || timedOut)) {
    return new FerryError('FERRY_E_ENGINE_UNREACHABLE', timedOut ? `timed out: ${msg}` : `${e.code}: ${msg}`, { cause: err });
  }
  if (ctx.registry) {
    const hit = REGISTRY_PATTERNS.find(([re]) => re.test(msg));
    if (hit) return new FerryError(hit[1], `${ctx.registry}: ${msg}`, { cause: err });
  }
  const code: ErrorCode = e.statusCode === 404 ? 'FERRY_E_NOT_FOUND' : e.statusCode === 409 ? 'FERRY_E_CONFLICT' : 'FERRY_E_ENGINE_FAILED';
  return new FerryError(code, `docker: ${msg}`, { cause: err });
}

// The operations' engine calls (operations.ts) against a real Docker engine:
// restart, logs, stats and exec, streamed, never buffered whole. Docker
// multiplexes stdout and stderr of a container without a TTY into frames
// (8-byte header: stream, 0, 0, 0, size big-endian); `demux` reads them.
import type Docker from 'dockerode';
import { StringDecoder } from 'node:string_decoder';
import type { ContainerSample, ExecOutput, ExecRun, LogLine, LogQuery } from './operations.js';

type Readable = NodeJS.ReadableStream & { destroy(err?: Error): void };
type EngineError = (err: unknown) => Error;

/** Frames of a multiplexed stream (or the raw bytes of a TTY container, as stdout). */
export async function* demux(stream: AsyncIterable<Buffer | string>, tty: boolean): AsyncGenerator<{ fd: 1 | 2; data: Buffer }> {
  let buf: Buffer = Buffer.alloc(0);
  for await (const raw of stream) {
    const chunk: Buffer = typeof raw === 'string' ? Buffer.from(raw) : raw;
    if (tty) {
      yield { fd: 1, data: chunk };
      continue;
    }
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    while (buf.length >= 8) {
      const size = buf.readUInt32BE(4);
      if (buf.length < 8 + size) break;
      const fd = buf[0] === 2 ? 2 : 1;
      yield { fd, data: buf.subarray(8, 8 + size) };
      buf = buf.subarray(8 + size);
    }
  }
}

/** Splits text per stream into whole lines (a line may span frames). */
class LineSplitter {
  private readonly rest: Record<1 | 2, string> = { 1: '', 2: '' };
  private readonly dec: Record<1 | 2, StringDecoder> = { 1: new StringDecoder('utf8'), 2: new StringDecoder('utf8') };

  push(fd: 1 | 2, data: Buffer): string[] {
    const text = this.rest[fd] + this.dec[fd].write(data);
    const lines = text.split('\n');
    this.rest[fd] = lines.pop()!;
    return lines;
  }

  flush(): { fd: 1 | 2; line: string }[] {
    return ([1, 2] as const).flatMap((fd) => {
      const last = this.rest[fd] + this.dec[fd].end();
      return last ? [{ fd, line: last }] : [];
    });
  }
}

const seconds = (ms: number) => (ms / 1000).toFixed(3);

async function isTty(c: Docker.Container): Promise<boolean> {
  return (await c.inspect()).Config?.Tty === true;
}

export async function restartContainer(slow: Docker, id: string, graceMs: number, timeoutMs: number, engineError: EngineError): Promise<void> {
  const t = Math.ceil(graceMs / 1000);
  try {
    await slow.getContainer(id).restart({ t, abortSignal: AbortSignal.timeout(t * 1000 + timeoutMs) });
  } catch (err) {
    throw engineError(err);
  }
}

export async function* logs(docker: Docker, slow: Docker, id: string, q: LogQuery, signal: AbortSignal, engineError: EngineError): AsyncGenerator<LogLine> {
  let stream: Readable;
  let tty: boolean;
  try {
    tty = await isTty(docker.getContainer(id));
    const options = {
      stdout: true,
      stderr: true,
      timestamps: true,
      follow: q.follow,
      ...(q.since !== undefined ? { since: seconds(q.since) } : {}),
      ...(q.until !== undefined ? { until: seconds(q.until) } : {}),
      ...(q.tail !== undefined ? { tail: q.tail } : {}),
    };
    // Through the modem, so a finished range streams too (dockerode buffers it whole without follow).
    stream = await new Promise<Readable>((resolve, reject) =>
      slow.modem.dial(
        { path: `/containers/${id}/logs?`, method: 'GET', isStream: true, abortSignal: signal, statusCodes: { 200: true, 404: 'no such container', 500: 'server error' }, options },
        (err: unknown, data: unknown) => (err ? reject(err) : resolve(data as Readable)),
      ),
    );
  } catch (err) {
    if (signal.aborted) return;
    throw engineError(err);
  }
  const stop = () => stream.destroy();
  signal.addEventListener('abort', stop, { once: true });
  const split = new LineSplitter();
  const line = (fd: 1 | 2, l: string): LogLine => {
    const sp = l.indexOf(' ');
    return sp > 0 ? { fd, ts: l.slice(0, sp), text: l.slice(sp + 1) } : { fd, ts: '', text: l };
  };
  try {
    for await (const f of demux(stream as AsyncIterable<Buffer>, tty)) {
      for (const l of split.push(f.fd, f.data)) yield line(f.fd, l.endsWith('\r') ? l.slice(0, -1) : l);
    }
    for (const r of split.flush()) yield line(r.fd, r.line);
  } catch (err) {
    if (!signal.aborted) throw engineError(err);
  } finally {
    signal.removeEventListener('abort', stop);
    stream.destroy();
  }
}

interface StatsBody {
  cpu_stats?: { cpu_usage?: { total_usage?: number; percpu_usage?: number[] }; system_cpu_usage?: number; online_cpus?: number };
  precpu_stats?: { cpu_usage?: { total_usage?: number }; system_cpu_usage?: number };
  memory_stats?: { usage?: number; limit?: number; stats?: { cache?: number; inactive_file?: number; total_inactive_file?: number } };
  networks?: Record<string, { rx_bytes?: number; tx_bytes?: number }>;
  pids_stats?: { current?: number };
}

/** What `docker stats` shows, from one sample (the engine measures CPU over about a second). */
export function sampleOf(s: StatsBody): ContainerSample {
  const cpu = s.cpu_stats ?? {};
  const pre = s.precpu_stats ?? {};
  const cpuDelta = (cpu.cpu_usage?.total_usage ?? 0) - (pre.cpu_usage?.total_usage ?? 0);
  const sysDelta = (cpu.system_cpu_usage ?? 0) - (pre.system_cpu_usage ?? 0);
  const cpus = cpu.online_cpus ?? cpu.cpu_usage?.percpu_usage?.length ?? 1;
  const mem = s.memory_stats ?? {};
  const cache = mem.stats?.inactive_file ?? mem.stats?.total_inactive_file ?? mem.stats?.cache ?? 0;
  const nets = Object.values(s.networks ?? {});
  return {
    cpuPercent: cpuDelta > 0 && sysDelta > 0 ? Math.round((cpuDelta / sysDelta) * cpus * 10_000) / 100 : 0,
    memoryBytes: Math.max(0, (mem.usage ?? 0) - cache),
    memoryLimitBytes: mem.limit ?? 0,
    netRxBytes: nets.reduce((a, n) => a + (n.rx_bytes ?? 0), 0),
    netTxBytes: nets.reduce((a, n) => a + (n.tx_bytes ?? 0), 0),
    pids: s.pids_stats?.current ?? 0,
  };
}

export async function stats(slow: Docker, id: string, signal: AbortSignal | undefined, engineError: EngineError): Promise<ContainerSample> {
  try {
    const body = (await slow.getContainer(id).stats({ stream: false, ...(signal ? { abortSignal: signal } : {}) } as { stream: false })) as StatsBody;
    return sampleOf(body);
  } catch (err) {
    throw engineError(err);
  }
}

export async function exec(docker: Docker, slow: Docker, id: string, argv: readonly string[], signal: AbortSignal, engineError: EngineError): Promise<ExecRun> {
  let run: Docker.Exec;
  let stream: Readable;
  let tty: boolean;
  try {
    const c = docker.getContainer(id);
    tty = await isTty(c);
    run = await c.exec({ Cmd: [...argv], AttachStdout: true, AttachStderr: true, AttachStdin: false, Tty: false });
    stream = (await slow.getExec(run.id).start({ hijack: true, stdin: false })) as unknown as Readable;
  } catch (err) {
    throw engineError(err);
  }
  tty = false; // the exec itself has no TTY: its output is multiplexed whatever the container is
  const stop = () => stream.destroy();
  signal.addEventListener('abort', stop, { once: true });
  let cut = false;
  async function* output(): AsyncGenerator<ExecOutput> {
    const dec: Record<1 | 2, StringDecoder> = { 1: new StringDecoder('utf8'), 2: new StringDecoder('utf8') };
    try {
      for await (const f of demux(stream as AsyncIterable<Buffer>, tty)) {
        const data = dec[f.fd].write(f.data);
        if (data) yield { fd: f.fd, data };
      }
      for (const fd of [1, 2] as const) {
        const last = dec[fd].end();
        if (last) yield { fd, data: last };
      }
    } catch (err) {
      if (!signal.aborted) throw engineError(err);
    } finally {
      cut = signal.aborted;
      signal.removeEventListener('abort', stop);
      stream.destroy();
    }
  }
  return {
    output: output(),
    async exitCode() {
      if (cut) return -1;
      try {
        // The output ends when the process closes it; the engine records the code a moment later.
        for (let i = 0; i < 50; i++) {
          const info = await docker.getExec(run.id).inspect();
          if (!info.Running && info.ExitCode !== null && info.ExitCode !== undefined) return info.ExitCode;
          await new Promise((r) => setTimeout(r, 20));
        }
        return -1;
      } catch (err) {
        throw engineError(err);
      }
    },
  };
}

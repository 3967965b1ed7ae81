// Remote operations on the hub: sending a stored, signed operation to its
// agent, correlating the agent's answer, carrying its stream to the client
// with credits, and recording the answer with its audit entry (and the exec
// transcript with its digest).
//
// The agent's socket is held by one replica (the holder); the API request
// may reach another (the requester). The requester stores the operation and
// rings 'operation'; the holder sends it and tracks it. Stream chunks then go
// holder -> requester through the database (operation_chunks, rung with
// 'op-chunk'), and credit back requester -> holder ('op-credit'), so flow
// control holds across replicas exactly as on one: the agent sends only what
// the client has read, plus one window. The holder records the answer and
// rings 'op-done' after the last chunk. A sweep on a timer catches up with
// any doorbell lost. When holder and requester are the same replica, chunks
// go from the socket to the client in memory.
import { EventEmitter } from 'node:events';
import { FerryError, isErrorCode } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import { digestOfTranscript, targetText, transcriptLine, type StreamChunk } from '../../shared/operation.js';
import type { OperationResultMessage, StreamData } from '../../shared/protocol.js';
import type { AuditLog } from '../audit/log.js';
import type { Cluster } from '../cluster/cluster.js';
import type { Gateway } from '../gateway/gateway.js';
import type { OperationRecord } from '../store/operations.js';
import type { Store } from '../store/store.js';
import { LocalStream, WINDOW, type StreamSink } from './flow.js';
import { RelayedStream } from './relayed.js';

/** The most of an exec transcript the hub keeps (the agent caps output at 4 MiB). */
const MAX_TRANSCRIPT = 8 * 1024 * 1024;
/** How long a cancelled stream's answer is waited for. */
const CANCEL_GRACE_MS = 10_000;
/** Codes with which an agent refuses (rather than fails) an operation. */
const REFUSALS = /^FERRY_E_(POLICY_|OPERATION_(BINDING|EXPIRED|REPLAY|INVALID)|ROOT_MISSING|SIG_|PAYLOAD_|ENVELOPE_|CLOCK_AHEAD|RATE_LIMITED)/;

/** An operation sent on one of this replica's sockets. */
interface Track {
  rec: OperationRecord;
  /** The requester is here: chunks go straight to it, and the answer. */
  local: { data(chunks: StreamChunk[]): void; done(rec: OperationRecord): void } | null;
  /** Relayed: chunk writes to the database, in order. */
  chain: Promise<void>;
  transcript: { lines: string[]; bytes: number; cut: boolean } | null;
}

export class HubOperations extends EventEmitter {
  private readonly tracks = new Map<string, Track>();
  /** Requests waiting here for an answer recorded by another replica. */
  private readonly waiting = new Map<string, () => void>();
  private readonly relayed = new Map<string, RelayedStream>();
  private readonly sweep: NodeJS.Timeout;

  constructor(
    private readonly gateway: Gateway,
    private readonly store: Store,
    private readonly cluster: Cluster,
    private readonly audit: AuditLog,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    super();
    this.setMaxListeners(0);
    gateway.on('operation-result', (agentId: string, msg: OperationResultMessage) => void this.onResult(agentId, msg));
    gateway.on('stream-data', (agentId: string, msg: StreamData) => this.onData(agentId, msg));
    gateway.on('disconnected', (agentId: string) => this.onDisconnected(agentId));
    cluster.on('operation', ({ id, agentId }) => void this.sendStored(id, agentId));
    cluster.on('op-credit', ({ id, bytes }) => this.tracks.has(id) && this.gateway.send(this.tracks.get(id)!.rec.agentId, { type: 'stream-credit', id, bytes }));
    cluster.on('op-cancel', ({ id }) => this.tracks.has(id) && this.gateway.send(this.tracks.get(id)!.rec.agentId, { type: 'stream-cancel', id, reason: 'the client went away' }));
    cluster.on('op-chunk', ({ id }) => this.relayed.get(id)?.pull());
    cluster.on('op-done', ({ id }) => {
      this.relayed.get(id)?.pull();
      this.waiting.get(id)?.();
    });
    this.sweep = setInterval(() => {
      for (const r of this.relayed.values()) r.pull();
      for (const w of this.waiting.values()) w();
      if (this.cluster.leader) void this.store.operations.pruneChunks(this.now() - 3_600_000).catch(() => 0);
    }, 1000);
    this.sweep.unref();
  }

  close(): void {
    clearInterval(this.sweep);
  }

  /** Whether the agent can be asked now (here, or on the replica holding its socket). */
  reachable(agentId: string, connectedElsewhere: boolean): void {
    if (!this.gateway.session(agentId) && !(this.cluster.shared && connectedElsewhere)) throw new FerryError('FERRY_E_AGENT_OFFLINE', agentId);
  }

  /** Sends a stored operation and waits for its answer (at most `timeoutMs`). */
  async run(rec: OperationRecord, timeoutMs: number): Promise<OperationRecord> {
    return this.deliver(rec, null, timeoutMs);
  }

  /** Sends a stored stream operation; its chunks go to `sink` as the client reads them. Resolves with the recorded answer. */
  async stream(rec: OperationRecord, sink: StreamSink, timeoutMs: number): Promise<OperationRecord> {
    return this.deliver(rec, sink, timeoutMs);
  }

  private async deliver(rec: OperationRecord, sink: StreamSink | null, timeoutMs: number): Promise<OperationRecord> {
    let resolve!: (r: OperationRecord) => void;
    const answered = new Promise<OperationRecord>((r) => (resolve = r));
    let cancel: () => void;
    if (this.gateway.session(rec.agentId)) {
      const local = sink ? new LocalStream(sink, (bytes) => this.gateway.send(rec.agentId, { type: 'stream-credit', id: rec.id, bytes })) : null;
      const track: Track = { rec, local: { data: (c) => local?.data(c), done: (r) => void (local ? local.drained().then(() => resolve(r)) : resolve(r)) }, chain: Promise.resolve(), transcript: rec.kind === 'exec' ? { lines: [], bytes: 0, cut: false } : null };
      this.tracks.set(rec.id, track);
      cancel = () => this.gateway.send(rec.agentId, { type: 'stream-cancel', id: rec.id, reason: 'the client went away' });
      if (!this.gateway.send(rec.agentId, { type: 'operation', id: rec.id, operation: rec.envelope, credit: sink ? WINDOW : 0 })) {
        this.tracks.delete(rec.id);
        await this.fail(rec, 'FERRY_E_AGENT_OFFLINE', 'the agent socket is closed or congested');
        return (await this.store.operations.find(rec.id))!;
      }
    } else {
      const relay = sink ? new RelayedStream(rec.id, sink, this.store, this.cluster, this.log) : null;
      if (relay) this.relayed.set(rec.id, relay);
      const check = () =>
        void this.store.operations.find(rec.id).then(async (r) => {
          if (!r || r.status === 'pending') return;
          if (relay) await relay.finished();
          resolve(r);
        });
      this.waiting.set(rec.id, check);
      cancel = () => this.cluster.publish('op-cancel', { id: rec.id });
      this.cluster.publish('operation', { id: rec.id, agentId: rec.agentId });
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<null>((r) => (timer = setTimeout(() => r(null), timeoutMs)));
    const onClose = () => {
      cancel();
      clearTimeout(timer);
      timer = setTimeout(() => void this.timedOut(rec).then(resolve), CANCEL_GRACE_MS);
    };
    sink?.closed.addEventListener('abort', onClose, { once: true });
    try {
      const r = await Promise.race([answered, timeout]);
      return r ?? (await this.timedOut(rec));
    } finally {
      clearTimeout(timer);
      sink?.closed.removeEventListener('abort', onClose);
      this.waiting.delete(rec.id);
      this.relayed.delete(rec.id);
    }
  }

  /** Holder: an operation stored on another replica, for an agent whose socket is here. */
  private async sendStored(id: string, agentId: string): Promise<void> {
    if (!this.gateway.session(agentId) || this.tracks.has(id)) return;
    const rec = await this.store.operations.find(id);
    if (!rec || rec.agentId !== agentId || rec.status !== 'pending') return;
    this.tracks.set(id, { rec, local: null, chain: Promise.resolve(), transcript: rec.kind === 'exec' ? { lines: [], bytes: 0, cut: false } : null });
    if (!this.gateway.send(agentId, { type: 'operation', id, operation: rec.envelope, credit: ['logs', 'exec', 'stats'].includes(rec.kind) ? WINDOW : 0 })) {
      this.tracks.delete(id);
      await this.fail(rec, 'FERRY_E_AGENT_OFFLINE', 'the agent socket is closed or congested');
      this.cluster.publish('op-done', { id });
    }
  }

  private onData(agentId: string, msg: StreamData): void {
    const t = this.tracks.get(msg.id);
    if (!t || t.rec.agentId !== agentId) {
      this.log.warn({ agentId, operation: msg.id }, 'stream data for no operation sent to this agent here; cancelling it');
      this.gateway.send(agentId, { type: 'stream-cancel', id: msg.id, reason: 'no such stream on this hub' });
      return;
    }
    if (t.transcript) {
      for (const c of msg.chunks) {
        const line = transcriptLine(c);
        if (t.transcript.bytes + line.length > MAX_TRANSCRIPT) t.transcript.cut = true;
        else {
          t.transcript.lines.push(line);
          t.transcript.bytes += line.length;
        }
      }
    }
    if (t.local) return t.local.data(msg.chunks);
    const body = JSON.stringify(msg.chunks);
    t.chain = t.chain
      .then(() => this.store.detached(() => this.store.operations.putChunk(msg.id, msg.n, body, this.now())))
      .then(() => this.cluster.publish('op-chunk', { id: msg.id }))
      .catch((err: unknown) => this.log.error({ operation: msg.id, err: (err as Error).message }, 'could not relay a stream chunk'));
  }

  private async onResult(agentId: string, msg: OperationResultMessage): Promise<void> {
    const t = this.tracks.get(msg.id);
    const rec = t?.rec ?? (await this.store.operations.find(msg.id));
    if (!rec || rec.agentId !== agentId) return void this.log.warn({ agentId, operation: msg.id }, 'an answer for no operation of this agent');
    this.tracks.delete(msg.id);
    if (t) await t.chain;
    const code = msg.ok ? null : isErrorCode(msg.code) ? msg.code : (msg.code ?? 'FERRY_E_INTERNAL');
    const transcript = t?.transcript ? t.transcript.lines.join('') : null;
    const transcriptDigest = transcript !== null ? digestOfTranscript(transcript) : null;
    if (transcript !== null && msg.stream?.digest && msg.stream.digest !== transcriptDigest) {
      this.log.warn({ operation: msg.id, agentDigest: msg.stream.digest, transcriptDigest, cut: t?.transcript?.cut }, 'the transcript kept differs from what the agent sent');
    }
    await this.record(rec, {
      status: msg.ok ? 'ok' : REFUSALS.test(code ?? '') ? 'refused' : 'failed',
      code,
      message: msg.message ?? null,
      result: msg.result ?? null,
      exitCode: msg.exitCode ?? null,
      bytes: msg.stream?.bytes ?? null,
      durationMs: msg.durationMs,
      streamReason: msg.stream?.reason ?? null,
      agentDigest: msg.stream?.digest ?? null,
      transcript,
      transcriptDigest,
    });
    const done = (await this.store.operations.find(rec.id))!;
    this.emit('operation', done);
    if (t?.local) t.local.done(done);
    else this.cluster.publish('op-done', { id: rec.id });
  }

  /** The agent went away: what it had not answered fails now (it cannot answer on another socket). */
  private onDisconnected(agentId: string): void {
    for (const t of [...this.tracks.values()].filter((x) => x.rec.agentId === agentId)) {
      this.tracks.delete(t.rec.id);
      void t.chain
        .then(() => this.fail(t.rec, 'FERRY_E_AGENT_OFFLINE', 'the agent disconnected before it answered; what it did is not known here (see ferry-agent status on the host)'))
        .then(async () => {
          const r = (await this.store.operations.find(t.rec.id))!;
          if (t.local) t.local.done(r);
          else this.cluster.publish('op-done', { id: t.rec.id });
        });
    }
  }

  private async fail(rec: OperationRecord, code: string, message: string): Promise<void> {
    await this.record(rec, { status: 'failed', code, message, result: null, exitCode: null, bytes: null, durationMs: this.now() - rec.issuedAt, streamReason: null, agentDigest: null, transcript: null, transcriptDigest: null });
  }

  private async timedOut(rec: OperationRecord): Promise<OperationRecord> {
    const now = this.now();
    await this.store.tx(async () => {
      if (!(await this.store.operations.timedOut(rec.id, now))) return;
      await this.audit.append({ log: rec.tenant, actor: { kind: 'hub', id: null }, surface: 'hub', action: 'operation.result', target: { type: 'operation', id: rec.id }, agents: [rec.agentId], outcome: 'failed', details: { operation: rec.id, kind: rec.kind, target: targetText(rec), code: 'FERRY_E_OPERATION_TIMEOUT' } }, now);
    });
    return (await this.store.operations.find(rec.id))!;
  }

  /** The answer and its audit entry, once (a second answer for the same operation changes nothing). */
  private async record(rec: OperationRecord, a: Parameters<Store['operations']['finish']>[1]): Promise<void> {
    const now = this.now();
    await this.store.detached(() =>
      this.store.tx(async () => {
        if (!(await this.store.operations.finish(rec.id, a, now))) return;
        const details: Record<string, string | number | boolean | null> = { operation: rec.id, kind: rec.kind, target: targetText(rec), durationMs: a.durationMs };
        if (a.code) details.code = a.code;
        if (a.exitCode !== null) details.exitCode = a.exitCode;
        if (a.bytes !== null) details.bytes = a.bytes;
        if (a.streamReason) details.streamReason = a.streamReason;
        if (a.transcriptDigest) details.transcriptDigest = a.transcriptDigest;
        if (a.agentDigest) details.agentDigest = a.agentDigest;
        await this.audit.append({ log: rec.tenant, actor: { kind: 'agent', id: rec.agentId }, surface: 'agent', action: 'operation.result', target: { type: 'operation', id: rec.id }, agents: [rec.agentId], outcome: a.status === 'ok' ? 'ok' : a.status === 'refused' ? 'refused' : 'failed', details }, now);
      }),
    );
  }
}

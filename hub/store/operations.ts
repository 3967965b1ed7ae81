// Remote operations (hub/operations): each signed operation, stored before
// it is sent, with its per-agent seq; its answer once the agent gives it;
// the exec transcript the hub kept. And the chunks of streams relayed from
// the replica holding the agent's socket to the one serving the client.
import type { Envelope } from '../../shared/dsse.js';
import type { OperationArgs, OperationKind } from '../../shared/operation.js';
import type { Db } from './db.js';

export type OperationStatus = 'pending' | 'ok' | 'refused' | 'failed' | 'timeout';

export interface OperationRecord {
  id: string;
  agentId: string;
  tenant: string;
  seq: number;
  kind: OperationKind;
  stack: string | null;
  service: string | null;
  args: OperationArgs;
  envelope: Envelope;
  issuedAt: number;
  expiresAt: number;
  createdBy: string | null;
  surface: string | null;
  /** The multi-agent operation (`--to SELECTOR`) it is part of. */
  batch: string | null;
  status: OperationStatus;
  code: string | null;
  message: string | null;
  result: unknown;
  exitCode: number | null;
  bytes: number | null;
  durationMs: number | null;
  streamReason: string | null;
  agentDigest: string | null;
  transcriptDigest: string | null;
  finishedAt: number | null;
}

export interface OperationAnswer {
  status: Exclude<OperationStatus, 'pending'>;
  code: string | null;
  message: string | null;
  result: unknown;
  exitCode: number | null;
  bytes: number | null;
  durationMs: number | null;
  streamReason: string | null;
  agentDigest: string | null;
  transcript: string | null;
  transcriptDigest: string | null;
}

interface Row {
  id: string;
  agent_id: string;
  tenant: string;
  seq: number;
  kind: string;
  stack: string | null;
  service: string | null;
  args: string;
  envelope: string;
  issued_at: number;
  expires_at: number;
  created_by: string | null;
  surface: string | null;
  batch: string | null;
  status: OperationStatus;
  code: string | null;
  message: string | null;
  result: string | null;
  exit_code: number | null;
  bytes: number | null;
  duration_ms: number | null;
  stream_reason: string | null;
  agent_digest: string | null;
  transcript_digest: string | null;
  finished_at: number | null;
}

const COLUMNS = 'id, agent_id, tenant, seq, kind, stack, service, args, envelope, issued_at, expires_at, created_by, surface, batch, status, code, message, result, exit_code, bytes, duration_ms, stream_reason, agent_digest, transcript_digest, finished_at';
const num = (v: number | string | null) => (v === null ? null : Number(v));

function toRecord(r: Row): OperationRecord {
  return {
    id: r.id,
    agentId: r.agent_id,
    tenant: r.tenant,
    seq: Number(r.seq),
    kind: r.kind as OperationKind,
    stack: r.stack,
    service: r.service,
    args: JSON.parse(r.args) as OperationArgs,
    envelope: JSON.parse(r.envelope) as Envelope,
    issuedAt: Number(r.issued_at),
    expiresAt: Number(r.expires_at),
    createdBy: r.created_by,
    surface: r.surface,
    batch: r.batch,
    status: r.status,
    code: r.code,
    message: r.message,
    result: r.result === null ? null : (JSON.parse(r.result) as unknown),
    exitCode: num(r.exit_code),
    bytes: num(r.bytes),
    durationMs: num(r.duration_ms),
    streamReason: r.stream_reason,
    agentDigest: r.agent_digest,
    transcriptDigest: r.transcript_digest,
    finishedAt: num(r.finished_at),
  };
}

export class OperationRows {
  constructor(private readonly db: Db) {}

  /** The agent's next operation seq; call in the transaction that inserts it (the lock serialises replicas). */
  async nextSeq(agentId: string): Promise<number> {
    await this.db.lock(`operation:${agentId}`);
    const r = await this.db.get<{ s: number | null }>('SELECT max(seq) AS s FROM operations WHERE agent_id = ?', [agentId]);
    return Number(r?.s ?? 0) + 1;
  }

  async insert(o: Omit<OperationRecord, 'status' | 'code' | 'message' | 'result' | 'exitCode' | 'bytes' | 'durationMs' | 'streamReason' | 'agentDigest' | 'transcriptDigest' | 'finishedAt'>): Promise<void> {
    await this.db.run(
      'INSERT INTO operations (id, agent_id, tenant, seq, kind, stack, service, args, envelope, issued_at, expires_at, created_by, surface, batch) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      [o.id, o.agentId, o.tenant, o.seq, o.kind, o.stack, o.service, JSON.stringify(o.args), JSON.stringify(o.envelope), o.issuedAt, o.expiresAt, o.createdBy, o.surface, o.batch],
    );
  }

  async find(id: string): Promise<OperationRecord | undefined> {
    const r = await this.db.get<Row>(`SELECT ${COLUMNS} FROM operations WHERE id = ?`, [id]);
    return r ? toRecord(r) : undefined;
  }

  /** Records the answer once; false when it was already recorded (a second replica, a late answer after a timeout is kept). */
  async finish(id: string, a: OperationAnswer, now: number): Promise<boolean> {
    const n = await this.db.run(
      "UPDATE operations SET status = ?, code = ?, message = ?, result = ?, exit_code = ?, bytes = ?, duration_ms = ?, stream_reason = ?, agent_digest = ?, transcript = ?, transcript_digest = ?, finished_at = ? WHERE id = ? AND status IN ('pending', 'timeout')",
      [a.status, a.code, a.message, a.result === null ? null : JSON.stringify(a.result), a.exitCode, a.bytes, a.durationMs, a.streamReason, a.agentDigest, a.transcript, a.transcriptDigest, now, id],
    );
    return n === 1;
  }

  /** Marks an unanswered operation timed out (its answer may still arrive and replace this). */
  async timedOut(id: string, now: number): Promise<boolean> {
    return (await this.db.run("UPDATE operations SET status = 'timeout', code = 'FERRY_E_OPERATION_TIMEOUT', finished_at = ? WHERE id = ? AND status = 'pending'", [now, id])) === 1;
  }

  async transcript(id: string): Promise<{ transcript: string | null; digest: string | null } | undefined> {
    const r = await this.db.get<{ transcript: string | null; transcript_digest: string | null }>('SELECT transcript, transcript_digest FROM operations WHERE id = ?', [id]);
    return r ? { transcript: r.transcript, digest: r.transcript_digest } : undefined;
  }

  async list(filter: { agentId?: string; batch?: string; limit: number }): Promise<OperationRecord[]> {
    const where: string[] = [];
    const params: (string | number)[] = [];
    if (filter.agentId) where.push('agent_id = ?') && params.push(filter.agentId);
    if (filter.batch) where.push('batch = ?') && params.push(filter.batch);
    const rows = await this.db.all<Row>(`SELECT ${COLUMNS} FROM operations${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY issued_at DESC, id DESC LIMIT ?`, [...params, filter.limit]);
    return rows.map(toRecord);
  }

  // ---- relayed stream chunks ----

  async putChunk(opId: string, n: number, body: string, now: number): Promise<void> {
    await this.db.run('INSERT INTO operation_chunks (op_id, n, body, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING', [opId, n, body, now]);
  }

  /** The chunks after `after`, in order, and deletes them (the reader has them). */
  async takeChunks(opId: string, after: number, limit = 64): Promise<{ n: number; body: string }[]> {
    const rows = await this.db.all<{ n: number; body: string }>('SELECT n, body FROM operation_chunks WHERE op_id = ? AND n > ? ORDER BY n LIMIT ?', [opId, after, limit]);
    if (rows.length) await this.db.run('DELETE FROM operation_chunks WHERE op_id = ? AND n <= ?', [opId, Number(rows[rows.length - 1]!.n)]);
    return rows.map((r) => ({ n: Number(r.n), body: r.body }));
  }

  pruneChunks(before: number): Promise<number> {
    return this.db.run('DELETE FROM operation_chunks WHERE created_at < ?', [before]);
  }
}

// Remote operations: the hub's signed "agent A of tenant T: restart
// payments/api now", and the pieces of their answers both sides compute the
// same way (the exec transcript and its digest).
//
// An operation is signed by the tenant root's `hub` role like a directive,
// bound to tenant and agent, numbered by a per-agent `seq` of its own
// (separate from directives'), and short-lived: it expires OPERATION_TTL_MS
// after it is issued, and an agent refuses one that claims to live longer
// than MAX_OPERATION_TTL_MS, so the replay window it must remember is small.
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { FerryError } from './errors.js';
import { NAME } from './release.js';
import { parseStrictJson } from './strict-json.js';

export const OPERATION_KINDS = ['restart', 'stop', 'start', 'scale', 'logs', 'stats', 'exec', 'networks', 'reconnect'] as const;
export type OperationKind = (typeof OPERATION_KINDS)[number];
/** Kinds that change what runs (the others only read). */
export const CHANGING_KINDS: readonly OperationKind[] = ['restart', 'stop', 'start', 'scale', 'exec', 'reconnect'];
/** Kinds whose answer is a stream (logs, exec output, stats while watched). */
export const STREAM_KINDS: readonly OperationKind[] = ['logs', 'exec', 'stats'];

export const OPERATION_TTL_MS = 60_000;
export const MAX_OPERATION_TTL_MS = 5 * 60_000;
export const OPERATION_ID = /^op_[0-9a-z]{8,40}$/;

const name = z.string().regex(NAME, 'lowercase letters, digits, _ and -, up to 63');
const time = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

/** What an operation asks, beyond its kind and target; each kind uses some (checked in `checkArgs`). */
export const OperationArgs = z.strictObject({
  /** scale: the replica count to keep until the next release. */
  replicas: z.number().int().min(0).max(100).optional(),
  /** restart, logs, exec, stats: one replica only. */
  replica: z.number().int().min(0).max(99).optional(),
  /** exec: the name of a command the policy lists for the service. */
  command: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/).optional(),
  /** exec: arguments after the listed command's argv, each matched by the policy's pattern. */
  argv: z.array(z.string().max(256)).max(32).optional(),
  /** exec: a command line for `sh -c`, only where the policy allows a shell for the service. */
  shell: z.string().min(1).max(4096).optional(),
  /** logs: from (ms since the epoch), until (ms), the last `tail` lines, then `follow`; `grep`: only lines containing it. */
  since: time.optional(),
  until: time.optional(),
  tail: z.number().int().min(0).max(100_000).optional(),
  follow: z.boolean().optional(),
  grep: z.string().min(1).max(256).optional(),
  /** stats with follow: the sampling interval. */
  intervalMs: z.number().int().min(1000).max(300_000).optional(),
  /** reconnect: only this network of the stack (its name in the release). */
  network: name.optional(),
});
export type OperationArgs = z.infer<typeof OperationArgs>;

export const Operation = z.strictObject({
  _type: z.literal('operation'),
  id: z.string().regex(OPERATION_ID),
  tenant: z.string().max(64),
  agent: z.string().max(64),
  seq: z.number().int().min(1),
  issuedAt: time,
  expiresAt: time,
  kind: z.enum(OPERATION_KINDS),
  /** Absent for stats and networks of every stack. */
  stack: name.optional(),
  service: name.optional(),
  args: OperationArgs,
});
export type Operation = z.infer<typeof Operation>;

const NEEDS_SERVICE: readonly OperationKind[] = ['restart', 'stop', 'start', 'scale', 'logs', 'exec', 'reconnect'];
const ALLOWED_ARGS: Record<OperationKind, readonly (keyof OperationArgs)[]> = {
  restart: ['replica'],
  stop: [],
  start: [],
  scale: ['replicas'],
  logs: ['replica', 'since', 'until', 'tail', 'follow', 'grep'],
  stats: ['replica', 'follow', 'intervalMs'],
  exec: ['replica', 'command', 'argv', 'shell'],
  networks: [],
  reconnect: ['network'],
};

/** The rules the schema cannot say: which arguments a kind takes, and what it needs. Throws FERRY_E_OPERATION_INVALID. */
export function checkArgs(o: Pick<Operation, 'kind' | 'stack' | 'service' | 'args'>): void {
  const bad = (why: string) => new FerryError('FERRY_E_OPERATION_INVALID', `${o.kind}: ${why}`);
  if (NEEDS_SERVICE.includes(o.kind) && (!o.stack || !o.service)) throw bad('needs a stack and a service (STACK/SERVICE)');
  if (o.service && !o.stack) throw bad('a service needs its stack');
  const extra = Object.keys(o.args).filter((k) => o.args[k as keyof OperationArgs] !== undefined && !ALLOWED_ARGS[o.kind].includes(k as keyof OperationArgs));
  if (extra.length) throw bad(`does not take ${extra.join(', ')}`);
  if (o.kind === 'scale' && o.args.replicas === undefined) throw bad('needs replicas');
  if (o.kind === 'exec' && !o.args.command === !o.args.shell) throw bad('needs exactly one of a command name or a shell command line');
  if (o.kind === 'exec' && o.args.shell && o.args.argv?.length) throw bad('a shell command line takes no separate arguments');
  if (o.args.since !== undefined && o.args.until !== undefined && o.args.until < o.args.since) throw bad('until is before since');
  if (o.args.follow && o.args.until !== undefined) throw bad('follow and until exclude each other');
}

export function parseOperation(payload: Uint8Array): Operation {
  const r = Operation.safeParse(parseStrictJson(payload));
  if (!r.success) {
    const i = r.error.issues[0];
    throw new FerryError('FERRY_E_PAYLOAD_INVALID', `operation: ${i?.path.join('.') || '(root)'}: ${i?.message}`);
  }
  const o = r.data;
  if (o.expiresAt <= o.issuedAt) throw new FerryError('FERRY_E_PAYLOAD_INVALID', 'operation: expiresAt is not after issuedAt');
  checkArgs(o);
  return o;
}

/** `payments/api`, `payments`, or `*` (every stack). */
export function targetText(o: { stack?: string | null; service?: string | null }): string {
  return o.stack ? (o.service ? `${o.stack}/${o.service}` : o.stack) : '*';
}

// ---- streams -------------------------------------------------------------------------

/**
 * One piece of a stream: a log line (with the engine's timestamp), a piece of
 * exec output, or a stats sample (JSON text). `src` names the container, as
 * `service#replica`; `fd` 1 is stdout, 2 stderr.
 */
export const StreamChunk = z.strictObject({
  src: z.string().max(140),
  fd: z.union([z.literal(1), z.literal(2)]),
  ts: z.string().max(40).optional(),
  text: z.string().max(16 * 1024),
});
export type StreamChunk = z.infer<typeof StreamChunk>;

export const STREAM_END_REASONS = ['eof', 'exit', 'cancelled', 'limit-bytes', 'limit-time', 'error'] as const;
export type StreamEndReason = (typeof STREAM_END_REASONS)[number];

/**
 * The bytes a chunk counts for in credits, the same on both sides whatever
 * the key order: its strings' UTF-8 bytes and a fixed overhead. Its JSON text
 * is at most six times this (escapes), which bounds a frame's size.
 */
export function chunkBytes(c: StreamChunk): number {
  return 16 + Buffer.byteLength(c.src) + Buffer.byteLength(c.ts ?? '') + Buffer.byteLength(c.text);
}

/**
 * A transcript's digest: sha256 over each chunk's canonical line, in order,
 * `{"fd":1,"src":"api#0","text":"..."}\n` (timestamps left out: exec output
 * has none). The agent computes it over what it sent, the hub over what it
 * received and keeps; the audit entry carries the hub's, so the transcript it
 * shows can be proved unaltered, and a difference between the two is a gap.
 */
export class TranscriptDigest {
  private readonly h = createHash('sha256');
  bytes = 0;

  add(c: StreamChunk): this {
    const line = transcriptLine(c);
    this.h.update(line);
    this.bytes += Buffer.byteLength(c.text);
    return this;
  }

  digest(): string {
    return 'sha256:' + this.h.copy().digest('hex');
  }
}

export function transcriptLine(c: StreamChunk): string {
  return JSON.stringify({ fd: c.fd, src: c.src, text: c.text }) + '\n';
}

/** The digest of a stored transcript (its lines as kept): what `ferry operation show --verify` recomputes. */
export function digestOfTranscript(text: string): string {
  return 'sha256:' + createHash('sha256').update(text).digest('hex');
}

/** How `ferry agent show` and `ferry-agent status` describe an operator's hold. */
export function holdText(h: { stack: string; service: string; state: string; replicas?: number | undefined; release: string; since: string; operation: string }): string {
  const stopped = h.state === 'stopped';
  return `${h.stack}/${h.service} ${stopped ? 'stopped' : `scaled to ${h.replicas}`} by an operator (${h.operation}, since ${h.since}; until ${stopped ? 'started' : 'scaled back'} or a release other than ${h.release})`;
}

// Every message on the agent channel, in one module. Each message has one
// schema and a TypeScript type of the same name derived from it. Frames are
// decoded exactly once, at the socket boundary, into a typed value or a
// FerryError with a stable code; the rest of the code switches exhaustively
// on `type`. Unknown types and unknown fields are errors, not ignored.
import { z } from 'zod';
import { Envelope } from './dsse.js';
import { ERRORS, FerryError, isErrorCode, type ErrorCode } from './errors.js';

export const PROTOCOL_VERSION = 1;
/** Largest frame either side accepts; bigger frames close the socket (1009). */
export const MAX_PAYLOAD = 1024 * 1024;

/** WebSocket close codes with meaning on this channel (4000-4999 are private). */
export const CLOSE = {
  normal: 1000,
  goingAway: 1001,
  protocolError: 1008,
  tooLarge: 1009,
  revoked: 4003,
  replaced: 4009,
} as const;

const str = (max = 256) => z.string().max(max);
const count = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

export const EngineFacts = z.strictObject({
  version: str(64),
  apiVersion: str(32),
  os: str(128),
  arch: str(32),
  kernel: str(128),
  containers: count,
  containersRunning: count,
  images: count,
  storageDriver: str(64),
});
export type EngineFacts = z.infer<typeof EngineFacts>;

export const WireError = z.strictObject({
  code: str(64),
  message: str(2048),
  hint: str(1024).optional(),
});
export type WireError = z.infer<typeof WireError>;

export const HostFacts = z.strictObject({
  hostname: str(255),
  platform: str(32),
  release: str(128),
  arch: str(32),
  cpus: count,
  memoryBytes: count,
});
export type HostFacts = z.infer<typeof HostFacts>;

// ---- agent -> hub ----------------------------------------------------------

export const Hello = z.strictObject({
  type: z.literal('hello'),
  protocol: z.number().int().positive(),
  agentVersion: str(64),
  host: HostFacts,
  /** Engine facts, or why they could not be read. */
  engine: z.union([EngineFacts, z.strictObject({ error: WireError })]),
  /** The newest audit checkpoint this agent witnessed, so the hub proves consistency from it. */
  witnessed: z.strictObject({ size: count, root: z.string().regex(/^[0-9a-f]{64}$/) }).nullable().optional(),
});
export type Hello = z.infer<typeof Hello>;

export const AgentError = z.strictObject({
  type: z.literal('error'),
  code: str(64),
  message: str(2048),
});
export type AgentError = z.infer<typeof AgentError>;

/** The agent's answer to a directive: accepted (persisted) or refused with a code. */
export const Ack = z.strictObject({
  type: z.literal('ack'),
  seq: z.number().int().min(1),
  digest: z.string().regex(/^sha256:[0-9a-f]{64}$/),
  accepted: z.boolean(),
  /** The directive was already accepted before (a redelivery). */
  duplicate: z.boolean().optional(),
  code: str(64).optional(),
  message: str(2048).optional(),
});
export type Ack = z.infer<typeof Ack>;

/** The agent's cosignature over an audit checkpoint it verified. */
export const Cosign = z.strictObject({
  type: z.literal('cosign'),
  log: str(64),
  size: count,
  root: z.string().regex(/^[0-9a-f]{64}$/),
  sig: str(128),
});
export type Cosign = z.infer<typeof Cosign>;

export const ReleaseStatus = z.strictObject({
  stack: str(64),
  version: str(64),
  state: z.enum(['applying', 'applied', 'failed', 'rolled-back']),
  code: str(64).optional(),
  message: str(1000).optional(),
  since: str(32),
  /** The version actually running for this stack (after a rollback, the last good one). */
  runningVersion: str(64).nullable(),
});
export type ReleaseStatus = z.infer<typeof ReleaseStatus>;

export const ServiceStatus = z.strictObject({
  stack: str(64),
  service: str(64),
  replica: count,
  release: str(64),
  status: z.enum(['created', 'running', 'paused', 'restarting', 'removing', 'exited', 'dead']),
  health: z.enum(['none', 'starting', 'healthy', 'unhealthy']),
  restarts: count,
  image: str(512),
});
export type ServiceStatus = z.infer<typeof ServiceStatus>;

/** A security alarm the agent raised and keeps (refusals.jsonl) until the institution acknowledges it. */
export const AgentAlarm = z.strictObject({
  at: str(32),
  /** FERRY_E_AUDIT_INCONSISTENT (a log that does not extend what it witnessed), FERRY_E_DIRECTIVE_FORK, ... */
  code: str(64),
  message: str(2048),
  /** What it refused: a directive, a trust root, an audit checkpoint. */
  kind: z.enum(['directive', 'roots', 'checkpoint']).optional(),
});
export type AgentAlarm = z.infer<typeof AgentAlarm>;

/** What runs on the agent: per release and per service container. Sent after every change. */
export const StatusMessage = z.strictObject({
  type: z.literal('status'),
  releases: z.array(ReleaseStatus).max(64),
  services: z.array(ServiceStatus).max(2000),
  /** Changes made by hand that the agent just put back. */
  drift: z.array(str(512)).max(100).optional(),
  /** Alarms not yet acknowledged on the agent's host, newest last (sent only when there are some). */
  alarms: z.array(AgentAlarm).max(20).optional(),
});
export type StatusMessage = z.infer<typeof StatusMessage>;

/** The agent's answer to a plan request: what one reconcile pass would do now. */
export const PlanMessage = z.strictObject({
  type: z.literal('plan'),
  id: str(64),
  steps: z.array(z.strictObject({ kind: str(32), what: str(1024) })).max(1000),
  waiting: z.array(str(1024)).max(1000),
  error: WireError.optional(),
});
export type PlanMessage = z.infer<typeof PlanMessage>;

/** One image on its way into the bank's registry (agent/relay): what `ferry-agent status` shows, and the hub later. */
export const ImageRelay = z.strictObject({
  /** As the release pins it: vendor-registry/repo@sha256:… */
  image: str(512),
  /** Where it runs from: primary-registry/prefix/repo@sha256:… */
  target: str(512),
  /** stack@version of each release that uses it. */
  releases: z.array(str(140)).max(64),
  /** queued, copying, verified (copied and checked now), present (was already there), failed (see code). */
  state: z.enum(['queued', 'copying', 'verified', 'present', 'failed']),
  bytesDone: count,
  /** Grows while an index is walked; 0 until the manifest is read. */
  bytesTotal: count,
  /** Source bytes per second over the copy so far. */
  bytesPerSecond: count.optional(),
  code: str(64).optional(),
  message: str(1000).optional(),
  /** Per bank registry (primary first): present, copying, behind (to be caught up), pending (waiting for the registry's own replication), failed. */
  registries: z.array(z.strictObject({ registry: str(255), state: z.enum(['present', 'copying', 'behind', 'pending', 'failed']), code: str(64).optional() })).max(9),
  since: str(32),
});
export type ImageRelay = z.infer<typeof ImageRelay>;

/** Progress of the relay, sent when an image changes state and at most every second while bytes move. */
export const RelayMessage = z.strictObject({
  type: z.literal('relay'),
  images: z.array(ImageRelay).max(512),
});
export type RelayMessage = z.infer<typeof RelayMessage>;

/**
 * The agent's own version and its self-upgrade (agent/upgrade): sent on every
 * connect and at each step of an upgrade. `installed` is the committed
 * version, `running` this process's (they differ while a new version is on
 * trial); `version` is what the latest upgrade was about and `state` how it
 * stands: installing (download, verify, unpack), trial (the new version runs
 * on probation), committed, reverted (the previous version came back by
 * itself; `code` and `message` say why), failed (never started: refused,
 * digest mismatch, no disk).
 */
export const UpgradeMessage = z.strictObject({
  type: z.literal('upgrade'),
  installed: str(64),
  running: str(64),
  previous: str(64).nullable(),
  pending: str(64).nullable(),
  version: str(64).nullable(),
  state: z.enum(['idle', 'installing', 'trial', 'committed', 'reverted', 'failed']),
  code: str(64).optional(),
  message: str(2048).optional(),
  since: str(32),
});
export type UpgradeMessage = z.infer<typeof UpgradeMessage>;

const agentMessages = { hello: Hello, error: AgentError, ack: Ack, cosign: Cosign, status: StatusMessage, plan: PlanMessage, relay: RelayMessage, upgrade: UpgradeMessage } as const;
export type AgentMessage = Hello | AgentError | Ack | Cosign | StatusMessage | PlanMessage | RelayMessage | UpgradeMessage;

// ---- hub -> agent ----------------------------------------------------------

export const Welcome = z.strictObject({
  type: z.literal('welcome'),
  agentId: str(64),
  tenant: str(64),
  heartbeatMs: z.number().int().positive(),
  serverTime: z.number().int().nonnegative(),
});
export type Welcome = z.infer<typeof Welcome>;

export const HubError = z.strictObject({
  type: z.literal('error'),
  code: str(64),
  message: str(2048),
  hint: str(1024).optional(),
});
export type HubError = z.infer<typeof HubError>;

/**
 * Signed desired state. Envelopes are checked for shape here and verified by
 * the agent (agent/verify.ts); roots carry the tenant's chain so an agent can
 * follow rotations.
 */
export const DirectiveMessage = z.strictObject({
  type: z.literal('directive'),
  directive: Envelope,
  releases: z.array(Envelope).max(64),
  roots: z.array(Envelope).max(64),
  /** The signed agent bundle statement the directive's `upgrade` names (agent self-upgrade), when it names one. */
  bundle: Envelope.optional(),
});
export type DirectiveMessage = z.infer<typeof DirectiveMessage>;

/** The tenant's trust root chain, pushed on connect and after a rotation. */
export const RootsMessage = z.strictObject({
  type: z.literal('roots'),
  roots: z.array(Envelope).max(64),
});
export type RootsMessage = z.infer<typeof RootsMessage>;

const hex32 = z.string().regex(/^[0-9a-f]{64}$/);

/**
 * A signed audit checkpoint for the agent's tenant, with a consistency proof
 * from the checkpoint the agent last witnessed, and the new entries about
 * this agent with their inclusion proofs.
 */
export const CheckpointMessage = z.strictObject({
  type: z.literal('checkpoint'),
  checkpoint: Envelope,
  fromSize: count.nullable(),
  consistency: z.array(hex32).max(64),
  entries: z
    .array(z.strictObject({ index: count, data: z.string().max(96 * 1024), proof: z.array(hex32).max(64) }))
    .max(200),
});
export type CheckpointMessage = z.infer<typeof CheckpointMessage>;

/** Asks the agent for its plan (a dry run); it answers with a `plan` message of the same id. */
export const PlanRequest = z.strictObject({ type: z.literal('plan-request'), id: str(64) });
export type PlanRequest = z.infer<typeof PlanRequest>;

/**
 * Pre-staging: releases a rollout will bring to this agent, sent when the
 * rollout is created. The agent verifies them as it would a directive's
 * releases (signatures, floor, local policy) and copies their images into the
 * bank's registry now, so the wave does not wait for bytes. Nothing runs.
 */
export const PrestageMessage = z.strictObject({
  type: z.literal('prestage'),
  /** The rollout, for logs. */
  rollout: str(64).optional(),
  releases: z.array(Envelope).min(1).max(64),
  roots: z.array(Envelope).max(64),
});
export type PrestageMessage = z.infer<typeof PrestageMessage>;

const hubMessages = { welcome: Welcome, error: HubError, directive: DirectiveMessage, roots: RootsMessage, checkpoint: CheckpointMessage, 'plan-request': PlanRequest, prestage: PrestageMessage } as const;
export type HubMessage = Welcome | HubError | DirectiveMessage | RootsMessage | CheckpointMessage | PlanRequest | PrestageMessage;

// ---- decoding ----------------------------------------------------------------

type SchemaMap = Record<string, z.ZodType>;

function decode<T>(schemas: SchemaMap, data: unknown): T {
  const text = typeof data === 'string' ? data : Buffer.isBuffer(data) ? data.toString('utf8') : null;
  if (text === null) throw new FerryError('FERRY_E_PROTOCOL_MALFORMED', 'binary frames are not part of the protocol');
  if (text.length > MAX_PAYLOAD) throw new FerryError('FERRY_E_PROTOCOL_TOO_LARGE', `${text.length} bytes`);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new FerryError('FERRY_E_PROTOCOL_MALFORMED', (err as Error).message);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new FerryError('FERRY_E_PROTOCOL_INVALID', 'a message must be a JSON object');
  }
  const type = (value as { type?: unknown }).type;
  if (typeof type !== 'string') throw new FerryError('FERRY_E_PROTOCOL_INVALID', 'message has no string "type"');
  const schema = Object.hasOwn(schemas, type) ? schemas[type] : undefined;
  if (!schema) throw new FerryError('FERRY_E_PROTOCOL_UNKNOWN_TYPE', JSON.stringify(type.slice(0, 64)));
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue && issue.path.length ? issue.path.join('.') : '(root)';
    throw new FerryError('FERRY_E_PROTOCOL_INVALID', `${type}: ${where}: ${issue?.message ?? 'invalid'}`);
  }
  return parsed.data as T;
}

/** Hub side: decode one frame from an agent. Throws FerryError. */
export function decodeAgentMessage(data: unknown): AgentMessage {
  return decode<AgentMessage>(agentMessages, data);
}

/** Agent side: decode one frame from the hub. Throws FerryError. */
export function decodeHubMessage(data: unknown): HubMessage {
  return decode<HubMessage>(hubMessages, data);
}

export function encode(msg: AgentMessage | HubMessage): string {
  return JSON.stringify(msg);
}

export function hubError(code: ErrorCode, detail?: string): HubError {
  const err = new FerryError(code, detail);
  return { type: 'error', code, message: err.message, hint: err.hint };
}

/** A code from the wire, mapped onto the catalogue (unknown codes stay visible). */
export function describeWireCode(code: string): string {
  return isErrorCode(code) ? ERRORS[code].hint : 'unknown error code (newer peer?)';
}

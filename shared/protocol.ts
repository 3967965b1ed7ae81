// Every message on the agent channel, in one module. Each message has one
// schema and a TypeScript type of the same name derived from it. Frames are
// decoded exactly once, at the socket boundary, into a typed value or a
// FerryError with a stable code; the rest of the code switches exhaustively
// on `type`. Unknown types and unknown fields are errors, not ignored.
import { z } from 'zod';
import { Envelope } from './dsse.js';
import { ERRORS, FerryError, isErrorCode, type ErrorCode } from './errors.js';
import { OPERATION_ID, STREAM_END_REASONS, StreamChunk } from './operation.js';

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

/** One verification job's outcome (x-ferry.verify), with its last output lines. */
export const JobResult = z.strictObject({
  service: str(64),
  state: z.enum(['running', 'passed', 'failed', 'timeout']),
  exitCode: z.number().int().nullable(),
  output: z.array(str(512)).max(20),
});
export type JobResult = z.infer<typeof JobResult>;

/** The verification jobs of a release's apply: they ran once it was up and healthy. */
export const Verification = z.strictObject({
  /** `<seq>.<digest>`: jobs run again for each apply. */
  run: str(64),
  state: z.enum(['running', 'passed', 'failed']),
  jobs: z.array(JobResult).max(16),
  since: str(32),
});
export type Verification = z.infer<typeof Verification>;

export const ReleaseStatus = z.strictObject({
  stack: str(64),
  version: str(64),
  state: z.enum(['applying', 'applied', 'failed', 'rolled-back']),
  code: str(64).optional(),
  message: str(1000).optional(),
  since: str(32),
  /** The version actually running for this stack (after a rollback, the last good one). */
  runningVersion: str(64).nullable(),
  /** Its verification jobs, for a release that has some (absent from agents before them). */
  verification: Verification.optional(),
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
  kind: z.enum(['directive', 'roots', 'checkpoint', 'operation']).optional(),
});
export type AgentAlarm = z.infer<typeof AgentAlarm>;

/** A service an operator stopped or scaled, as the agent keeps it (the reconciler leaves it so). */
export const OperatorHold = z.strictObject({
  stack: str(64),
  service: str(64),
  state: z.enum(['stopped', 'scaled']),
  /** scaled: the replica count kept. */
  replicas: count.optional(),
  /** The release version it holds for; a different release of the stack ends it. */
  release: str(64),
  since: str(32),
  /** The operation that set it. */
  operation: str(64),
});
export type OperatorHold = z.infer<typeof OperatorHold>;

/** What runs on the agent: per release and per service container. Sent after every change. */
export const StatusMessage = z.strictObject({
  type: z.literal('status'),
  releases: z.array(ReleaseStatus).max(64),
  services: z.array(ServiceStatus).max(2000),
  /** Changes made by hand that the agent just put back. */
  drift: z.array(str(512)).max(100).optional(),
  /** Alarms not yet acknowledged on the agent's host, newest last (sent only when there are some). */
  alarms: z.array(AgentAlarm).max(20).optional(),
  /** Services an operator stopped or scaled (remote operations): kept so until started, scaled back, or a new release. */
  holds: z.array(OperatorHold).max(200).optional(),
  /** The coarse sample of every container (remote operations' stats), taken every few minutes for the fleet view. */
  samples: z.array(z.lazy(() => ContainerStats)).max(500).optional(),
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

export const CHECK_STATES = ['pending', 'passing', 'failing'] as const;
export type CheckState = (typeof CHECK_STATES)[number];

/** A check changed state (agent/checks): numbered per agent, kept on the agent until the hub acknowledges it. */
export const CheckTransition = z.strictObject({
  n: z.number().int().min(1),
  stack: str(64),
  check: str(64),
  from: z.enum(CHECK_STATES),
  to: z.enum(CHECK_STATES),
  /** ms since the epoch, the agent's clock. */
  at: count,
  /** Why it failed: `web#0 (172.18.0.3): got 502, expected 200`. */
  error: str(512).optional(),
});
export type CheckTransition = z.infer<typeof CheckTransition>;

/** One check as it is now (the snapshot replaces what the hub holds for the agent). */
export const CheckInfo = z.strictObject({
  stack: str(64),
  check: str(64),
  /** The release that declares it. */
  version: str(64),
  kind: z.enum(['http', 'tcp', 'command']),
  /** URL, address, or service and command. */
  target: str(512),
  state: z.enum(CHECK_STATES),
  since: count,
  error: str(512).optional(),
});
export type CheckInfo = z.infer<typeof CheckInfo>;

/** Check transitions not yet acknowledged, oldest first, and (on connect, and when the set of checks changes) every check's state. */
export const ChecksMessage = z.strictObject({
  type: z.literal('checks'),
  transitions: z.array(CheckTransition).max(500),
  snapshot: z.array(CheckInfo).max(2000).optional(),
});
export type ChecksMessage = z.infer<typeof ChecksMessage>;

/** An autoscaled service's replicas changed (agent/autoscale). */
export const ScaleChange = z.strictObject({
  stack: str(64),
  service: str(64),
  from: count,
  to: count,
  /** What decided it: `cpu 91% > 70% target`, `policy caps at 3`. */
  reason: str(256),
  at: count,
});
export type ScaleChange = z.infer<typeof ScaleChange>;

/**
 * Low-rate figures of one agent (about once a minute): what the hub's
 * /metrics aggregates per tenant. Counts only; nothing that names a container.
 */
export const FiguresMessage = z.strictObject({
  type: z.literal('figures'),
  containers: count,
  containersRunning: count,
  servicesHealthy: count,
  servicesUnhealthy: count,
  checksPassing: count,
  checksFailing: count,
  checksPending: count,
  /** The agent process itself. */
  rssBytes: count,
  cpuSeconds: z.number().nonnegative().max(1e12),
  /** Autoscale changes since the last figures (each is also audited by the hub). */
  scaled: z.array(ScaleChange).max(100).optional(),
});
export type FiguresMessage = z.infer<typeof FiguresMessage>;


// ---- remote operations (agent/operations, hub/operations) ---------------------------

const opId = z.string().regex(OPERATION_ID);


/** One container's figures at one moment (stats). */
export const ContainerStats = z.strictObject({
  /** service#replica */
  src: str(140),
  stack: str(64),
  name: str(255),
  state: str(32),
  cpuPercent: z.number().nonnegative().max(100_000),
  memoryBytes: count,
  memoryLimitBytes: count,
  netRxBytes: count,
  netTxBytes: count,
  pids: count,
  restarts: count,
  at: str(32),
});
export type ContainerStats = z.infer<typeof ContainerStats>;

/** A stack's network on the agent and who is attached (networks), and which containers should be but are not. */
export const NetworkView = z.strictObject({
  stack: str(64),
  /** Its name in the release. */
  network: str(64),
  engineName: str(255),
  present: z.boolean(),
  internal: z.boolean(),
  attached: z.array(z.strictObject({ src: str(140), name: str(255), aliases: z.array(str(255)).max(16) })).max(500),
  /** service#replica of containers that should be attached and are not (drift: `ferry network reconnect`). */
  missing: z.array(str(140)).max(500),
});
export type NetworkView = z.infer<typeof NetworkView>;

/** What an operation did, by kind: the containers it touched, the steps the reconciler ran, samples, networks. */
export const OperationResult = z.strictObject({
  containers: z.array(str(255)).max(500).optional(),
  steps: z.array(str(1024)).max(500).optional(),
  hold: OperatorHold.nullable().optional(),
  stats: z.array(ContainerStats).max(500).optional(),
  networks: z.array(NetworkView).max(200).optional(),
});
export type OperationResult = z.infer<typeof OperationResult>;

/**
 * The agent's answer to an operation (after its stream, if it has one): done,
 * or refused or failed with a code. A stream's end says why it ended, how
 * many bytes it carried, and the agent's digest over what it sent.
 */
export const OperationResultMessage = z.strictObject({
  type: z.literal('operation-result'),
  id: opId,
  ok: z.boolean(),
  code: str(64).optional(),
  message: str(2048).optional(),
  result: OperationResult.optional(),
  /** exec: the command's exit code. */
  exitCode: z.number().int().min(-1).max(255).optional(),
  stream: z.strictObject({ reason: z.enum(STREAM_END_REASONS), bytes: count, frames: count, digest: z.string().regex(/^sha256:[0-9a-f]{64}$/).optional() }).optional(),
  durationMs: count,
});
export type OperationResultMessage = z.infer<typeof OperationResultMessage>;

/** Part of an operation's stream; sent only within the credit the hub granted. `n` counts frames from 0. */
export const StreamData = z.strictObject({
  type: z.literal('stream-data'),
  id: opId,
  n: count,
  chunks: z.array(StreamChunk).min(1).max(4096),
});
export type StreamData = z.infer<typeof StreamData>;


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

const agentMessages = { hello: Hello, error: AgentError, ack: Ack, cosign: Cosign, status: StatusMessage, plan: PlanMessage, relay: RelayMessage, checks: ChecksMessage, figures: FiguresMessage, 'operation-result': OperationResultMessage, 'stream-data': StreamData, upgrade: UpgradeMessage } as const;
export type AgentMessage = Hello | AgentError | Ack | Cosign | StatusMessage | PlanMessage | RelayMessage | ChecksMessage | FiguresMessage | OperationResultMessage | StreamData | UpgradeMessage;

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

/** The hub stored the agent's check transitions up to `upTo`; the agent forgets them. */
export const ChecksAck = z.strictObject({ type: z.literal('checks-ack'), upTo: z.number().int().min(1) });
export type ChecksAck = z.infer<typeof ChecksAck>;


/**
 * A signed operation (hub/operations). `id` repeats the signed payload's id so
 * the agent can answer one it cannot verify; it must match once verified.
 * `credit`: the stream bytes the hub has room for now (stream kinds).
 */
export const OperationMessage = z.strictObject({
  type: z.literal('operation'),
  id: z.string().regex(OPERATION_ID),
  operation: Envelope,
  credit: count.max(16 * MAX_PAYLOAD),
});
export type OperationMessage = z.infer<typeof OperationMessage>;

/** More room for an operation's stream: the client read this many bytes. */
export const StreamCredit = z.strictObject({ type: z.literal('stream-credit'), id: z.string().regex(OPERATION_ID), bytes: count.min(1).max(16 * MAX_PAYLOAD) });
export type StreamCredit = z.infer<typeof StreamCredit>;

/** The client went away (or the hub gives up): the agent ends the stream, reason `cancelled`. */
export const StreamCancel = z.strictObject({ type: z.literal('stream-cancel'), id: z.string().regex(OPERATION_ID), reason: str(256) });
export type StreamCancel = z.infer<typeof StreamCancel>;


const hubMessages = { welcome: Welcome, error: HubError, directive: DirectiveMessage, roots: RootsMessage, checkpoint: CheckpointMessage, 'plan-request': PlanRequest, prestage: PrestageMessage, 'checks-ack': ChecksAck, operation: OperationMessage, 'stream-credit': StreamCredit, 'stream-cancel': StreamCancel } as const;
export type HubMessage = Welcome | HubError | DirectiveMessage | RootsMessage | CheckpointMessage | PlanRequest | PrestageMessage | ChecksAck | OperationMessage | StreamCredit | StreamCancel;

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

// The audit log's documents, shared by the hub (writes), the agents (witness)
// and `ferry audit verify` (checks, trusting nothing the hub says).
//
// Each log (one per tenant, plus "_hub" for hub-wide operations) is an
// RFC 6962 Merkle tree over entries. An entry's bytes are canonical JSON that
// includes its own log name and index, so moving an entry is an edit. Personal
// data (operator names, chat user ids) enters the leaf only as a salted
// commitment; the salt and value live beside the log and can be erased
// without changing any hash.
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { FerryError } from './errors.js';
import { parseStrictJson } from './strict-json.js';

export const HUB_LOG = '_hub';
export const LOG_NAME = /^(_hub|[a-z0-9][a-z0-9-]{0,62})$/;

const scalar = z.union([z.string().max(4096), z.number().int(), z.boolean(), z.null()]);

export const AuditEntry = z.strictObject({
  log: z.string().regex(LOG_NAME),
  index: z.number().int().nonnegative(),
  at: z.number().int().nonnegative(),
  /** Who: an operator's token id, an agent id, the hub itself, or a chat user. */
  actor: z.strictObject({ kind: z.enum(['operator', 'agent', 'hub', 'chat', 'anonymous']), id: z.string().max(128).nullable() }),
  /** From where: cli, api (other clients), console, chat, agent, hub. The client names itself; the hub cannot prove it. */
  surface: z.enum(['cli', 'api', 'console', 'chat', 'agent', 'hub']),
  /** What, as noun.verb: tenant.create, agent.revoke, directive.refused, ... */
  action: z.string().regex(/^[a-z][a-z0-9-]*(\.[a-z][a-z0-9-]*)+$/).max(64),
  target: z.strictObject({ type: z.string().max(32), id: z.string().max(256) }).nullable(),
  /** Agents the operation concerns (for agents to find what is about them). */
  agents: z.array(z.string().max(64)).max(10_000),
  outcome: z.enum(['ok', 'refused', 'failed']),
  details: z.record(z.string().max(64), scalar),
  /** field -> hex sha256(salt || value): personal data, erasable off the log. */
  personal: z.record(z.string().max(64), z.string().regex(/^[0-9a-f]{64}$/)),
});
export type AuditEntry = z.infer<typeof AuditEntry>;

export const Checkpoint = z.strictObject({
  _type: z.literal('checkpoint'),
  log: z.string().regex(LOG_NAME),
  size: z.number().int().nonnegative(),
  /** hex of the RFC 6962 root of the first `size` entries. */
  root: z.string().regex(/^[0-9a-f]{64}$/),
  at: z.number().int().nonnegative(),
});
export type Checkpoint = z.infer<typeof Checkpoint>;

export function parseEntry(data: Uint8Array): AuditEntry {
  const r = AuditEntry.safeParse(parseStrictJson(data));
  if (!r.success) throw new FerryError('FERRY_E_PAYLOAD_INVALID', `audit entry: ${r.error.issues[0]?.path.join('.')}: ${r.error.issues[0]?.message}`);
  return r.data;
}

export function parseCheckpoint(payload: Uint8Array): Checkpoint {
  const r = Checkpoint.safeParse(parseStrictJson(payload));
  if (!r.success) throw new FerryError('FERRY_E_PAYLOAD_INVALID', `checkpoint: ${r.error.issues[0]?.path.join('.')}: ${r.error.issues[0]?.message}`);
  return r.data;
}

/** The commitment that stands in the leaf for a piece of personal data. */
export function commitment(salt: Uint8Array, value: string): string {
  return createHash('sha256').update(salt).update(Buffer.from(value, 'utf8')).digest('hex');
}

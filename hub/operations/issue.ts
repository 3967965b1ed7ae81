// Signing operations: the hub's statement "agent A of tenant T: do this to
// STACK/SERVICE now", under the tenant root's hub key, with the agent's next
// operation seq and a short expiry. Stored before it is sent (in the
// caller's transaction, with its audit entry).
import { randomBytes } from 'node:crypto';
import { PAYLOAD_TYPES, addSignature, createEnvelope, signatureFor } from '../../shared/dsse.js';
import { FerryError } from '../../shared/errors.js';
import type { KeyPair } from '../../shared/keys.js';
import { OPERATION_TTL_MS, checkArgs, type Operation, type OperationArgs, type OperationKind } from '../../shared/operation.js';
import { canonicalJson } from '../../shared/release.js';
import type { OperationRecord } from '../store/operations.js';
import type { Store } from '../store/store.js';
import type { TrustRoots } from '../trust.js';

export interface OperationInput {
  kind: OperationKind;
  stack?: string;
  service?: string;
  args: OperationArgs;
}

export const newOperationId = () => `op_${randomBytes(10).toString('hex')}`;

export class OperationIssuer {
  constructor(
    private readonly store: Store,
    private readonly roots: TrustRoots,
    private readonly hubKey: KeyPair,
  ) {}

  /** Signs and stores one operation for the agent; call inside a transaction. */
  async issue(agentId: string, input: OperationInput, by: { userId: string | null; surface: string | null }, now: number, batch: string | null = null): Promise<OperationRecord> {
    const args = Object.fromEntries(Object.entries(input.args).filter(([, v]) => v !== undefined)) as OperationArgs;
    checkArgs({ kind: input.kind, stack: input.stack, service: input.service, args });
    const agent = await this.store.fleet.agentTenant(agentId);
    if (agent.revokedAt !== null) throw new FerryError('FERRY_E_AGENT_REVOKED', agentId);
    if (!(await this.roots.active(agent.tenant))) throw new FerryError('FERRY_E_ROOT_MISSING', `tenant ${agent.tenant}: the agent verifies operations with its trust root`);
    const seq = await this.store.operations.nextSeq(agentId);
    const doc: Operation = {
      _type: 'operation',
      id: newOperationId(),
      tenant: agent.tenant,
      agent: agentId,
      seq,
      issuedAt: now,
      expiresAt: now + OPERATION_TTL_MS,
      kind: input.kind,
      ...(input.stack ? { stack: input.stack } : {}),
      ...(input.service ? { service: input.service } : {}),
      args,
    };
    let env = createEnvelope(PAYLOAD_TYPES.operation, canonicalJson(doc));
    env = addSignature(env, signatureFor(env, this.hubKey));
    const rec = { id: doc.id, agentId, tenant: agent.tenant, seq, kind: doc.kind, stack: doc.stack ?? null, service: doc.service ?? null, args, envelope: env, issuedAt: now, expiresAt: doc.expiresAt, createdBy: by.userId, surface: by.surface, batch };
    await this.store.operations.insert(rec);
    return (await this.store.operations.find(doc.id))!;
  }
}

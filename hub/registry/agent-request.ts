// Who sent a signed agent request (shared/auth.ts signRequest): the agents'
// plain HTTP endpoints — the registry origin, agent bundle downloads — are
// authenticated here, each request by itself. The agent's registered key
// must verify method, path, hub host, agent, nonce and time; a nonce works
// once (in memory, and with several replicas also claimed in the database);
// a revoked agent is refused.
import type { FastifyRequest } from 'fastify';
import { AUTH_HEADERS, checkSignedRequest } from '../../shared/auth.js';
import { FerryError } from '../../shared/errors.js';
import { decodePublicKey } from '../../shared/keys.js';
import type { HubContext } from '../http/context.js';

const NONCE_MS = 10 * 60_000;

export class AgentRequests {
  private readonly nonces = new Map<string, number>();

  constructor(private readonly ctx: HubContext) {}

  /** The agent that signed this request, not revoked; else FERRY_E_AGENT_AUTH_* / _UNKNOWN / _REVOKED. */
  async agentOf(req: FastifyRequest): Promise<{ id: string; tenant: string }> {
    const id = String(req.headers[AUTH_HEADERS.agent] ?? '').slice(0, 64);
    const agent = id ? await this.ctx.store.fleet.findAgent(id) : undefined;
    const now = this.ctx.now();
    const host = this.ctx.publicHost ?? (req.headers.host ?? '').toLowerCase();
    let fresh = false;
    checkSignedRequest(req.headers, {
      method: req.method,
      path: req.url,
      host,
      now,
      publicKey: (x) => (agent && agent.id === x ? decodePublicKey(agent.publicKey) : null),
      firstUse: (x, nonce) => {
        const k = `${x}\n${nonce}`;
        if (this.nonces.has(k)) return false;
        if (this.nonces.size > 100_000) for (const [n, at] of this.nonces) if (at < now) this.nonces.delete(n);
        this.nonces.set(k, now + NONCE_MS);
        fresh = true;
        return true;
      },
    });
    if (!agent) throw new FerryError('FERRY_E_AGENT_UNKNOWN', id);
    if (fresh && this.ctx.cluster.shared && !(await this.ctx.store.fleet.claimNonce(`reg:${agent.id}:${String(req.headers[AUTH_HEADERS.nonce])}`, now + NONCE_MS))) {
      throw new FerryError('FERRY_E_AGENT_AUTH_REPLAYED', 'nonce already used (on another replica)');
    }
    if (agent.revokedAt !== null) throw new FerryError('FERRY_E_AGENT_REVOKED', agent.id);
    return { id: agent.id, tenant: agent.tenant };
  }
}

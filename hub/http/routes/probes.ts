// Probes and the agents' own unauthenticated endpoints (agents prove
// themselves with their key: the challenge they sign, the enrollment proof).
import { z } from 'zod';
import { CHALLENGE_PATH, ENROLL_PATH, enrollStatement } from '../../../shared/auth.js';
import { FerryError } from '../../../shared/errors.js';
import { decodePublicKey, decodeSignature, fingerprint, verify } from '../../../shared/keys.js';
import { VERSION } from '../../../shared/version.js';
import { LABEL_KEY, LABEL_VALUE } from '../../store/fleet.js';
import type { RouteDef } from '../app.js';
import type { HubContext } from '../context.js';

type Route = <B, Q>(def: RouteDef<B, Q>) => void;

export const Labels = z
  .record(z.string().regex(LABEL_KEY, 'label keys: lowercase letters, digits, . _ / -'), z.string().regex(LABEL_VALUE, 'label values: letters, digits, . _ -'))
  .refine((l) => Object.keys(l).length <= 64, 'at most 64 labels');

const EnrollBody = z.strictObject({
  token: z.string().min(1).max(256),
  publicKey: z.string().max(64),
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'agent names: letters, digits, . _ -, up to 63'),
  labels: Labels.default({}),
  proof: z.string().max(128),
});

export function probeRoutes(route: Route, ctx: HubContext): void {
  route({ method: 'GET', url: '/livez', access: { public: 'liveness probe' }, rateLimit: false, handler: () => ({ status: 'ok', version: VERSION }) });
  route({
    method: 'GET',
    url: '/readyz',
    access: { public: 'readiness probe' },
    rateLimit: false,
    handler: async () => {
      if (!ctx.isReady()) throw new FerryError('FERRY_E_UNAVAILABLE');
      await ctx.store.ping();
      return { status: 'ready', version: VERSION, agentsConnected: ctx.gateway.connectedCount, store: ctx.store.backend, replica: ctx.cluster.replicaId, leader: ctx.cluster.leader };
    },
  });

  // Connection: close — the agent's next request is the WebSocket upgrade on a new connection,
  // so an idle keep-alive socket per handshake would only hold a file descriptor (bench/connections).
  route({
    method: 'GET',
    url: CHALLENGE_PATH,
    access: { public: 'agents: a nonce to sign' },
    rateLimit: false,
    handler: ({ reply }) => {
      void reply.header('connection', 'close');
      return ctx.challenges.issue(ctx.now());
    },
  });
  route({
    method: 'POST',
    url: ENROLL_PATH,
    access: { public: 'agents: enrollment with a single-use token' },
    // A bank may enroll a whole site at once from behind one NAT address; junk tokens cost an index read.
    rateLimit: { max: 1200, timeWindow: 60_000 },
    body: EnrollBody,
    status: 201,
    handler: async ({ req, body }) => {
      // The token first: junk costs a hash and an index read, not a signature check.
      await ctx.store.fleet.checkEnrollmentToken(body.token, ctx.now());
      const pub = decodePublicKey(body.publicKey);
      const host = (ctx.publicHost ?? req.headers.host ?? '').toLowerCase();
      const proof = decodeSignature(body.proof);
      if (!proof || !verify(enrollStatement({ host, token: body.token, publicKey: body.publicKey }), proof, pub)) {
        throw new FerryError('FERRY_E_ENROLL_PROOF', `for host ${host}`);
      }
      const agent = await ctx.store.tx(async () => {
        const a = await ctx.store.fleet.enroll({ token: body.token, publicKey: body.publicKey, name: body.name, labels: body.labels }, ctx.now());
        await ctx.audit.append(
          { log: a.tenant, actor: { kind: 'agent', id: a.id }, surface: 'agent', action: 'agent.enroll', target: { type: 'agent', id: a.id }, agents: [a.id], details: { name: a.name, fingerprint: fingerprint(pub), labels: JSON.stringify(a.labels) } },
          ctx.now(),
        );
        return a;
      });
      ctx.log.info({ agentId: agent.id, tenant: agent.tenant, name: agent.name }, 'agent enrolled');
      return { agentId: agent.id, tenant: agent.tenant, name: agent.name, labels: agent.labels, fingerprint: fingerprint(pub), roots: await ctx.trust.chain(agent.tenant) };
    },
  });
}

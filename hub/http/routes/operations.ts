// Remote operations (hub/operations): restart, stop, start, scale and network
// reconnect of a service on one agent or on the agents a selector picks;
// logs, exec and stats streamed as NDJSON (`{"type":"operation"}` first, then
// `{"type":"data","chunks":[...]}` lines, then `{"type":"end","operation":...}`);
// networks; an operation's record and an exec's transcript. Every request is
// audited with who asked (operation.request) and every answer with what the
// agent did (operation.result, recorded by hub/operations).
import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { FerryError } from '../../../shared/errors.js';
import { OPERATION_ID, targetText, type OperationKind, type StreamChunk } from '../../../shared/operation.js';
import { NAME } from '../../../shared/release.js';
import type { OperationInput } from '../../operations/issue.js';
import { planBatch, runBatch } from '../../operations/batch.js';
import type { OperationRecord } from '../../store/operations.js';
import { agentOf, listScope, type Resolver } from '../access.js';
import type { RouteDef } from '../app.js';
import { audited, type HubContext } from '../context.js';
import { actorOf, type Principal } from '../principal.js';
import { iso } from '../views.js';

type Route = <B, Q>(def: RouteDef<B, Q>) => void;

const name = z.string().regex(NAME);
const replica = z.number().int().min(0).max(99).optional();
/** What the hub waits for an answer, by kind (the agent may first wait for an apply in progress). */
const TIMEOUT_MS: Record<OperationKind, number> = { restart: 600_000, stop: 600_000, start: 600_000, scale: 600_000, reconnect: 120_000, networks: 60_000, stats: 3_660_000, logs: 3_660_000, exec: 3_660_000 };

const ServiceOp = z.strictObject({
  kind: z.enum(['restart', 'stop', 'start', 'scale', 'reconnect']),
  stack: name,
  service: name,
  replica,
  replicas: z.number().int().min(0).max(100).optional(),
  network: name.optional(),
});
const BatchBody = ServiceOp.extend({
  /** The selector language of rollouts (hub/rollouts/selector.ts). */
  selector: z.string().max(2000),
  waves: z.string().max(400).default('100%'),
  maxFailures: z.number().int().min(0).max(100_000).default(0),
  /** The plan's hash (POST /v1/operations/plan), needed when more than one agent is selected. */
  confirm: z.string().max(80).optional(),
});
const ExecBody = z.strictObject({ stack: name, service: name, replica, command: z.string().max(64).optional(), argv: z.array(z.string().max(256)).max(32).optional(), shell: z.string().max(4096).optional() });
const ms = z.coerce.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
const bool = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');
const LogsQuery = z.strictObject({ stack: name, service: name, replica: z.coerce.number().int().min(0).max(99).optional(), since: ms.optional(), until: ms.optional(), tail: z.coerce.number().int().min(0).max(100_000).optional(), follow: bool.optional(), grep: z.string().min(1).max(256).optional() });
const StatsQuery = z.strictObject({ stack: name.optional(), service: name.optional(), replica: z.coerce.number().int().min(0).max(99).optional(), follow: bool.optional(), intervalMs: z.coerce.number().int().min(1000).max(300_000).optional() });
const NetworksQuery = z.strictObject({ stack: name.optional() });
const ListQuery = z.strictObject({ limit: z.coerce.number().int().min(1).max(500).default(50) });

export function operationView(o: OperationRecord) {
  return {
    id: o.id,
    agent: o.agentId,
    tenant: o.tenant,
    seq: o.seq,
    kind: o.kind,
    target: targetText(o),
    stack: o.stack,
    service: o.service,
    args: o.args,
    batch: o.batch,
    status: o.status,
    code: o.code,
    message: o.message,
    result: o.result,
    exitCode: o.exitCode,
    bytes: o.bytes,
    durationMs: o.durationMs,
    streamReason: o.streamReason,
    transcriptDigest: o.transcriptDigest,
    agentDigest: o.agentDigest,
    issuedAt: iso(o.issuedAt),
    expiresAt: iso(o.expiresAt),
    finishedAt: iso(o.finishedAt),
  };
}

/** An operation in the path: it belongs to its agent's tenant. */
const operationOf =
  (ctx: HubContext): Resolver =>
  async (req: FastifyRequest) => {
    const id = String((req.params as { id?: string }).id ?? '').slice(0, 64);
    const what = `operation ${id}`;
    const o = OPERATION_ID.test(id) ? await ctx.store.operations.find(id) : undefined;
    if (!o) throw new FerryError('FERRY_E_NOT_FOUND', what);
    return { tenants: [o.tenant], what };
  };

function inputOf(b: z.infer<typeof ServiceOp>): OperationInput {
  return { kind: b.kind, stack: b.stack, service: b.service, args: { replica: b.replica, replicas: b.replicas, network: b.network } };
}

export function operationRoutes(route: Route, ctx: HubContext): void {
  const { store } = ctx;

  /** Issues (signed, stored, audited in one transaction) an operation for a connected agent. */
  const issue = async (agentId: string, input: OperationInput, principal: Principal, batch: string | null = null): Promise<OperationRecord> => {
    const a = await store.fleet.agent(agentId);
    ctx.operations.reachable(a.id, ctx.gateway.presence.isConnected(ctx.gateway.presence.overlay(a)));
    const who = actorOf(principal);
    return audited(
      ctx,
      principal,
      () => ctx.issuer.issue(a.id, input, { userId: who.userId, surface: who.surface }, ctx.now(), batch),
      (o) => ({ log: o.tenant, action: 'operation.request', target: { type: 'operation', id: o.id }, agents: [o.agentId], details: { operation: o.id, kind: o.kind, target: targetText(o), seq: o.seq, args: JSON.stringify(o.args).slice(0, 4096), ...(batch ? { batch } : {}) } }),
    );
  };

  /** An NDJSON stream of the operation's chunks, then its record. */
  const stream = async (reply: FastifyReply, rec: OperationRecord) => {
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', 'x-ferry-operation': rec.id });
    res.socket?.setNoDelay(true);
    const closed = new AbortController();
    res.on('close', () => closed.abort());
    const line = (v: unknown) =>
      new Promise<void>((resolve) => {
        if (res.destroyed || res.writableEnded) return resolve();
        if (res.write(JSON.stringify(v) + '\n')) return resolve();
        const done = () => {
          res.off('drain', done);
          res.off('close', done);
          resolve();
        };
        res.once('drain', done);
        res.once('close', done);
      });
    await line({ type: 'operation', operation: operationView(rec) });
    const final = await ctx.operations.stream(rec, { write: (chunks: StreamChunk[]) => line({ type: 'data', chunks }), closed: closed.signal }, TIMEOUT_MS[rec.kind]);
    await line({ type: 'end', operation: operationView(final) });
    res.end();
  };

  route({
    method: 'POST',
    url: '/v1/agents/:id/operations',
    access: { tenant: 'operate', of: agentOf(store) },
    body: ServiceOp,
    handler: async ({ params, body, principal }) => {
      const rec = await issue(params.id!, inputOf(body), principal);
      return operationView(await ctx.operations.run(rec, TIMEOUT_MS[rec.kind]));
    },
  });
  route({
    method: 'POST',
    url: '/v1/agents/:id/exec',
    access: { tenant: 'exec', of: agentOf(store) },
    body: ExecBody,
    handler: async ({ params, body, principal, reply }) => {
      const rec = await issue(params.id!, { kind: 'exec', stack: body.stack, service: body.service, args: { replica: body.replica, command: body.command, argv: body.argv, shell: body.shell } }, principal);
      await stream(reply, rec);
    },
  });
  route({
    method: 'GET',
    url: '/v1/agents/:id/logs',
    access: { tenant: 'operate', of: agentOf(store) },
    query: LogsQuery,
    handler: async ({ params, query, principal, reply }) => {
      const { stack, service, ...args } = query;
      const rec = await issue(params.id!, { kind: 'logs', stack, service, args }, principal);
      await stream(reply, rec);
    },
  });
  route({
    method: 'GET',
    url: '/v1/agents/:id/stats',
    access: { tenant: 'read', of: agentOf(store) },
    query: StatsQuery,
    handler: async ({ params, query, principal, reply }) => {
      const { stack, service, ...args } = query;
      const rec = await issue(params.id!, { kind: 'stats', stack, service, args }, principal);
      if (args.follow) return void (await stream(reply, rec));
      return operationView(await ctx.operations.run(rec, 60_000));
    },
  });
  route({
    method: 'GET',
    url: '/v1/agents/:id/networks',
    access: { tenant: 'read', of: agentOf(store) },
    query: NetworksQuery,
    handler: async ({ params, query, principal }) => {
      const rec = await issue(params.id!, { kind: 'networks', stack: query.stack, args: {} }, principal);
      return operationView(await ctx.operations.run(rec, TIMEOUT_MS.networks));
    },
  });
  route({
    method: 'GET',
    url: '/v1/agents/:id/operations',
    access: { tenant: 'read', of: agentOf(store) },
    query: ListQuery,
    handler: async ({ params, query }) => ({ operations: (await store.operations.list({ agentId: params.id!, limit: query.limit })).map(operationView) }),
  });
  route({
    method: 'GET',
    url: '/v1/operations/:id',
    access: { tenant: 'read', of: operationOf(ctx) },
    handler: async ({ params }) => operationView((await store.operations.find(params.id!))!),
  });
  // The exec transcript the hub kept, with the digest its audit entry carries.
  route({
    method: 'GET',
    url: '/v1/operations/:id/transcript',
    access: { tenant: 'exec', of: operationOf(ctx) },
    handler: async ({ params }) => {
      const t = (await store.operations.transcript(params.id!))!;
      if (t.transcript === null) throw new FerryError('FERRY_E_NOT_FOUND', `transcript of ${params.id} (only exec operations keep one, once answered)`);
      return { operation: params.id, digest: t.digest, lines: t.transcript.split('\n').filter(Boolean).map((l) => JSON.parse(l) as StreamChunk) };
    },
  });

  // ---- on the agents a selector picks ----
  const batchScope = async (principal: Principal) => {
    const scope = await listScope(store, principal, 'operate');
    if (scope !== null && scope.length === 0) throw new FerryError('FERRY_E_FORBIDDEN', `needs operate on at least one tenant; ${principal.userName} may operate nowhere`);
    return scope;
  };
  const batchInput = (b: z.infer<typeof BatchBody>) => ({ ...inputOf(b), selector: b.selector, waves: b.waves, maxFailures: b.maxFailures });
  route({
    method: 'POST',
    url: '/v1/operations/plan',
    access: { list: 'operate' },
    body: BatchBody,
    handler: async ({ body, principal }) => planBatch(store, batchInput(body), await batchScope(principal)),
  });
  route({
    method: 'POST',
    url: '/v1/operations',
    access: { list: 'operate' },
    body: BatchBody,
    handler: async ({ body, principal }) => {
      const plan = await planBatch(store, batchInput(body), await batchScope(principal));
      if (plan.agents.length > 1 && body.confirm !== plan.hash) {
        throw new FerryError('FERRY_E_CONFIRM_REQUIRED', `${plan.agents.length} agents in ${plan.waves.length} wave(s); ${body.confirm ? 'the plan changed since it was read' : 'no confirmation sent'}; plan hash now ${plan.hash}`);
      }
      const out = await runBatch(plan, body.maxFailures, async (agentId, batch) => ctx.operations.run(await issue(agentId, inputOf(body), principal, batch), TIMEOUT_MS[body.kind]));
      return { ...out, plan: { agents: plan.agents.length, waves: plan.waves, hash: plan.hash }, waves: out.waves.map((w) => ({ agents: w.agents.map((a) => ({ agent: a.agent, operation: a.operation ? operationView(a.operation) : null, ...(a.skipped ? { skipped: a.skipped } : {}) })) })) };
    },
  });
}

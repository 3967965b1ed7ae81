// API routes for rollouts, their event stream, and agent labels (what rollouts select on).
import { z } from 'zod';
import { agentView, audited, iso, surfaceOf, type ApiContext, type Call, type RouteFn } from './api.js';
import { parseEventQuery } from './events.js';
import { parseWith, readJson } from './http.js';
import { LABEL_KEY, LABEL_VALUE } from './store.js';
import { failures, inWave, type Command } from './rollouts/machine.js';
import type { Actor } from './rollouts/scheduler.js';
import { rolloutId, type RolloutRecord, type TargetRecord } from './rollouts/store.js';

const DAY_MS = 86_400_000;
const CreateBody = z.strictObject({
  stack: z.string().max(64),
  version: z.string().max(64),
  /** The selector language: see hub/rollouts/selector.ts and README. */
  selector: z.string().max(2000),
  waves: z.string().max(400).default('100%'),
  bakeMs: z.number().int().min(0).max(DAY_MS).default(0),
  maxFailures: z.number().int().min(0).max(100_000).default(0),
  onFailure: z.enum(['pause', 'rollback']).default('pause'),
  agentTimeoutMs: z.number().int().min(1000).max(7 * DAY_MS).default(30 * 60_000),
  onTimeout: z.enum(['failed', 'skip']).default('failed'),
  retryMs: z.number().int().min(100).max(DAY_MS).default(60_000),
});
const Labels = z.record(z.string().regex(LABEL_KEY, 'label keys: lowercase letters, digits, . _ / -'), z.string().regex(LABEL_VALUE, 'label values: letters, digits, . _ -'));
const LabelBody = z.strictObject({ set: Labels.default({}), remove: z.array(z.string().regex(LABEL_KEY)).max(64).default([]) });
const COMMANDS: readonly Command[] = ['pause', 'resume', 'promote', 'abort', 'rollback'];

export function rolloutSummary(r: RolloutRecord, targets: TargetRecord[]) {
  const count = (s: string) => targets.filter((t) => t.state === s).length;
  return {
    id: r.id,
    stack: r.stack,
    version: r.version,
    selector: r.selector,
    waveSpec: r.waveSpec,
    state: r.state,
    reason: r.reason,
    since: iso(r.since),
    wave: r.wave + 1,
    waves: r.waves.length,
    agents: targets.length,
    done: count('done'),
    failed: failures(targets),
    skipped: count('skipped'),
    reverted: count('reverted'),
    bakeMs: r.bakeMs,
    maxFailures: r.maxFailures,
    onFailure: r.onFailure,
    agentTimeoutMs: r.agentTimeoutMs,
    onTimeout: r.onTimeout,
    createdAt: iso(r.createdAt),
  };
}

export function rolloutView(r: RolloutRecord, targets: TargetRecord[]) {
  let from = 0;
  const waves = r.waves.map((reach, i) => {
    const mine = targets.filter((t) => t.position >= from && t.position < reach);
    from = reach;
    const started = i <= r.wave;
    const settled = mine.every((t) => ['done', 'skipped', 'failed', 'reverted', 'revert-failed'].includes(t.state));
    return { wave: i + 1, reach, agents: mine.length, state: !started ? 'pending' : settled ? 'complete' : 'in-progress', done: mine.filter((t) => t.state === 'done').length, failed: mine.filter((t) => t.state === 'failed').length };
  });
  return {
    ...rolloutSummary(r, targets),
    waveList: waves,
    targets: targets.map((t) => ({
      agent: t.agentId,
      tenant: t.tenant,
      position: t.position,
      wave: r.waves.findIndex((reach) => t.position < reach) + 1,
      started: inWave(r, t),
      state: t.state,
      seq: t.seq,
      previous: t.previous,
      code: t.code,
      startedAt: iso(t.startedAt),
      appliedAt: iso(t.appliedAt),
      retryAt: iso(t.retryAt),
      updatedAt: iso(t.updatedAt),
    })),
  };
}

function actorOf(call: Pick<Call, 'req' | 'principal'>): Actor & { tokenId: string | null } {
  const p = call.principal;
  return {
    actor: p ? { kind: 'operator', id: p.tokenId } : { kind: 'anonymous', id: null },
    surface: surfaceOf(call.req),
    personal: p ? { operator: p.name } : {},
    tokenId: p?.tokenId ?? null,
  };
}

export function rolloutRoutes(route: RouteFn, ctx: ApiContext): void {
  const rows = ctx.rollouts.rows;
  route(
    'POST',
    '/v1/rollouts',
    'operator',
    async (call) => {
      const body = parseWith(CreateBody, await readJson(call.req));
      const r = ctx.rollouts.create(body, actorOf(call));
      return rolloutView(r, rows.targets(r.id));
    },
    201,
  );
  route('GET', '/v1/rollouts', 'viewer', () => ({ rollouts: rows.list().map((r) => rolloutSummary(r, rows.targets(r.id))) }));
  route('GET', '/v1/rollouts/:id', 'viewer', ({ params }) => {
    const r = rows.get(params.id!);
    return rolloutView(r, rows.targets(r.id));
  });
  for (const cmd of COMMANDS) {
    route('POST', `/v1/rollouts/:id/${cmd}`, 'operator', (call) => {
      const r = ctx.rollouts.command(call.params.id!, cmd, actorOf(call));
      ctx.log.info({ rolloutId: r.id, cmd, by: call.principal?.name }, 'rollout command');
      return rolloutView(r, rows.targets(r.id));
    });
  }

  // Server-Sent Events: every rollout transition, resumable with Last-Event-ID or ?since= (hub/events.ts).
  route('GET', '/v1/events', 'viewer', ({ req, res, query }) => {
    const filter = parseEventQuery(query, req.headers['last-event-id']);
    if (filter.rollout !== null) rows.get(rolloutId(filter.rollout)); // FERRY_E_NOT_FOUND before the stream starts
    ctx.events.open(req, res, filter);
  });

  route('POST', '/v1/agents/:id/labels', 'operator', async (call) => {
    const body = parseWith(LabelBody, await readJson(call.req));
    const a = audited(
      ctx,
      call,
      () => ctx.store.setLabels(call.params.id!, body.set, body.remove),
      (a) => ({ log: a.tenant, action: 'agent.label', target: { type: 'agent', id: a.id }, agents: [a.id], details: { labels: JSON.stringify(a.labels) } }),
    );
    return agentView(a, ctx.gateway, ctx.directives);
  });
}

// What each chat command does: its access rule (the API route's own, applied
// by the same `authorise` as the API, to the same resolvers), its plan (for
// dangerous commands and --dry-run: what would happen, hashed so a
// confirmation cannot approve a changed plan), and its run, through the same
// code the API calls (ctx.rollouts, ctx.delivery, the store, `audited`).
// `EXECUTORS` is a mapped type over the grammar's ids: a grammar row
// without an executor is a compile error.
import type { FastifyRequest } from 'fastify';
import { HUB_LOG } from '../../shared/audit.js';
import { verifyLog } from '../../shared/audit-verify.js';
import { FerryError } from '../../shared/errors.js';
import { CLOSE } from '../../shared/protocol.js';
import { durationMs } from '../../shared/duration.js';
import { agentOf, authorise, listScope, type AccessRule } from '../http/access.js';
import { audited, type HubContext } from '../http/context.js';
import { actorOf, can, type Principal } from '../http/principal.js';
import { releaseOf } from '../http/routes/releases.js';
import { rolloutOf } from '../http/routes/rollouts.js';
import { agentView, releaseView, rolloutSummary, rolloutView } from '../http/views.js';
import type { Command } from '../rollouts/machine.js';
import { matches, parseSelector, type Selectable } from '../rollouts/selector.js';
import type { RoomRecord } from '../store/chat.js';
import { SUBSCRIPTIONS, type Subscription } from './config.js';
import type { CommandId, Parsed } from './grammar.js';
import { createLock, deployScope as lockScope, findLock, lockCovers, lockText, removeLock, visibleLocks } from './locks.js';

export interface Env {
  ctx: HubContext;
  p: Principal;
  room: RoomRecord;
  parsed: Parsed;
  now: number;
}

/** What a state-changing command would do. `data` is hashed; `agents` decide whether an approver is needed. */
export interface Plan {
  lines: string[];
  data: unknown;
  tenants: string[];
  agents: Selectable[];
}

export interface Result {
  text: string;
  /** The log of the operation's own audit entry, when the reply should point at a tenant's log. */
  details?: Record<string, string | number | null>;
}

export interface Executor {
  /** The rule the API route applies, and what its resolver reads (path params, body). */
  access(parsed: Parsed, ctx: HubContext): { rule: AccessRule; params?: Record<string, string>; body?: unknown };
  /** State-changing commands: what would happen. */
  plan?(env: Env): Promise<Plan>;
  run(env: Env): Promise<Result>;
}

/** The request a resolver reads (path params and body), as the API route would see it. */
export function fakeRequest(params: Record<string, string> = {}, body: unknown = {}): FastifyRequest {
  return { params, body } as unknown as FastifyRequest;
}

export async function check(p: Principal, x: ReturnType<Executor['access']>): Promise<void> {
  await authorise(x.rule, p, fakeRequest(x.params, x.body));
}

const shortDigest = (d: string) => `${d.slice(0, 19)}…`;
const count = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;
const splitRef = (ref: string) => {
  const at = ref.indexOf('@');
  return { stack: ref.slice(0, at), version: ref.slice(at + 1) };
};

// ---- rollouts -----------------------------------------------------------------------------

function rolloutInput(parsed: Parsed) {
  const { stack, version } = splitRef(parsed.args.release!);
  const selector = parsed.args.selector ?? parsed.flags.to;
  if (!selector) throw new FerryError('FERRY_E_CHAT_USAGE', `which agents? add \`to SELECTOR\` (e.g. \`to env=prod\`)${parsed.spec.id === 'deploy' ? ' or --agent ID' : ''}`);
  return {
    stack,
    version,
    selector,
    waves: parsed.spec.id === 'deploy' ? '100%' : (parsed.flags.waves ?? '100%'),
    bakeMs: parsed.flags.bake ? durationMs(parsed.flags.bake, '--bake') : 0,
    maxFailures: parsed.flags['max-failures'] ? Number(parsed.flags['max-failures']) : 0,
    onFailure: (parsed.flags['on-failure'] ?? 'pause') as 'pause' | 'rollback',
    agentTimeoutMs: 30 * 60_000,
    onTimeout: 'failed' as const,
    retryMs: 60_000,
  };
}

const deployScope = (env: Env) => lockScope(env.ctx.store, env.p);

const createRollout: Executor = {
  access: () => ({ rule: { list: 'deploy' } }),
  async plan(env) {
    const input = rolloutInput(env.parsed);
    const { release, agents, waves } = await env.ctx.rollouts.preview(input, await deployScope(env));
    const tenants = [...new Set(agents.map((a) => a.tenant))];
    const perTenant = tenants.map((t) => `${t} (${agents.filter((a) => a.tenant === t).length})`).join(', ');
    let from = 0;
    const sizes = waves.map((reach) => {
      const n = reach - from;
      from = reach;
      return n;
    });
    return {
      lines: [
        `${input.stack}@${input.version} (${release ? shortDigest(release.digest) : 'agent bundle'}) to ${count(agents.length, 'agent')} on ${input.selector}`,
        `waves: ${sizes.map((n, i) => `${i + 1}: ${count(n, 'agent')}`).join(' · ')}${input.bakeMs ? ` · bake ${env.parsed.flags.bake}` : ''} · on failure ${input.onFailure}`,
        `tenants: ${perTenant}`,
        `first agents: ${agents.slice(0, 3).map((a) => `${a.name} (${a.id})`).join(', ')}${agents.length > 3 ? ', …' : ''}`,
      ],
      data: { op: 'rollout.create', ...input, digest: release?.digest ?? null, waves, agents: agents.map((a) => a.id) },
      tenants,
      agents,
    };
  },
  async run(env) {
    const input = rolloutInput(env.parsed);
    const r = await env.ctx.rollouts.create(input, actorOf(env.p), await deployScope(env));
    const s = rolloutSummary(r, await env.ctx.store.rollouts.targets(r.id), await viewScope(env));
    return { text: `${r.id} started: ${r.stack}@${r.version} to ${count(s.agents, 'agent')} in ${count(s.waves, 'wave')}`, details: { rollout: r.id } };
  },
};

/** What of a rollout the asker sees: everything (vendor), or their tenants' part. */
async function viewScope(env: Env): Promise<string[] | null> {
  return can(env.p, 'hub.read', 'vendor') ? null : await listScope(env.ctx.store, env.p, 'read');
}

function rolloutCommand(cmd: Command): Executor {
  return {
    access: (parsed, ctx) => ({ rule: { tenant: 'deploy', of: rolloutOf(ctx), mode: 'all' }, params: { id: parsed.args.id! } }),
    async plan(env) {
      const r = await env.ctx.store.rollouts.get(env.parsed.args.id!);
      const targets = await env.ctx.store.rollouts.targets(r.id);
      const reached = targets.filter((t) => t.state !== 'pending' && t.state !== 'waiting');
      const tenants = [...new Set(targets.map((t) => t.tenant))];
      const what: Record<Command, string> = {
        pause: 'no new wave starts; agents already issued carry on',
        resume: `wave ${r.wave + 1} of ${r.waves.length} carries on`,
        promote: `wave ${r.wave + 2} of ${r.waves.length} starts now`,
        abort: 'nothing more is issued; agents keep what they run',
        rollback: `${count(reached.length, 'agent')} reached so far go back to their previous release`,
      };
      const agents = (await env.ctx.store.fleet.listSelectable(tenants)).filter((a) => targets.some((t) => t.agentId === a.id));
      return {
        lines: [`${cmd} ${r.id} (${r.stack}@${r.version}, ${r.state}, wave ${r.wave + 1}/${r.waves.length}): ${what[cmd]}`],
        data: { op: `rollout.${cmd}`, id: r.id, state: r.state, wave: r.wave, reached: reached.map((t) => t.agentId).sort() },
        tenants,
        agents,
      };
    },
    async run(env) {
      const r = await env.ctx.rollouts.command(env.parsed.args.id!, cmd, actorOf(env.p));
      return { text: `${r.id} is ${r.state} (${cmd} by ${env.p.userName})`, details: { rollout: r.id } };
    },
  };
}

// ---- deploy ----------------------------------------------------------------------------------

const deployOne: Executor = {
  access: (parsed, ctx) => ({ rule: { tenant: 'deploy', of: agentOf(ctx.store, () => parsed.flags.agent) } }),
  async plan(env) {
    const id = env.parsed.flags.agent!;
    const { stack, version } = splitRef(env.parsed.args.release!);
    const a = await env.ctx.store.fleet.agent(id);
    const rel = await env.ctx.releases.get(stack, version);
    // What the deploy would meet (a lock): refused now, not after the confirmation.
    for (const gate of env.ctx.delivery.gates) await gate(stack, [a]);
    return {
      lines: [`${stack}@${version} (${shortDigest(rel.digest)}) to agent ${a.name} (${a.id}, ${a.tenant}), now`],
      data: { op: 'deploy', agent: a.id, stack, version, digest: rel.digest },
      tenants: [a.tenant],
      agents: [a],
    };
  },
  async run(env) {
    const id = env.parsed.flags.agent!;
    const { stack, version } = splitRef(env.parsed.args.release!);
    const { ctx, p } = env;
    // As POST /v1/deploy does: the directive and its audit entry in one transaction.
    const { directive, sent } = await ctx.delivery.deploy(id, stack, version, p.userId, (d, tenant) =>
      audited(ctx, p, async () => d, () => ({ log: tenant, action: 'directive.issue', target: { type: 'agent', id }, agents: [id], details: { seq: d.seq, stack, version, digest: d.digest } })).then(() => undefined),
    );
    await ctx.witness.checkpoint((await ctx.store.fleet.agentTenant(id)).tenant);
    const final = await ctx.delivery.waitForAck(id, directive.seq, 15_000);
    const state = final.status === 'accepted' ? 'accepted it' : final.status === 'refused' ? `refused it (${final.code ?? 'no code'}: ${final.message ?? ''})` : sent ? 'has not answered yet' : 'is offline: it gets it when it connects';
    return { text: `directive ${directive.seq} (${stack}@${version}) issued to ${id}: the agent ${state}`, details: { agent: id, seq: directive.seq } };
  },
};

const deploy: Executor = {
  access: (parsed, ctx) => (parsed.flags.agent ? deployOne.access(parsed, ctx) : createRollout.access(parsed, ctx)),
  plan: (env) => (env.parsed.flags.agent ? deployOne.plan!(env) : createRollout.plan!(env)),
  run: (env) => (env.parsed.flags.agent ? deployOne.run(env) : createRollout.run(env)),
};

// ---- agents ------------------------------------------------------------------------------------

const agentLs: Executor = {
  access: () => ({ rule: { list: 'read' } }),
  async run(env) {
    const scope = await listScope(env.ctx.store, env.p, 'read');
    const sel = env.parsed.args.selector ? parseSelector(env.parsed.args.selector) : null;
    const want = env.parsed.args.state;
    const out: string[] = [];
    let n = 0;
    for (const a of await env.ctx.store.fleet.listAgents({ scope })) {
      if (a.revokedAt !== null || (sel && !matches(sel, a))) continue;
      const on = env.ctx.gateway.presence.isConnected(env.ctx.gateway.presence.overlay(a));
      if ((want === 'online' && !on) || (want === 'offline' && on)) continue;
      n++;
      if (out.length < 25) {
        const seen = a.lastSeenAt ? new Date(a.lastSeenAt).toISOString().slice(0, 16).replace('T', ' ') : 'never';
        const running = ((a.status as { releases?: { stack: string; version: string }[] } | null)?.releases ?? []).map((r) => `${r.stack}@${r.version}`).join(' ');
        out.push(`${on ? '●' : '○'} ${a.name} ${a.id} ${a.tenant}${on ? '' : ` (last seen ${seen})`}${running ? ` · ${running}` : ''}`);
      }
    }
    const title = `${count(n, 'agent')}${want ? ` ${want}` : ''}${sel ? ` on ${sel.text}` : ''}`;
    return { text: [title, ...out, ...(n > out.length ? [`… ${n - out.length} more (ferry agent ls --json)`] : [])].join('\n') };
  },
};

const agentShow: Executor = {
  access: (parsed, ctx) => ({ rule: { tenant: 'read', of: agentOf(ctx.store) }, params: { id: parsed.args.id! } }),
  async run(env) {
    const v = await agentView(await env.ctx.store.fleet.agent(env.parsed.args.id!), env.ctx.gateway, env.ctx.store);
    const running = ((v.running as { releases?: { stack: string; version: string; state: string }[] } | null)?.releases ?? []).map((r) => `${r.stack}@${r.version} ${r.state}`);
    return {
      text: [
        `${v.name} ${v.id} (${v.tenant}) ${v.status}${v.agentVersion ? `, agent ${v.agentVersion}` : ''}`,
        `labels: ${Object.entries(v.labels).map(([k, x]) => `${k}=${x}`).join(', ') || 'none'}`,
        `runs: ${running.join(', ') || 'nothing reported'}`,
        ...(v.alarms.length ? [`ALARMS: ${v.alarms.length} (see the console)`] : []),
      ].join('\n'),
    };
  },
};

const agentRevoke: Executor = {
  access: (parsed, ctx) => ({ rule: { tenant: 'agent.manage', of: agentOf(ctx.store) }, params: { id: parsed.args.id! } }),
  async plan(env) {
    const a = await env.ctx.store.fleet.agent(env.parsed.args.id!);
    if (a.revokedAt !== null) throw new FerryError('FERRY_E_CONFLICT', `agent ${a.id} is revoked already`);
    return { lines: [`revoke ${a.name} (${a.id}, ${a.tenant}): its socket is cut and it can never reconnect`], data: { op: 'agent.revoke', agent: a.id }, tenants: [a.tenant], agents: [a] };
  },
  async run(env) {
    const { ctx, p } = env;
    const id = env.parsed.args.id!;
    // As POST /v1/agents/:id/revoke does.
    const a = await audited(ctx, p, () => ctx.store.fleet.revokeAgent(id, p.userId, ctx.now()), (a) => ({ log: a.tenant, action: 'agent.revoke', target: { type: 'agent', id: a.id }, agents: [a.id] }));
    ctx.gateway.disconnect(a.id, CLOSE.revoked, 'agent revoked');
    if (ctx.cluster.shared) ctx.cluster.publish('revoke', { agentId: a.id });
    return { text: `revoked ${a.name} (${a.id}, ${a.tenant})`, details: { agent: a.id } };
  },
};

// ---- reads -----------------------------------------------------------------------------------------

const rolloutStatus: Executor = {
  access: (parsed, ctx) => ({ rule: { tenant: 'read', of: rolloutOf(ctx) }, params: { id: parsed.args.id! } }),
  async run(env) {
    const r = await env.ctx.store.rollouts.get(env.parsed.args.id!);
    const v = rolloutView(r, await env.ctx.store.rollouts.targets(r.id), await viewScope(env));
    return {
      text: [
        `${v.id} ${v.stack}@${v.version}: ${v.state}${v.reason ? ` (${v.reason})` : ''} · wave ${v.wave}/${v.waves} · ${v.done}/${v.agents} done${v.failed ? ` · ${v.failed} failed` : ''}`,
        ...v.waveList.map((w) => `  wave ${w.wave}: ${w.state}, ${w.done}/${w.agents} done${w.failed ? `, ${w.failed} failed` : ''}`),
      ].join('\n'),
    };
  },
};

const rolloutLs: Executor = {
  access: () => ({ rule: { list: 'read' } }),
  async run(env) {
    const scope = await viewScope(env);
    const lines = [];
    for (const r of await env.ctx.store.rollouts.list(10, scope)) {
      const s = rolloutSummary(r, await env.ctx.store.rollouts.targets(r.id), scope);
      lines.push(`${s.id} ${s.stack}@${s.version} ${s.state} wave ${s.wave}/${s.waves} ${s.done}/${s.agents} done${s.failed ? `, ${s.failed} failed` : ''}`);
    }
    return { text: lines.length ? lines.join('\n') : 'no rollouts' };
  },
};

const releaseLs: Executor = {
  access: () => ({ rule: { list: 'read' } }),
  async run(env) {
    const scope = can(env.p, 'hub.read', 'vendor') ? null : await listScope(env.ctx.store, env.p, 'read');
    const rows = await env.ctx.releases.list({ stack: env.parsed.args.stack === '*' ? undefined : env.parsed.args.stack, tenants: scope });
    const lines = [];
    for (const r of rows.slice(-20)) {
      const v = await releaseView(r, env.ctx, scope);
      lines.push(`${v.stack}@${v.version} ${shortDigest(v.digest)} · ${count(v.signers.length, 'signature')}${v.tenants.length ? ` · ${v.tenants.map((t) => `${t.tenant} ${t.met ? 'ok' : `${t.have}/${t.threshold}`}`).join(', ')}` : ''}`);
    }
    return { text: lines.length ? lines.join('\n') : 'no releases you may see' };
  },
};

const releaseShow: Executor = {
  access: (parsed, ctx) => {
    const { stack, version } = splitRef(parsed.args.release!);
    return { rule: { tenant: 'read', vendor: 'hub.read', of: releaseOf(ctx) }, params: { stack, version } };
  },
  async run(env) {
    const { stack, version } = splitRef(env.parsed.args.release!);
    const scope = can(env.p, 'hub.read', 'vendor') ? null : await listScope(env.ctx.store, env.p, 'read');
    const v = await releaseView(await env.ctx.releases.get(stack, version), env.ctx, scope);
    return {
      text: [
        `${v.stack}@${v.version} ${v.digest}`,
        ...Object.entries(v.services).map(([n, img]) => `  ${n}: ${img}`),
        `signers: ${v.signers.map((s) => s.name ?? s.keyid.slice(0, 12)).join(', ') || 'none'}`,
      ].join('\n'),
    };
  },
};

const auditVerify: Executor = {
  access: () => ({ rule: { list: 'read' } }),
  async run(env) {
    const { ctx } = env;
    const scope = await listScope(ctx.store, env.p, 'read');
    const want = env.parsed.flags.tenant;
    if (want && scope !== null && !scope.includes(want)) throw new FerryError('FERRY_E_NOT_FOUND', `audit log ${want}`);
    const vendor = can(env.p, 'hub.read', 'vendor');
    const hubKeys = new Map([['hub', ctx.audit.hubPublicKey]]);
    const lines = [];
    let bad = 0;
    for (const log of await ctx.audit.logs()) {
      if (want ? log !== want : log === HUB_LOG ? !vendor : scope !== null && !scope.includes(log)) continue;
      const keys = log === HUB_LOG ? new Map<string, string>() : await ctx.store.fleet.publicKeys(log);
      const cps = (await ctx.audit.checkpoints(log)).map((cp) => ({ envelope: cp.envelope, cosignatures: cp.cosignatures.map((c) => ({ agentId: c.agentId, publicKey: keys.get(c.agentId) ?? null, sig: c.sig })) }));
      const entries = [];
      for await (const e of ctx.audit.scan(log)) entries.push(e);
      const r = verifyLog(log, entries, cps, hubKeys);
      if (!r.ok) bad++;
      lines.push(`${r.ok ? '✓' : '✗'} ${log}: ${count(r.entries, 'entry')}, ${r.checkpoints} checkpoints (${r.witnessed} witnessed by agents)${r.ok ? '' : ` — ${r.problems[0]?.message ?? 'inconsistent'}`}`);
    }
    return { text: [`${bad ? `${bad} log(s) INCONSISTENT` : 'every log consistent with its signed checkpoints'} (checked by the hub; \`ferry audit verify\` checks on your machine, trusting nothing the hub says)`, ...lines].join('\n') };
  },
};

// ---- locks ------------------------------------------------------------------------------------------

const lock: Executor = {
  access: () => ({ rule: { list: 'deploy' } }),
  async plan(env) {
    const scope = await lockScope(env.ctx.store, env.p);
    const stack = env.parsed.args.stack!;
    const selector = parseSelector(env.parsed.args.selector ?? '*').text;
    const probe = { id: 'L-?', stack, selector, tenants: scope, reason: env.parsed.args.reason!, createdBy: env.p.userId, createdAt: env.now };
    const agents = (await env.ctx.store.fleet.listSelectable(scope)).filter((a) => a.revokedAt === null && lockCovers(probe, stack, a));
    return {
      lines: [`lock ${stack === '*' ? 'every stack' : stack} on ${selector}${scope ? ` (${scope.join(', ')})` : ''}: covers ${count(agents.length, 'agent')} now, "${probe.reason}"`],
      data: { op: 'lock', stack, selector, tenants: scope },
      tenants: scope ?? [],
      agents: [],
    };
  },
  async run(env) {
    const l = await createLock(env.ctx, env.p, { stack: env.parsed.args.stack!, selector: env.parsed.args.selector ?? '*', reason: env.parsed.args.reason! });
    return { text: `locked: ${await lockText(env.ctx.store, l)}`, details: { lock: l.id } };
  },
};

const unlock: Executor = {
  access: () => ({ rule: { list: 'deploy' } }),
  async plan(env) {
    const l = await findLock(env.ctx, env.p, env.parsed.args.id!);
    return { lines: [`unlock ${await lockText(env.ctx.store, l)}`], data: { op: 'unlock', id: l.id }, tenants: l.tenants ?? [], agents: [] };
  },
  async run(env) {
    const l = await removeLock(env.ctx, env.p, env.parsed.args.id!);
    return { text: `unlocked ${l.id} (${l.stack} on ${l.selector})`, details: { lock: l.id } };
  },
};

const lockLs: Executor = {
  access: () => ({ rule: { list: 'read' } }),
  async run(env) {
    const lines = [];
    for (const l of await visibleLocks(env.ctx, env.p)) lines.push(await lockText(env.ctx.store, l));
    return { text: lines.length ? lines.join('\n') : 'no locks' };
  },
};

// ---- the release bot's subscriptions (the room's own setting) --------------------------------

/** The notices named (`rollouts,alarms`, or none: all), checked against what there is. */
function noticesOf(parsed: Parsed): Subscription[] {
  const raw = parsed.args.notices;
  if (!raw) return [...SUBSCRIPTIONS];
  const names = raw.split(/[,\s]+/).filter(Boolean);
  for (const n of names) if (!(SUBSCRIPTIONS as readonly string[]).includes(n)) throw new FerryError('FERRY_E_CHAT_USAGE', `notices "${n}": one of ${SUBSCRIPTIONS.join(', ')}`);
  return names as Subscription[];
}

/** Changing what a room hears is managing its chat: on all of its tenants (a vendor room: vendor-wide), as binding it is. */
function mayManageRoom(env: Env): void {
  const { p, room } = env;
  const ok = room.tenants ? room.tenants.every((t) => can(p, 'chat.manage', t)) : can(p, 'chat.manage', 'vendor');
  if (!ok) throw new FerryError('FERRY_E_FORBIDDEN', `changing this room's notices needs chat.manage on ${room.tenants ? room.tenants.join(', ') : 'the vendor'}; ${p.userName} does not have it here`);
}

function subscription(on: boolean): Executor {
  const next = (env: Env) => {
    const named = noticesOf(env.parsed);
    return SUBSCRIPTIONS.filter((s) => (on ? env.room.subscribe.includes(s) || named.includes(s) : env.room.subscribe.includes(s) && !named.includes(s)));
  };
  return {
    access: () => ({ rule: { list: 'chat.manage' } }),
    async plan(env) {
      mayManageRoom(env);
      const after = next(env);
      return { lines: [`this room's notices: ${env.room.subscribe.join(', ') || 'none'} → ${after.join(', ') || 'none'}`], data: { op: 'chat.subscribe', room: env.room.id, subscribe: after }, tenants: env.room.tenants ?? [], agents: [] };
    },
    async run(env) {
      mayManageRoom(env);
      const { ctx, p, room } = env;
      const after = next(env);
      await audited(
        ctx,
        p,
        async () => {
          if (!(await ctx.store.chat.setSubscribe(room.id, after))) throw new FerryError('FERRY_E_NOT_FOUND', `chat room ${room.id}`);
        },
        () => ({ log: room.tenants?.length === 1 ? room.tenants[0]! : HUB_LOG, action: 'chat.room.subscribe', target: { type: 'chat-room', id: room.id }, details: { subscribe: after.join(',') } }),
      );
      return { text: `this room's notices: ${after.join(', ') || 'none'}` };
    },
  };
}

const subscriptions: Executor = {
  access: () => ({ rule: { list: 'read' } }),
  async run(env) {
    const s = env.room.subscribe;
    return { text: `this room's notices: ${s.join(', ') || 'none'}${s.length < SUBSCRIPTIONS.length ? ` (not: ${SUBSCRIPTIONS.filter((x) => !s.includes(x)).join(', ')})` : ''}` };
  },
};

// ---- the engine's own (help, link, whoami, confirmations) run in engine.ts ---------------------------

const own: Executor = {
  access: () => ({ rule: { signedIn: true } }),
  run: () => {
    throw new FerryError('FERRY_E_INTERNAL', 'handled by the engine');
  },
};

export const EXECUTORS: Record<CommandId, Executor> = {
  help: own,
  link: own,
  whoami: own,
  confirm: own,
  approve: own,
  cancel: own,
  deploy,
  'rollout create': createRollout,
  'rollout status': rolloutStatus,
  'rollout ls': rolloutLs,
  'rollout pause': rolloutCommand('pause'),
  'rollout resume': rolloutCommand('resume'),
  'rollout promote': rolloutCommand('promote'),
  'rollout abort': rolloutCommand('abort'),
  'rollout rollback': rolloutCommand('rollback'),
  'agent ls': agentLs,
  'agent show': agentShow,
  'agent revoke': agentRevoke,
  'release ls': releaseLs,
  'release show': releaseShow,
  'audit verify': auditVerify,
  lock,
  unlock,
  'lock ls': lockLs,
  subscribe: subscription(true),
  unsubscribe: subscription(false),
  subscriptions,
};

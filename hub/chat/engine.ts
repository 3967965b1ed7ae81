// The chat engine: one message in, replies out, the same for every transport.
//
//   message -> is it for the bot (`ferry …`)? -> its room bound? -> its account
//   linked to a person? -> parse (hub/chat/grammar.ts) -> the person, narrowed
//   to the room's tenants -> the command's access rule, as the API applies it
//   -> acknowledge at once -> read: answer | dangerous: plan, wait for a
//   confirmation (and an approver's, where the tenant requires one) | other
//   writes: do it, answer.
//
// Every command, confirmation and result is an audit entry (surface chat;
// room, platform, message id; the person as personal data) and the replies
// carry its index. Confirmations live in the database (any replica takes
// them), are bound to the hash of the plan shown (recomputed before anything
// is done: a plan that changed is refused), count only from the requester,
// need a different person with the approver role where the tenant's rule
// says so (maker-checker), and expire.
import { createHash, randomInt } from 'node:crypto';
import { HUB_LOG } from '../../shared/audit.js';
import { FerryError, asFerryError } from '../../shared/errors.js';
import { canonicalJson } from '../../shared/release.js';
import type { AuditInput } from '../audit/log.js';
import type { HubContext } from '../http/context.js';
import { actorOf, can, tenantsFor, type Principal } from '../http/principal.js';
import { matches, parseSelector } from '../rollouts/selector.js';
import type { ConfirmationRecord, RoomRecord } from '../store/chat.js';
import type { UserRecord } from '../store/people.js';
import { EXECUTORS, check, type Env, type Plan } from './commands.js';
import { addressed, help, parse, type CommandSpec, type Parsed } from './grammar.js';
import { CONSOLE_TRANSPORT } from './transports/console.js';
import type { Inbound, OutMessage, ReplySink } from './types.js';

export interface EngineOptions {
  /** How long a request waits for its confirmations (default 10 min). */
  confirmTtlMs: number;
  /** How long a link code lasts (default 10 min). */
  linkTtlMs: number;
  /** Where links in replies point (the hub's public URL). */
  publicUrl: string | null;
}

export const ENGINE_DEFAULTS: EngineOptions = Object.freeze({ confirmTtlMs: 10 * 60_000, linkTtlMs: 10 * 60_000, publicUrl: null });

const CODE_ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZ23456789';
const newCode = (n: number) => Array.from({ length: n }, () => CODE_ALPHABET[randomInt(CODE_ALPHABET.length)]).join('');
export const planHash = (command: string, data: unknown) => createHash('sha256').update(canonicalJson({ command, plan: data })).digest('hex');

/** A person as chat sees them: all their grants, narrowed to the room's tenants. */
export function chatPrincipal(u: UserRecord, room: RoomRecord): Principal {
  return {
    userId: u.id,
    userName: u.name,
    kind: u.kind,
    grants: { vendorRole: u.vendorRole, tenants: u.grants },
    // A tenant room: any action, on its tenants only (never a vendor-wide one). A vendor room: as the person is.
    scope: room.tenants ? { role: 'admin', tenants: room.tenants } : null,
    tokenId: null,
    csrf: null,
    surface: 'chat',
  };
}

export class ChatEngine {
  readonly opts: EngineOptions;
  /** Told after a command or decision, for the console to ring its streams. */
  onActivity: (roomId: string) => void = () => {};

  constructor(
    private readonly ctx: HubContext,
    opts: Partial<EngineOptions> = {},
  ) {
    this.opts = Object.freeze({ ...ENGINE_DEFAULTS, ...opts });
  }

  private get store() {
    return this.ctx.store;
  }

  /** Handles one message; `out` receives the replies in order (none when the message is not for the bot). */
  async handle(m: Inbound, out: ReplySink): Promise<void> {
    const words = addressed(m.text);
    if (words === null) return;
    const reply = (r: OutMessage) => out({ thread: m.thread ?? null, ...r });
    let parsed: Parsed;
    try {
      parsed = parse(words);
    } catch (err) {
      return reply({ kind: 'error', text: errorText(err) });
    }
    const room = await this.store.chat.room(m.transport, m.room);
    if (!room) {
      const e = new FerryError('FERRY_E_CHAT_ROOM_UNBOUND', `${m.transport} room ${m.room}`);
      return reply({ kind: 'error', text: errorText(e) });
    }
    if (parsed.spec.id === 'link') return this.link(parsed, room, m, reply);
    // The console's own rooms: the person is the one the session or token authenticated (hub/http/routes/chat.ts).
    const userId = m.transport === CONSOLE_TRANSPORT && m.account.startsWith('user:') ? m.account.slice(5) : await this.store.chat.accountUser(m.transport, m.account);
    const user = userId ? await this.store.people.userById(userId) : undefined;
    if (!user || user.disabledAt !== null) {
      if (parsed.spec.id === 'help') return reply({ kind: 'help', text: `${help((s) => s.action === 'anyone', parsed.args.topic)}\n(Link this account first to see more.)` });
      return reply({ kind: 'error', text: errorText(new FerryError(user ? 'FERRY_E_USER_DISABLED' : 'FERRY_E_CHAT_UNLINKED', `${m.platform} account ${m.account}`)) });
    }
    const p = chatPrincipal(user, room);
    switch (parsed.spec.id) {
      case 'help':
        return reply({ kind: 'help', text: help(await this.mayRun(p), parsed.args.topic) });
      case 'whoami':
        return reply({ kind: 'result', text: this.whoami(p, room) });
      case 'confirm':
      case 'approve':
      case 'cancel':
        return this.decide(parsed, p, room, m, reply);
      default:
        return this.command(parsed, p, room, m, reply);
    }
  }

  // ---- commands -------------------------------------------------------------------

  private async command(parsed: Parsed, p: Principal, room: RoomRecord, m: Inbound, reply: ReplySink): Promise<void> {
    const ex = EXECUTORS[parsed.spec.id];
    const env: Env = { ctx: this.ctx, p, room, parsed, now: this.ctx.now() };
    const base = { command: parsed.canonical.slice(0, 1000), dryRun: parsed.dryRun };
    try {
      await check(p, ex.access(parsed, this.ctx));
    } catch (err) {
      const a = await this.record(p, room, m, 'chat.command', 'refused', { ...base, code: asFerryError(err).code });
      return reply({ kind: 'error', text: errorText(err), audit: a });
    }
    const changes = ex.plan !== undefined;
    if (!changes || (!parsed.dryRun && !parsed.spec.danger)) {
      // Reads, and writes that need no confirmation: acknowledge, do, answer.
      const a = await this.record(p, room, m, 'chat.command', 'ok', base);
      await reply({ kind: 'ack', text: `▶ ${parsed.canonical}`, audit: a, link: this.link_(parsed) });
      await this.run(env, m, reply, {});
      return;
    }
    let plan: Plan;
    try {
      plan = await ex.plan!(env);
    } catch (err) {
      const a = await this.record(p, room, m, 'chat.command', 'refused', { ...base, code: asFerryError(err).code });
      return reply({ kind: 'error', text: errorText(err), audit: a });
    }
    const hash = planHash(parsed.canonical.replace(/ --dry-run$/, ''), plan.data);
    if (parsed.dryRun) {
      const a = await this.record(p, room, m, 'chat.command', 'ok', { ...base, planHash: hash });
      return reply({ kind: 'result', text: `dry run, nothing changed:\n${plan.lines.join('\n')}\nplan ${hash.slice(0, 12)}`, audit: a });
    }
    const approvers = await this.approvalTenants(plan);
    const code = newCode(6);
    const now = this.ctx.now();
    const c = { code, roomId: room.id, requester: p.userId, command: parsed.canonical, plan: JSON.stringify(plan.lines), planHash: hash, needsApprover: approvers.length > 0, tenants: approvers, thread: m.thread ?? null, createdAt: now, expiresAt: now + this.opts.confirmTtlMs };
    const a = await this.store.tx(async () => {
      await this.store.chat.addConfirmation(c, now);
      return this.append(p, room, m, 'chat.command', 'ok', { ...base, confirmation: code, planHash: hash, needsApprover: c.needsApprover });
    });
    const who = c.needsApprover ? `Confirm it yourself, then a different person with the approver role on ${approvers.join(', ')} approves it` : 'Only you can confirm it';
    await reply({
      kind: 'confirm',
      text: [`This will do:`, ...plan.lines.map((l) => `  ${l}`), `plan ${hash.slice(0, 12)} · ${who} within ${Math.round(this.opts.confirmTtlMs / 60_000)} min.`].join('\n'),
      confirm: { code, planHash: hash, actions: c.needsApprover ? ['confirm', 'cancel'] : ['confirm', 'cancel'] },
      audit: a,
    });
  }

  /** Runs a command (a read, a write, or a confirmed plan) and answers with its result, on record (a read's too: who saw what, from which room). */
  private async run(env: Env, m: Inbound, reply: ReplySink, extra: Record<string, string | number | boolean | null>): Promise<boolean> {
    const ex = EXECUTORS[env.parsed.spec.id];
    try {
      const r = await ex.run(env);
      const a = await this.record(env.p, env.room, m, 'chat.result', 'ok', { command: env.parsed.canonical.slice(0, 1000), ...extra, ...(r.details ?? {}) });
      await reply({ kind: 'result', text: r.text, audit: a, link: this.link_(env.parsed, r.details) });
      return true;
    } catch (err) {
      const e = asFerryError(err);
      const a = await this.record(env.p, env.room, m, 'chat.result', e.status >= 500 ? 'failed' : 'refused', { command: env.parsed.canonical.slice(0, 1000), ...extra, code: e.code });
      await reply({ kind: 'error', text: errorText(e), audit: a });
      return false;
    } finally {
      this.onActivity(env.room.id);
    }
  }

  /** Tenants whose approval rule covers an agent of the plan: an approver of each must approve. */
  private async approvalTenants(plan: Plan): Promise<string[]> {
    const rules = await this.store.chat.policies(plan.tenants);
    const out: string[] = [];
    for (const [tenant, rule] of rules) {
      const sel = parseSelector(rule);
      if (plan.agents.some((a) => a.tenant === tenant && matches(sel, a))) out.push(tenant);
    }
    return out.sort();
  }

  // ---- confirmations ---------------------------------------------------------------

  private async decide(parsed: Parsed, p: Principal, room: RoomRecord, m: Inbound, reply: ReplySink): Promise<void> {
    const code = parsed.args.code!;
    const action = `chat.${parsed.spec.id}`;
    const refuse = async (code2: 'FERRY_E_CHAT_CONFIRMATION' | 'FERRY_E_CHAT_MAKER_CHECKER' | 'FERRY_E_FORBIDDEN', why: string) => {
      const a = await this.record(p, room, m, action, 'refused', { confirmation: code, code: code2, why });
      await reply({ kind: 'error', text: errorText(new FerryError(code2, why)), audit: a });
    };
    const c = await this.store.chat.confirmation(code);
    if (!c || c.roomId !== room.id) return refuse('FERRY_E_CHAT_CONFIRMATION', `no request ${code} in this room`);
    const now = this.ctx.now();
    if (c.state !== 'pending' && c.state !== 'confirmed') return refuse('FERRY_E_CHAT_CONFIRMATION', `${code} is ${c.state}`);
    if (now >= c.expiresAt) {
      await this.expire(c);
      return refuse('FERRY_E_CHAT_CONFIRMATION', `${code} expired at ${new Date(c.expiresAt).toISOString()}; nothing was done`);
    }
    if (parsed.spec.id === 'cancel') {
      if (p.userId !== c.requester && !c.tenants.some((t) => can(p, 'approve', t))) return refuse('FERRY_E_CHAT_CONFIRMATION', `only the requester or an approver cancels ${code}`);
      if (!(await this.store.chat.moveConfirmation(c.code, c.state, 'cancelled', now))) return refuse('FERRY_E_CHAT_CONFIRMATION', `${code} changed meanwhile`);
      const a = await this.record(p, room, m, action, 'ok', { confirmation: code });
      return reply({ kind: 'result', text: `cancelled ${code}: nothing was done`, audit: a });
    }
    if (parsed.spec.id === 'confirm') {
      if (p.userId !== c.requester) return refuse('FERRY_E_CHAT_CONFIRMATION', `only the requester confirms ${code}${c.needsApprover ? `; approvers send \`ferry approve ${code}\` once it is confirmed` : ''}`);
      if (c.state === 'confirmed') return refuse('FERRY_E_CHAT_CONFIRMATION', `${code} is confirmed already and waits for an approver`);
      if (parsed.args.hash && !c.planHash.startsWith(parsed.args.hash.toLowerCase())) return refuse('FERRY_E_CHAT_CONFIRMATION', `plan ${parsed.args.hash} is not the plan of ${code} (${c.planHash.slice(0, 12)})`);
    } else {
      if (p.userId === c.requester) return refuse('FERRY_E_CHAT_MAKER_CHECKER', `${p.userName} asked for ${code} and cannot approve it too`);
      if (!c.needsApprover) return refuse('FERRY_E_CHAT_CONFIRMATION', `${code} needs no approval; its requester confirms it`);
      if (c.state === 'pending') return refuse('FERRY_E_CHAT_CONFIRMATION', `${code} waits for its requester's confirmation first`);
      const missing = c.tenants.filter((t) => !can(p, 'approve', t));
      if (missing.length) return refuse('FERRY_E_FORBIDDEN', `approving ${code} needs approve on ${missing.join(', ')}; ${p.userName} does not have it here`);
    }
    // The requester, as they are now (a grant revoked meanwhile counts), and the plan, as it would be now.
    const requester = await this.store.people.userById(c.requester);
    if (!requester || requester.disabledAt !== null) return refuse('FERRY_E_CHAT_CONFIRMATION', `the requester of ${code} is no longer enabled`);
    const env: Env = { ctx: this.ctx, p: chatPrincipal(requester, room), room, parsed: parse(c.command), now };
    const ex = EXECUTORS[env.parsed.spec.id];
    let hash: string;
    try {
      await check(env.p, ex.access(env.parsed, this.ctx));
      hash = planHash(env.parsed.canonical, (await ex.plan!(env)).data);
    } catch (err) {
      await this.store.chat.moveConfirmation(c.code, c.state, 'refused', now);
      return refuse('FERRY_E_CHAT_CONFIRMATION', `${code} can no longer be done: ${asFerryError(err).message}`);
    }
    if (hash !== c.planHash) {
      await this.store.chat.moveConfirmation(c.code, c.state, 'refused', now);
      return refuse('FERRY_E_CHAT_CONFIRMATION', `the plan of ${code} changed since it was shown (${c.planHash.slice(0, 12)} then, ${hash.slice(0, 12)} now); nothing was done — ask again for the new plan`);
    }
    if (parsed.spec.id === 'confirm' && c.needsApprover) {
      if (!(await this.store.chat.moveConfirmation(c.code, 'pending', 'confirmed', now))) return refuse('FERRY_E_CHAT_CONFIRMATION', `${code} changed meanwhile`);
      const a = await this.record(p, room, m, action, 'ok', { confirmation: code, planHash: hash, waitsFor: c.tenants.join(',') });
      return reply({ kind: 'confirm', text: `${code} confirmed by ${p.userName}; a different person with the approver role on ${c.tenants.join(', ')} must approve it.`, confirm: { code, planHash: hash, actions: ['approve', 'cancel'] }, audit: a });
    }
    // One replica, one message gets to do it: the move from its state to done.
    if (!(await this.store.chat.moveConfirmation(c.code, c.state, 'done', now, parsed.spec.id === 'approve' ? p.userId : undefined))) return refuse('FERRY_E_CHAT_CONFIRMATION', `${code} changed meanwhile`);
    const a = await this.record(p, room, m, action, 'ok', { confirmation: code, planHash: hash, requester: requester.id });
    await reply({ kind: 'ack', text: `▶ ${code} ${parsed.spec.id === 'approve' ? `approved by ${p.userName}` : 'confirmed'}: ${env.parsed.canonical}`, audit: a });
    const ok = await this.run(env, m, reply, { confirmation: code, ...(parsed.spec.id === 'approve' ? { approver: p.userId } : {}) });
    if (!ok) await this.store.chat.moveConfirmation(c.code, 'done', 'failed', this.ctx.now());
  }

  /** Marks a request expired (once) and records it; returns whether this call did it. */
  async expire(c: ConfirmationRecord): Promise<boolean> {
    const room = await this.store.chat.roomById(c.roomId);
    return this.store.tx(async () => {
      if (!(await this.store.chat.moveConfirmation(c.code, c.state, 'expired', this.ctx.now()))) return false;
      await this.ctx.audit.append(
        { log: room ? logOf(room) : HUB_LOG, actor: { kind: 'hub', id: null }, surface: 'hub', action: 'chat.expire', details: { confirmation: c.code, command: c.command.slice(0, 1000), room: c.roomId, requester: c.requester } },
        this.ctx.now(),
      );
      return true;
    });
  }

  // ---- identity ----------------------------------------------------------------------

  /** A one-time code that links a chat account to this person (shown once). */
  async linkCode(userId: string): Promise<{ code: string; expiresAt: number }> {
    const code = `${newCode(4)}-${newCode(4)}`;
    const expiresAt = this.ctx.now() + this.opts.linkTtlMs;
    await this.store.chat.addLinkCode(code, userId, expiresAt);
    return { code, expiresAt };
  }

  private async link(parsed: Parsed, room: RoomRecord, m: Inbound, reply: ReplySink): Promise<void> {
    const code = parsed.args.code!.replace(/[^A-Z0-9]/g, '').replace(/^(.{4})(.{4})$/, '$1-$2');
    const now = this.ctx.now();
    const r = await this.store.tx(async () => {
      const userId = await this.store.chat.redeemLinkCode(code, now);
      const u = userId ? await this.store.people.userById(userId) : undefined;
      if (!u) return null;
      await this.store.chat.linkAccount(m.transport, m.account, u.id, now);
      const p = chatPrincipal(u, room);
      return { u, a: await this.append(p, room, m, 'chat.link', 'ok', { transport: m.transport }) };
    });
    if (!r) return reply({ kind: 'error', text: errorText(new FerryError('FERRY_E_CHAT_UNLINKED', 'that code is unknown, used or expired; get a new one with `ferry user link-chat`')) });
    return reply({ kind: 'result', text: `linked: this ${m.platform} account is ${r.u.name} from now on`, audit: r.a });
  }

  private whoami(p: Principal, room: RoomRecord): string {
    const roles = [p.grants.vendorRole ? `${p.grants.vendorRole} (vendor-wide)` : null, ...Object.entries(p.grants.tenants).map(([t, r]) => `${r} on ${t}`)].filter(Boolean);
    return `${p.userName}: ${roles.join(', ') || 'no roles'}; this room acts for ${room.tenants ? room.tenants.join(', ') : 'the vendor (every tenant)'}`;
  }

  /** What help shows: a command whose action the person has somewhere this room reaches. */
  private async mayRun(p: Principal): Promise<(s: CommandSpec) => boolean> {
    const all = await this.store.fleet.tenantNames();
    return (s) => {
      if (s.action === 'anyone' || s.action === null) return true;
      const t = tenantsFor(p, s.action, all);
      return t === null || t.length > 0;
    };
  }

  // ---- audit ----------------------------------------------------------------------------

  private record(p: Principal, room: RoomRecord, m: Inbound, action: string, outcome: AuditInput['outcome'], details: Record<string, string | number | boolean | null>): Promise<{ log: string; index: number }> {
    return this.store.tx(() => this.append(p, room, m, action, outcome, details));
  }

  private async append(p: Principal, room: RoomRecord, m: Inbound, action: string, outcome: AuditInput['outcome'], details: Record<string, string | number | boolean | null>): Promise<{ log: string; index: number }> {
    const who = actorOf(p);
    const log = logOf(room);
    const index = await this.ctx.audit.append(
      {
        log,
        actor: who.actor,
        surface: 'chat',
        action,
        target: { type: 'chat-room', id: room.id },
        outcome,
        details: { ...details, platform: m.platform, transport: m.transport, room: room.id, platformRoom: m.room.slice(0, 256), messageId: m.messageId.slice(0, 256), ...(m.thread ? { thread: m.thread.slice(0, 256) } : {}) },
        personal: { ...who.personal, chatAccount: m.account.slice(0, 256) },
      },
      this.ctx.now(),
    );
    return { log, index };
  }

  private link_(parsed: Parsed, details?: Record<string, string | number | null>): string | undefined {
    if (!this.opts.publicUrl) return undefined;
    const rollout = (details?.rollout as string | undefined) ?? (parsed.args.id?.startsWith('R-') ? parsed.args.id : undefined);
    if (rollout) return `${this.opts.publicUrl}/rollouts/${rollout}`;
    const agent = (details?.agent as string | undefined) ?? (parsed.args.id?.startsWith('agt_') ? parsed.args.id : undefined);
    if (agent) return `${this.opts.publicUrl}/agents/${agent}`;
    return undefined;
  }
}

/** The log a room's chat entries go to: its tenant's, or the hub's for vendor and multi-tenant rooms. */
export function logOf(room: RoomRecord): string {
  return room.tenants?.length === 1 ? room.tenants[0]! : HUB_LOG;
}

export function errorText(err: unknown): string {
  const e = asFerryError(err);
  return `✗ ${e.code}: ${e.message}\n  ${e.hint}`;
}



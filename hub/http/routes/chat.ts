// ChatOps over HTTP: transports, rooms and approval rules (admins), link
// codes (anyone signed in), deploy locks, the console's chat panel (post a
// message, read and stream a room, decide on a request), and the platforms'
// signed callbacks (public: each is verified by its platform's scheme in
// hub/chat/signing.ts before anything is read from it).
import { randomBytes } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import { HUB_LOG } from '../../../shared/audit.js';
import { FerryError, asFerryError } from '../../../shared/errors.js';
import { SUBSCRIPTIONS, configView, isPlatform, sealConfig } from '../../chat/config.js';
import { createLock, removeLock, visibleLocks, lockText } from '../../chat/locks.js';
import { PLATFORMS } from '../../chat/limits.js';
import type { Chat } from '../../chat/service.js';
import { WEBHOOK_HEADERS, feishuDecrypt, safeEqual, verifyDingtalk, verifyFeishu, verifySlack, verifyWebhook, verifyWecom, wecomDecrypt, checkFresh, FEISHU_WINDOW_MS } from '../../chat/signing.js';
import { CONSOLE_TRANSPORT, messageView } from '../../chat/transports/console.js';
import { DingtalkTransport, dingtalkInbound, dingtalkMessage } from '../../chat/transports/dingtalk.js';
import { FeishuTransport, feishuInbound, type FeishuEvent } from '../../chat/transports/feishu.js';
import { SlackTransport, slackAction, slackCommand, slackMessage } from '../../chat/transports/slack.js';
import { WebhookTransport } from '../../chat/transports/webhook.js';
import { WecomTransport, wecomCiphertext, wecomInbound } from '../../chat/transports/wecom.js';
import { plainText, type Inbound, type OutMessage, type ReplySink } from '../../chat/types.js';
import { parseSelector } from '../../rollouts/selector.js';
import type { RoomRecord } from '../../store/chat.js';
import { TENANT_NAME } from '../../store/fleet.js';
import { listScope, tenantParam, type Resolver } from '../access.js';
import type { RouteDef } from '../app.js';
import { audited, type HubContext } from '../context.js';
import { can } from '../principal.js';

type Route = <B, Q>(def: RouteDef<B, Q>) => void;

const NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
const TransportBody = z.strictObject({ name: z.string().regex(NAME, 'lowercase letters, digits and dashes'), platform: z.string().max(16), config: z.record(z.string().max(64), z.unknown()).default({}), replace: z.boolean().default(false) });
const RoomBody = z.strictObject({
  transport: z.string().max(64),
  room: z.string().min(1).max(255),
  tenants: z.array(z.string().regex(TENANT_NAME)).max(100).optional(),
  vendor: z.boolean().optional(),
  subscribe: z.array(z.enum(SUBSCRIPTIONS)).max(SUBSCRIPTIONS.length).default([...SUBSCRIPTIONS]),
  config: z.record(z.string().max(64), z.unknown()).default({}),
});
const PolicyBody = z.strictObject({ approval: z.string().max(2000).nullable() });
const LockBody = z.strictObject({ stack: z.string().max(64), selector: z.string().max(2000).default('*'), reason: z.string().min(1).max(500) });
const MessageBody = z.strictObject({ text: z.string().min(1).max(4000) });
const DecisionBody = z.strictObject({ code: z.string().min(4).max(16), decision: z.enum(['confirm', 'approve', 'cancel']) });
const AfterQuery = z.strictObject({ after: z.string().regex(/^\d{1,15}$/).transform(Number).optional() });

/** How long a platform request's id or signature is remembered (longer than every platform's window). */
const SEEN_MS = 2 * 3600_000;
/** Slack wants an answer within 3 s: the first reply if it comes by then, else an empty 200 and the reply later. */
const FIRST_REPLY_MS = 2500;

export function roomView(r: RoomRecord) {
  return { id: r.id, transport: r.transport, room: r.room, tenants: r.tenants, vendor: r.tenants === null, subscribe: r.subscribe, config: configView(r.config), createdAt: new Date(r.createdAt).toISOString() };
}

/** Registers the routes; `idle` waits for replies still being produced for platform callbacks (the hub waits for them when closing). */
export function chatRoutes(route: Route, ctx: HubContext, chat: Chat): { idle: () => Promise<void> } {
  const { store } = ctx;
  const inFlight = new Set<Promise<void>>();
  const background = (p: Promise<void>) => {
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
  };

  /** A room in the path: its tenants (a vendor room: none, the vendor's only). */
  const roomOf: Resolver = async (req) => {
    const id = String((req.params as { id?: string }).id ?? '').slice(0, 64);
    const r = await store.chat.roomById(id);
    if (!r) throw new FerryError('FERRY_E_NOT_FOUND', `chat room ${id}`);
    return { tenants: r.tenants ?? [], what: `chat room ${id}` };
  };
  /** A console room by name. */
  const consoleRoomOf: Resolver = async (req) => {
    const name = String((req.params as { room?: string }).room ?? '').slice(0, 255);
    const r = await store.chat.room(CONSOLE_TRANSPORT, name);
    if (!r) throw new FerryError('FERRY_E_NOT_FOUND', `console room ${name}`);
    return { tenants: r.tenants ?? [], what: `console room ${name}` };
  };

  // ---- transports ------------------------------------------------------------------------
  route({
    method: 'GET',
    url: '/v1/chat/transports',
    access: { vendor: 'chat.manage' },
    handler: async () => ({
      transports: (await store.chat.transports()).map((t) => ({ name: t.name, platform: t.platform, config: configView(t.config), createdAt: new Date(Number(t.created_at)).toISOString() })),
      platforms: PLATFORMS,
    }),
  });
  route({
    method: 'POST',
    url: '/v1/chat/transports',
    access: { vendor: 'chat.manage' },
    body: TransportBody,
    status: 201,
    handler: async ({ body, principal }) => {
      if (!isPlatform(body.platform) || body.platform === 'console') throw new FerryError('FERRY_E_VALIDATION', `platform: one of ${PLATFORMS.filter((p) => p !== 'console').join(', ')} (the console's own chat needs no transport)`);
      if (body.name === CONSOLE_TRANSPORT) throw new FerryError('FERRY_E_VALIDATION', 'name: console is the console’s own chat');
      const platform = body.platform;
      const config = sealConfig('transport', platform, body.config, chat.box);
      await audited(
        ctx,
        principal,
        async () => {
          const existing = await store.chat.transport(body.name);
          if (existing && (!body.replace || existing.platform !== platform)) throw new FerryError('FERRY_E_CONFLICT', `transport ${body.name} (${existing.platform})${body.replace ? ': a transport keeps its platform' : '; --replace to change its settings'}`);
          if (existing) await store.chat.setTransportConfig(body.name, config);
          else await store.chat.addTransport(body.name, platform, config, principal.userId, ctx.now());
        },
        () => ({ log: HUB_LOG, action: body.replace ? 'chat.transport.update' : 'chat.transport.add', target: { type: 'chat-transport', id: body.name }, details: { platform } }),
      );
      ctx.cluster.publish('chat-notify', {});
      return { name: body.name, platform, config: configView(config), hooks: hookPaths(platform, body.name) };
    },
  });
  route({
    method: 'DELETE',
    url: '/v1/chat/transports/:name',
    access: { vendor: 'chat.manage' },
    handler: async ({ params, principal }) => {
      await audited(
        ctx,
        principal,
        async () => {
          if (!(await store.chat.removeTransport(params.name!))) throw new FerryError('FERRY_E_NOT_FOUND', `transport ${params.name}`);
        },
        () => ({ log: HUB_LOG, action: 'chat.transport.remove', target: { type: 'chat-transport', id: params.name! } }),
      );
      ctx.cluster.publish('chat-notify', {});
      return { removed: params.name };
    },
  });

  // ---- rooms -----------------------------------------------------------------------------
  route({
    method: 'GET',
    url: '/v1/chat/rooms',
    access: { list: 'chat.manage' },
    handler: async ({ principal }) => {
      const scope = await listScope(store, principal, 'chat.manage');
      const vendor = can(principal, 'chat.manage', 'vendor');
      const rooms = (await store.chat.rooms()).filter((r) => (r.tenants === null ? vendor : scope === null || r.tenants.every((t) => scope.includes(t))));
      return { rooms: rooms.map(roomView) };
    },
  });
  route({
    method: 'POST',
    url: '/v1/chat/rooms',
    // A tenant's room: chat.manage on each of its tenants; the vendor's room: vendor-wide.
    access: { list: 'chat.manage' },
    body: RoomBody,
    status: 201,
    handler: async ({ body, principal }) => {
      const vendorRoom = body.vendor === true;
      if (vendorRoom === (body.tenants !== undefined && body.tenants.length > 0)) throw new FerryError('FERRY_E_VALIDATION', 'give --tenant T (one or more) or --vendor');
      if (vendorRoom && !can(principal, 'chat.manage', 'vendor')) throw new FerryError('FERRY_E_FORBIDDEN', `a vendor room needs chat.manage across the vendor; ${principal.userName} has it on tenants only`);
      const tenants = vendorRoom ? null : [...new Set(body.tenants!)].sort();
      const readable = await listScope(store, principal, 'read');
      for (const t of tenants ?? []) {
        // Another tenant answers like one that does not exist.
        if ((readable !== null && !readable.includes(t)) || !(await store.fleet.findTenant(t))) throw new FerryError('FERRY_E_NOT_FOUND', `tenant ${t}`);
        if (!can(principal, 'chat.manage', t)) throw new FerryError('FERRY_E_FORBIDDEN', `binding a room to ${t} needs chat.manage on it`);
      }
      const platform = body.transport === CONSOLE_TRANSPORT ? 'console' : (await store.chat.transport(body.transport))?.platform;
      if (!platform || !isPlatform(platform)) throw new FerryError('FERRY_E_NOT_FOUND', `transport ${body.transport}; add it with \`ferry chat transport add\``);
      const config = sealConfig('room', platform, body.config, chat.box);
      const existing = await store.chat.room(body.transport, body.room);
      if (existing && existing.tenants !== null && !existing.tenants.every((t) => can(principal, 'chat.manage', t))) throw new FerryError('FERRY_E_CONFLICT', `room ${body.room} is bound already, to tenants you do not manage`);
      const r = await audited(
        ctx,
        principal,
        () => store.chat.bindRoom({ id: existing?.id ?? `room_${randomBytes(8).toString('hex')}`, transport: body.transport, room: body.room, tenants, subscribe: body.subscribe, config }, principal.userId, ctx.now()),
        (r) => ({ log: tenants?.length === 1 ? tenants[0]! : HUB_LOG, action: 'chat.room.bind', target: { type: 'chat-room', id: r.id }, details: { transport: r.transport, room: r.room.slice(0, 255), tenants: tenants?.join(',') ?? null, subscribe: r.subscribe.join(',') } }),
      );
      ctx.cluster.publish('chat-notify', {});
      return roomView(r);
    },
  });
  route({
    method: 'DELETE',
    url: '/v1/chat/rooms/:id',
    access: { tenant: 'chat.manage', vendor: 'chat.manage', of: roomOf, mode: 'all' },
    handler: async ({ params, principal, subject }) => {
      const tenants = subject?.tenants ?? [];
      await audited(
        ctx,
        principal,
        async () => {
          if (!(await store.chat.unbindRoom(params.id!))) throw new FerryError('FERRY_E_NOT_FOUND', `chat room ${params.id}`);
        },
        () => ({ log: tenants.length === 1 ? tenants[0]! : HUB_LOG, action: 'chat.room.unbind', target: { type: 'chat-room', id: params.id! } }),
      );
      return { removed: params.id };
    },
  });
  route({
    method: 'POST',
    url: '/v1/chat/policies/:tenant',
    access: { tenant: 'chat.manage', of: tenantParam(store) },
    body: PolicyBody,
    handler: async ({ params, body, principal }) => {
      // The selector of the agents whose deploys need a second person (an approver); null: none do.
      const rule = body.approval === null ? null : parseSelector(body.approval).text;
      await audited(
        ctx,
        principal,
        () => store.chat.setPolicy(params.tenant!, rule, ctx.now()),
        () => ({ log: params.tenant!, action: 'chat.policy', target: { type: 'tenant', id: params.tenant! }, details: { approval: rule } }),
      );
      return { tenant: params.tenant, approval: rule };
    },
  });
  route({
    method: 'POST',
    url: '/v1/chat/link-codes',
    access: { signedIn: true },
    status: 201,
    handler: async ({ principal }) => {
      const c = await chat.engine.linkCode(principal.userId);
      return { code: c.code, expiresAt: new Date(c.expiresAt).toISOString(), send: `ferry link ${c.code}` };
    },
  });

  // ---- locks -------------------------------------------------------------------------------
  route({
    method: 'GET',
    url: '/v1/locks',
    access: { list: 'read' },
    handler: async ({ principal }) => {
      const out = [];
      for (const l of await visibleLocks(ctx, principal)) out.push({ ...l, createdAt: new Date(l.createdAt).toISOString(), text: await lockText(store, l) });
      return { locks: out };
    },
  });
  route({
    method: 'POST',
    url: '/v1/locks',
    access: { list: 'deploy' },
    body: LockBody,
    status: 201,
    handler: async ({ body, principal }) => {
      const l = await createLock(ctx, principal, body);
      return { ...l, createdAt: new Date(l.createdAt).toISOString(), text: await lockText(store, l) };
    },
  });
  route({
    method: 'POST',
    url: '/v1/locks/:id/unlock',
    access: { list: 'deploy' },
    handler: async ({ params, principal }) => {
      const l = await removeLock(ctx, principal, String(params.id).toUpperCase());
      return { removed: l.id };
    },
  });

  // ---- the console's chat panel -------------------------------------------------------------
  const consoleRead = { tenant: 'read', vendor: 'hub.read', mode: 'any', of: consoleRoomOf } as const;
  route({
    method: 'GET',
    url: '/v1/chat/console/rooms',
    access: { list: 'read' },
    handler: async ({ principal }) => {
      const scope = await listScope(store, principal, 'read');
      const vendor = can(principal, 'hub.read', 'vendor');
      const rooms = (await store.chat.rooms(CONSOLE_TRANSPORT)).filter((r) => (r.tenants === null ? vendor : scope === null || r.tenants.some((t) => scope.includes(t))));
      return { rooms: rooms.map((r) => ({ name: r.room, tenants: r.tenants, vendor: r.tenants === null, subscribe: r.subscribe })) };
    },
  });
  route({
    method: 'GET',
    url: '/v1/chat/console/rooms/:room/messages',
    access: consoleRead,
    query: AfterQuery,
    handler: async ({ params, query }) => {
      const r = (await store.chat.room(CONSOLE_TRANSPORT, params.room!))!;
      const rows = query.after !== undefined ? await store.chat.messages(r.id, query.after, 200) : await store.chat.lastMessages(r.id, 100);
      return { room: r.room, messages: rows.map(messageView) };
    },
  });
  route({
    method: 'GET',
    url: '/v1/chat/console/rooms/:room/stream',
    access: consoleRead,
    handler: async ({ req, reply, params, principal }) => {
      const r = (await store.chat.room(CONSOLE_TRANSPORT, params.room!))!;
      const last = req.headers['last-event-id'];
      const since = new URL(req.url, 'http://hub').searchParams.get('after');
      const raw = (Array.isArray(last) ? last[0] : last) || since;
      if (raw && !/^\d{1,15}$/.test(raw)) throw new FerryError('FERRY_E_VALIDATION', 'Last-Event-ID / after: a message id');
      if (chat.streams.count(principal.userId) >= ctx.maxStreamsPerUser) throw new FerryError('FERRY_E_STREAMS_LIMIT', `${ctx.maxStreamsPerUser} open`);
      reply.hijack();
      await chat.streams.open(req.raw, reply.raw, r.id, raw ? Number(raw) : null, principal.userId);
    },
  });
  /** A person's message in a console room: recorded, handled as a command, answered in the room (and here). */
  const consoleSay = async (roomName: string, text: string, principal: { userId: string; userName: string }) => {
    const r = (await store.chat.room(CONSOLE_TRANSPORT, roomName))!;
    const id = await chat.console.post(r.id, 'message', principal.userName, text, {});
    const replies: OutMessage[] = [];
    await chat.handle({ transport: CONSOLE_TRANSPORT, platform: 'console', room: r.room, account: `user:${principal.userId}`, text, messageId: `console-${id}`, thread: null }, async (m) => {
      replies.push(m);
      await chat.console.send(r, m);
    });
    return { message: id, replies };
  };
  route({
    method: 'POST',
    url: '/v1/chat/console/rooms/:room/messages',
    access: consoleRead,
    body: MessageBody,
    status: 201,
    handler: ({ params, body, principal }) => consoleSay(params.room!, body.text, principal),
  });
  route({
    method: 'POST',
    url: '/v1/chat/console/rooms/:room/decisions',
    access: consoleRead,
    body: DecisionBody,
    status: 201,
    handler: ({ params, body, principal }) => consoleSay(params.room!, `ferry ${body.decision} ${body.code}`, principal),
  });

  // ---- platforms' callbacks ---------------------------------------------------------------------
  const transportOf = async <T>(name: string, kind: new (...a: never[]) => T): Promise<T> => {
    const t = await chat.transportFor(String(name).slice(0, 64));
    if (!(t instanceof kind)) throw new FerryError('FERRY_E_NOT_FOUND', 'no such endpoint');
    return t;
  };
  const header = (req: FastifyRequest, name: string) => {
    const v = req.headers[name];
    return Array.isArray(v) ? v[0] : v;
  };
  const once = async (transport: string, key: string) => {
    if (!(await store.chat.firstSeen(transport, key, ctx.now(), SEEN_MS))) throw new FerryError('FERRY_E_CHAT_REPLAY', key.slice(0, 80));
  };
  /** Runs a message; the first reply is the answer to the request (if it comes in time), the rest go `later`. */
  const firstReply = async (m: Inbound, later: ReplySink): Promise<OutMessage | null> => {
    let first!: (x: OutMessage | null) => void;
    const firstP = new Promise<OutMessage | null>((r) => (first = r));
    let answered = false;
    let n = 0;
    background(
      chat
        .handle(m, async (r) => {
          if (n++ === 0 && !answered) {
            answered = true;
            return first(r);
          }
          await later(r).catch((err: unknown) => ctx.log.warn({ transport: m.transport, err: (err as Error).message }, 'chat reply not delivered'));
        })
        .catch((err: unknown) => ctx.log.error({ transport: m.transport, err: asFerryError(err).message }, 'chat message failed'))
        .finally(() => first(null)),
    );
    const timer = new Promise<null>((r) => setTimeout(() => r(null), FIRST_REPLY_MS).unref());
    const got = await Promise.race([firstP, timer]);
    answered = true;
    return got;
  };
  /** Replies through the room's own outgoing robot (platforms whose callbacks cannot carry later replies). */
  const toRoom = (m: Inbound): ReplySink => async (r) => {
    const room = await store.chat.room(m.transport, m.room);
    if (!room) return void ctx.log.info({ transport: m.transport, room: m.room, reply: r.text.slice(0, 200) }, 'chat reply to an unbound room dropped');
    await chat.deliver(room, r);
  };

  route({
    method: 'POST',
    url: '/v1/chat/hooks/slack/:transport/commands',
    access: { public: 'signed by Slack (v0 signing secret, 5 minutes)' },
    raw: true,
    handler: async ({ params, req, raw }) => {
      const t = await transportOf(params.transport!, SlackTransport);
      const sig = header(req, 'x-slack-signature');
      verifySlack(t.signingSecret, { timestamp: header(req, 'x-slack-request-timestamp'), signature: sig }, raw, ctx.now());
      await once(t.name, `sig:${sig}`);
      const { inbound, responseUrl } = slackCommand(t.name, new URLSearchParams(raw), sig!);
      const first = await firstReply(inbound, async (r) => (responseUrl ? t.respond(responseUrl, r) : undefined));
      return first ? { response_type: 'in_channel', ...slackMessage(first) } : { response_type: 'ephemeral', text: '' };
    },
  });
  route({
    method: 'POST',
    url: '/v1/chat/hooks/slack/:transport/interactive',
    access: { public: 'signed by Slack (v0 signing secret, 5 minutes)' },
    raw: true,
    handler: async ({ params, req, reply, raw }) => {
      const t = await transportOf(params.transport!, SlackTransport);
      const sig = header(req, 'x-slack-signature');
      verifySlack(t.signingSecret, { timestamp: header(req, 'x-slack-request-timestamp'), signature: sig }, raw, ctx.now());
      await once(t.name, `sig:${sig}`);
      const a = slackAction(t.name, new URLSearchParams(raw));
      if (!a) return reply.code(200).send('');
      const later = async (r: OutMessage) => (a.responseUrl ? t.respond(a.responseUrl, r) : undefined);
      const first = await firstReply(a.inbound, later);
      // Buttons are answered through response_url; the request itself gets an empty 200.
      if (first) background(later(first).catch(() => {}));
      return reply.code(200).send('');
    },
  });
  route({
    method: 'POST',
    url: '/v1/chat/hooks/dingtalk/:transport',
    access: { public: 'signed by DingTalk (timestamp + sign headers, AppSecret)' },
    raw: true,
    handler: async ({ params, req, raw }) => {
      const t = await transportOf(params.transport!, DingtalkTransport);
      verifyDingtalk(t.appSecret, { timestamp: header(req, 'timestamp'), sign: header(req, 'sign') }, ctx.now());
      const body = parseBody(raw) as Parameters<typeof dingtalkInbound>[1];
      const got = dingtalkInbound(t.name, body, ctx.now());
      if (!got) return {};
      await once(t.name, `msg:${got.inbound.messageId}`);
      const later: ReplySink = got.sessionWebhook ? (r) => t.post(got.sessionWebhook!, r) : toRoom(got.inbound);
      const first = await firstReply(got.inbound, later);
      return first ? dingtalkMessage(first) : {};
    },
  });
  route({
    method: 'POST',
    url: '/v1/chat/hooks/feishu/:transport',
    access: { public: 'verified as Feishu/Lark does (Verification Token; Encrypt Key: signature and AES)' },
    raw: true,
    handler: async ({ params, req, raw }) => {
      const t = await transportOf(params.transport!, FeishuTransport);
      let outer = parseBody(raw) as { encrypt?: string } & FeishuEvent;
      if (t.encryptKey) {
        // Feishu signs only event callbacks; its URL check carries no signature headers.
        const signed = header(req, 'x-lark-signature') !== undefined;
        if (signed) verifyFeishu(t.encryptKey, { timestamp: header(req, 'x-lark-request-timestamp'), nonce: header(req, 'x-lark-request-nonce'), signature: header(req, 'x-lark-signature') }, raw, ctx.now());
        if (typeof outer.encrypt !== 'string') throw new FerryError('FERRY_E_CHAT_SIGNATURE', 'Feishu: an Encrypt Key is set but the body is not encrypted');
        outer = parseBody(feishuDecrypt(t.encryptKey, outer.encrypt)) as FeishuEvent;
        if (!signed && outer.type !== 'url_verification') throw new FerryError('FERRY_E_CHAT_SIGNATURE', 'Feishu: no X-Lark-Signature');
      }
      const e = outer as FeishuEvent;
      const token = e.header?.token ?? e.token ?? '';
      if (!safeEqual(token, t.verificationToken)) throw new FerryError('FERRY_E_CHAT_SIGNATURE', 'Feishu: the verification token does not match');
      if (e.type === 'url_verification') return { challenge: e.challenge };
      if (e.header?.create_time) checkFresh(Number(e.header.create_time), ctx.now(), FEISHU_WINDOW_MS, 'Feishu');
      const m = feishuInbound(t.name, e);
      if (!m) return {};
      await once(t.name, `event:${e.header?.event_id ?? m.messageId}`);
      // Feishu's callbacks carry no reply: every reply goes to the group's bot.
      background(chat.handle(m, toRoom(m)).catch((err: unknown) => ctx.log.error({ err: asFerryError(err).message }, 'feishu message failed')));
      return {};
    },
  });
  const wecomQuery = (req: FastifyRequest) => {
    const q = new URL(req.url, 'http://hub').searchParams;
    return { msg_signature: q.get('msg_signature') ?? undefined, timestamp: q.get('timestamp') ?? undefined, nonce: q.get('nonce') ?? undefined, echostr: q.get('echostr') ?? undefined };
  };
  route({
    method: 'GET',
    url: '/v1/chat/hooks/wecom/:transport',
    access: { public: 'verified as WeCom does (msg_signature with the Token, AES with the EncodingAESKey)' },
    handler: async ({ params, req, reply }) => {
      const t = await transportOf(params.transport!, WecomTransport);
      const q = wecomQuery(req);
      if (!q.echostr) throw new FerryError('FERRY_E_VALIDATION', 'echostr is missing');
      verifyWecom(t.token, q, q.echostr, ctx.now());
      const { message, receiveId } = wecomDecrypt(t.encodingAesKey, q.echostr);
      if (t.receiveId !== undefined && receiveId !== t.receiveId) throw new FerryError('FERRY_E_CHAT_SIGNATURE', 'WeCom: for another receiver');
      return reply.code(200).type('text/plain; charset=utf-8').send(message);
    },
  });
  route({
    method: 'POST',
    url: '/v1/chat/hooks/wecom/:transport',
    access: { public: 'verified as WeCom does (msg_signature with the Token, AES with the EncodingAESKey)' },
    raw: true,
    handler: async ({ params, req, reply, raw }) => {
      const t = await transportOf(params.transport!, WecomTransport);
      const q = wecomQuery(req);
      const cipher = wecomCiphertext(raw);
      if (!cipher) throw new FerryError('FERRY_E_CHAT_SIGNATURE', 'WeCom: no Encrypt in the body');
      verifyWecom(t.token, q, cipher, ctx.now());
      await once(t.name, `nonce:${q.timestamp}:${q.nonce}`);
      const { message, receiveId } = wecomDecrypt(t.encodingAesKey, cipher);
      if (t.receiveId !== undefined && receiveId !== t.receiveId) throw new FerryError('FERRY_E_CHAT_SIGNATURE', 'WeCom: for another receiver');
      const got = wecomInbound(t.name, message);
      if (got) {
        await once(t.name, `msg:${got.inbound.messageId}`);
        const sink: ReplySink = got.responseUrl ? (r) => t.post(got.responseUrl!, r) : toRoom(got.inbound);
        background(chat.handle(got.inbound, sink).catch((err: unknown) => ctx.log.error({ err: asFerryError(err).message }, 'wecom message failed')));
      }
      return reply.code(200).type('text/plain; charset=utf-8').send('success');
    },
  });
  route({
    method: 'POST',
    url: '/v1/chat/hooks/webhook/:transport',
    access: { public: 'signed with the transport secret (x-ferry-signature: v1 HMAC-SHA256 of timestamp.body)' },
    raw: true,
    handler: async ({ params, req, raw }) => {
      const t = await transportOf(params.transport!, WebhookTransport);
      verifyWebhook(t.secret, { timestamp: header(req, WEBHOOK_HEADERS.timestamp), signature: header(req, WEBHOOK_HEADERS.signature) }, raw, ctx.now());
      const b = parseBody(raw) as { room?: unknown; user?: unknown; text?: unknown; id?: unknown; thread?: unknown };
      if (typeof b.room !== 'string' || typeof b.user !== 'string' || typeof b.text !== 'string' || typeof b.id !== 'string') throw new FerryError('FERRY_E_VALIDATION', 'body: {"room","user","text","id"} strings');
      await once(t.name, `msg:${b.id}`);
      const replies: (OutMessage & { plain: string })[] = [];
      await chat.handle({ transport: t.name, platform: 'webhook', room: b.room, account: b.user, text: b.text, messageId: b.id, thread: typeof b.thread === 'string' ? b.thread : null }, async (r) => void replies.push({ ...r, plain: plainText(r) }));
      return { replies };
    },
  });

  return { idle: () => Promise.all([...inFlight]).then(() => undefined) };
}

function parseBody(raw: string): unknown {
  try {
    return JSON.parse(raw) as unknown;
  } catch (err) {
    throw new FerryError('FERRY_E_BAD_REQUEST', `body is not JSON: ${(err as Error).message}`);
  }
}

/** Where a platform sends its requests, for the admin to paste into its settings. */
export function hookPaths(platform: string, name: string): string[] {
  switch (platform) {
    case 'slack':
      return [`/v1/chat/hooks/slack/${name}/commands`, `/v1/chat/hooks/slack/${name}/interactive`];
    case 'dingtalk':
    case 'feishu':
    case 'wecom':
    case 'webhook':
      return [`/v1/chat/hooks/${platform}/${name}`];
    default:
      return [];
  }
}


// A Matrix homeserver for tests, implementing only the client-server API
// endpoints Ferry's bot and the tests use, as the specification says
// (spec.matrix.org, client-server API v3):
//   GET  /_matrix/client/v3/account/whoami
//   POST /_matrix/client/v3/createRoom            {invite?, name?}
//   POST /_matrix/client/v3/rooms/{roomId}/invite  {user_id}
//   POST /_matrix/client/v3/rooms/{roomId}/join    (invited members only)
//   GET  /_matrix/client/v3/rooms/{roomId}/joined_members
//   PUT  /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}
//        idempotent per access token and transaction id: the same txnId is
//        the same event (the same event_id comes back)
//   GET  /_matrix/client/v3/sync?since&timeout    long-poll; next_batch is a
//        stream token; rooms.join[id].timeline.events after `since`;
//        rooms.invite for invites made after `since` (all pending without it)
// Errors are {errcode, error}: M_UNKNOWN_TOKEN (401), M_FORBIDDEN (403),
// M_NOT_FOUND (404), M_LIMIT_EXCEEDED (429, with retry_after_ms) when a test
// asks for rate limiting. No federation, state resolution or E2EE.
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';

interface Event {
  pos: number;
  room: string;
  type: string;
  event_id: string;
  sender: string;
  content: Record<string, unknown>;
  state_key?: string;
  origin_server_ts: number;
}

interface Room {
  id: string;
  joined: Set<string>;
  invited: Map<string, number>;
}

export interface TestHomeserver {
  url: string;
  /** A user and their access token. */
  user(localpart: string): { userId: string; token: string };
  /** The next `n` sends by `userId` answer 429 M_LIMIT_EXCEEDED with this retry_after_ms. */
  limitSends(userId: string, n: number, retryAfterMs: number): void;
  /** Sends tried per transaction id (retries of the same message come with the same id). */
  attempts: Map<string, number>;
  /** How many sync requests carried `since` (the bot resumes from its stored token). */
  syncs: { since: string | null; user: string }[];
}

export async function testHomeserver(t: TestContext): Promise<TestHomeserver> {
  const tokens = new Map<string, string>();
  const rooms = new Map<string, Room>();
  const events: Event[] = [];
  const txns = new Map<string, string>();
  const waiters = new Set<() => void>();
  const attempts = new Map<string, number>();
  const syncs: TestHomeserver['syncs'] = [];
  let limit = { user: '', n: 0, ms: 0 };
  let pos = 0;
  const server_name = 'test.local';

  const add = (room: string, e: Omit<Event, 'pos' | 'room' | 'event_id' | 'origin_server_ts'>) => {
    const ev: Event = { ...e, pos: ++pos, room, event_id: `$${randomBytes(12).toString('base64url')}`, origin_server_ts: Date.now() };
    events.push(ev);
    for (const w of [...waiters]) w();
    return ev;
  };
  const wire = (e: Event) => ({ type: e.type, event_id: e.event_id, sender: e.sender, content: e.content, origin_server_ts: e.origin_server_ts, ...(e.state_key !== undefined ? { state_key: e.state_key } : {}) });

  const send = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  const err = (res: ServerResponse, status: number, errcode: string, error: string, extra: Record<string, unknown> = {}) => send(res, status, { errcode, error, ...extra });

  async function sync(user: string, q: URLSearchParams, res: ServerResponse, req: IncomingMessage) {
    const since = q.get('since');
    syncs.push({ since, user });
    const from = since ? Number(since.slice(1)) : 0;
    const timeout = Math.min(Number(q.get('timeout') ?? 0), 30_000);
    const relevant = () => events.some((e) => e.pos > from && (rooms.get(e.room)!.joined.has(user) || (e.type === 'm.room.member' && e.state_key === user)));
    if (since && timeout > 0 && !relevant()) {
      await new Promise<void>((resolve) => {
        const done = () => {
          waiters.delete(check);
          clearTimeout(timer);
          resolve();
        };
        const check = () => relevant() && done();
        const timer = setTimeout(done, timeout);
        waiters.add(check);
        req.on('close', done);
      });
    }
    const join: Record<string, { timeline: { events: unknown[]; limited: boolean } }> = {};
    const invite: Record<string, { invite_state: { events: unknown[] } }> = {};
    for (const r of rooms.values()) {
      if (r.joined.has(user)) {
        const evs = events.filter((e) => e.room === r.id && e.pos > from);
        const timeline = since ? evs : evs.slice(-50);
        if (timeline.length || !since) join[r.id] = { timeline: { events: timeline.map(wire), limited: !since && evs.length > 50 } };
      }
      const at = r.invited.get(user);
      if (at !== undefined && (!since || at > from)) invite[r.id] = { invite_state: { events: [{ type: 'm.room.member', sender: user, state_key: user, content: { membership: 'invite' } }] } };
    }
    send(res, 200, { next_batch: `s${pos}`, rooms: { join, invite, leave: {} } });
  }

  const server = createServer((req, res) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (text += c));
    req.on('end', () => {
      void (async () => {
        const u = new URL(req.url ?? '/', 'http://x');
        const auth = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? u.searchParams.get('access_token');
        const user = auth ? tokens.get(auth) : undefined;
        if (!user) return err(res, 401, 'M_UNKNOWN_TOKEN', 'Unrecognised access token');
        let body: Record<string, unknown> = {};
        try {
          body = text ? (JSON.parse(text) as Record<string, unknown>) : {};
        } catch {
          return err(res, 400, 'M_NOT_JSON', 'Content not JSON');
        }
        const p = u.pathname.replace(/^\/_matrix\/client\/v3/, '');
        let m: RegExpExecArray | null;
        if (req.method === 'GET' && p === '/account/whoami') return send(res, 200, { user_id: user });
        if (req.method === 'GET' && p === '/sync') return sync(user, u.searchParams, res, req);
        if (req.method === 'POST' && p === '/createRoom') {
          const id = `!${randomBytes(8).toString('base64url')}:${server_name}`;
          const r: Room = { id, joined: new Set([user]), invited: new Map() };
          rooms.set(id, r);
          add(id, { type: 'm.room.create', sender: user, state_key: '', content: { creator: user } });
          add(id, { type: 'm.room.member', sender: user, state_key: user, content: { membership: 'join' } });
          for (const inv of (body.invite as string[] | undefined) ?? []) r.invited.set(inv, add(id, { type: 'm.room.member', sender: user, state_key: inv, content: { membership: 'invite' } }).pos);
          return send(res, 200, { room_id: id });
        }
        if ((m = /^\/rooms\/([^/]+)\/(invite|join|joined_members|send\/([^/]+)\/([^/]+))$/.exec(p))) {
          const r = rooms.get(decodeURIComponent(m[1]!));
          if (!r) return err(res, 404, 'M_NOT_FOUND', 'Unknown room');
          if (m[2] === 'invite' && req.method === 'POST') {
            if (!r.joined.has(user)) return err(res, 403, 'M_FORBIDDEN', 'You are not in the room');
            const who = String(body.user_id ?? '');
            r.invited.set(who, add(r.id, { type: 'm.room.member', sender: user, state_key: who, content: { membership: 'invite' } }).pos);
            return send(res, 200, {});
          }
          if (m[2] === 'join' && req.method === 'POST') {
            if (!r.joined.has(user) && !r.invited.has(user)) return err(res, 403, 'M_FORBIDDEN', 'You are not invited to this room');
            r.invited.delete(user);
            if (!r.joined.has(user)) {
              r.joined.add(user);
              add(r.id, { type: 'm.room.member', sender: user, state_key: user, content: { membership: 'join' } });
            }
            return send(res, 200, { room_id: r.id });
          }
          if (m[2] === 'joined_members' && req.method === 'GET') {
            if (!r.joined.has(user)) return err(res, 403, 'M_FORBIDDEN', 'You are not in the room');
            return send(res, 200, { joined: Object.fromEntries([...r.joined].map((j) => [j, {}])) });
          }
          if (m[3] && req.method === 'PUT') {
            const txn = decodeURIComponent(m[4]!);
            attempts.set(txn, (attempts.get(txn) ?? 0) + 1);
            if (limit.n > 0 && limit.user === user) {
              limit.n--;
              return err(res, 429, 'M_LIMIT_EXCEEDED', 'Too many requests', { retry_after_ms: limit.ms });
            }
            if (!r.joined.has(user)) return err(res, 403, 'M_FORBIDDEN', 'You are not in the room');
            const key = `${auth}\u0000${txn}`;
            const seen = txns.get(key);
            if (seen) return send(res, 200, { event_id: seen });
            const ev = add(r.id, { type: decodeURIComponent(m[3]), sender: user, content: body });
            txns.set(key, ev.event_id);
            return send(res, 200, { event_id: ev.event_id });
          }
        }
        return err(res, 404, 'M_UNRECOGNIZED', 'Unrecognized request');
      })();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.after(() => {
    for (const w of [...waiters]) w();
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    user(localpart) {
      const userId = `@${localpart}:${server_name}`;
      const token = `syt_${localpart}_${randomBytes(8).toString('hex')}`;
      tokens.set(token, userId);
      return { userId, token };
    },
    limitSends(user, n, ms) {
      limit = { user, n, ms };
    },
    attempts,
    syncs,
  };
}

// ChatOps as stored (hub/chat/): transports and rooms, chat accounts linked
// to people, link codes, confirmations, approval rules, locks, the notice
// outbox, cursors, presence changes, requests already seen, and the console
// rooms' messages. Secrets arrive here already encrypted (hub/chat/secrets.ts).
//
// Ids of chat_feed and chat_messages are read by cursors (the notifier, the
// console's streams): writers take one lock each, so ids commit in order and
// a cursor never skips a row that commits late (as rollout_events do).
import { createHash } from 'node:crypto';
import { inList, type Db } from './db.js';

const FEED_LOCK = 'chat:feed';
const MESSAGE_LOCK = 'chat:messages';

export interface TransportRow {
  name: string;
  platform: string;
  /** JSON; secret fields encrypted. */
  config: string;
  created_at: number;
  created_by: string | null;
}

export interface RoomRecord {
  id: string;
  transport: string;
  room: string;
  /** null: the vendor's room (every tenant). */
  tenants: string[] | null;
  subscribe: string[];
  /** JSON; secret fields encrypted. */
  config: string;
  createdAt: number;
}

interface RoomRow {
  id: string;
  transport: string;
  room: string;
  tenants: string | null;
  subscribe: string;
  config: string;
  created_at: number;
}

export type ConfirmationState = 'pending' | 'confirmed' | 'done' | 'cancelled' | 'expired' | 'refused' | 'failed';

export interface ConfirmationRecord {
  code: string;
  roomId: string;
  requester: string;
  command: string;
  plan: string;
  planHash: string;
  needsApprover: boolean;
  tenants: string[];
  state: ConfirmationState;
  approver: string | null;
  thread: string | null;
  createdAt: number;
  expiresAt: number;
}

interface ConfirmationRow {
  code: string;
  room_id: string;
  requester: string;
  command: string;
  plan: string;
  plan_hash: string;
  needs_approver: number;
  tenants: string;
  state: ConfirmationState;
  approver: string | null;
  thread: string | null;
  created_at: number;
  expires_at: number;
}

export interface LockRecord {
  id: string;
  stack: string;
  selector: string;
  tenants: string[] | null;
  reason: string;
  createdBy: string | null;
  createdAt: number;
}

interface LockRow {
  num: number;
  stack: string;
  selector: string;
  tenants: string | null;
  reason: string;
  created_by: string | null;
  created_at: number;
}

export interface OutboxRow {
  id: number;
  room_id: string;
  kind: string;
  alarm: number;
  body: string;
  created_at: number;
  due_at: number;
  attempts: number;
}

export interface FeedRow {
  id: number;
  at: number;
  kind: 'offline' | 'online';
  agent_id: string;
  tenant: string;
}

export interface MessageRow {
  id: number;
  room_id: string;
  at: number;
  kind: string;
  author: string | null;
  text: string;
  meta: string;
}

const json = <T>(s: string | null): T | null => (s === null ? null : (JSON.parse(s) as T));
const num = (x: unknown) => Number(x);

export const lockId = (n: number) => `L-${n}`;

function toRoom(r: RoomRow): RoomRecord {
  return { id: r.id, transport: r.transport, room: r.room, tenants: json<string[]>(r.tenants), subscribe: JSON.parse(r.subscribe) as string[], config: r.config, createdAt: num(r.created_at) };
}

function toConfirmation(r: ConfirmationRow): ConfirmationRecord {
  return {
    code: r.code,
    roomId: r.room_id,
    requester: r.requester,
    command: r.command,
    plan: r.plan,
    planHash: r.plan_hash,
    needsApprover: num(r.needs_approver) === 1,
    tenants: JSON.parse(r.tenants) as string[],
    state: r.state,
    approver: r.approver,
    thread: r.thread,
    createdAt: num(r.created_at),
    expiresAt: num(r.expires_at),
  };
}

function toLock(r: LockRow): LockRecord {
  return { id: lockId(num(r.num)), stack: r.stack, selector: r.selector, tenants: json<string[]>(r.tenants), reason: r.reason, createdBy: r.created_by, createdAt: num(r.created_at) };
}

export const hashCode = (code: string) => createHash('sha256').update(code.toUpperCase()).digest('base64url');

export class ChatRows {
  constructor(private readonly db: Db) {}

  // ---- transports ----------------------------------------------------------------
  async addTransport(name: string, platform: string, config: string, by: string | null, now: number): Promise<boolean> {
    return (await this.db.run('INSERT INTO chat_transports (name, platform, config, created_at, created_by) VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING', [name, platform, config, now, by])) === 1;
  }

  async setTransportConfig(name: string, config: string): Promise<void> {
    await this.db.run('UPDATE chat_transports SET config = ? WHERE name = ?', [config, name]);
  }

  transport(name: string): Promise<TransportRow | undefined> {
    return this.db.get<TransportRow>('SELECT * FROM chat_transports WHERE name = ?', [name]);
  }

  transports(): Promise<TransportRow[]> {
    return this.db.all<TransportRow>('SELECT * FROM chat_transports ORDER BY name');
  }

  async removeTransport(name: string): Promise<boolean> {
    await this.db.run('DELETE FROM chat_rooms WHERE transport = ?', [name]);
    await this.db.run('DELETE FROM chat_accounts WHERE transport = ?', [name]);
    return (await this.db.run('DELETE FROM chat_transports WHERE name = ?', [name])) === 1;
  }

  // ---- rooms ---------------------------------------------------------------------
  async bindRoom(r: { id: string; transport: string; room: string; tenants: string[] | null; subscribe: string[]; config: string }, by: string | null, now: number): Promise<RoomRecord> {
    await this.db.run(
      `INSERT INTO chat_rooms (id, transport, room, tenants, subscribe, config, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (transport, room) DO UPDATE SET tenants = excluded.tenants, subscribe = excluded.subscribe, config = excluded.config`,
      [r.id, r.transport, r.room, r.tenants ? JSON.stringify(r.tenants) : null, JSON.stringify(r.subscribe), r.config, now, by],
    );
    return (await this.room(r.transport, r.room))!;
  }

  async room(transport: string, room: string): Promise<RoomRecord | undefined> {
    const r = await this.db.get<RoomRow>('SELECT * FROM chat_rooms WHERE transport = ? AND room = ?', [transport, room]);
    return r ? toRoom(r) : undefined;
  }

  async roomById(id: string): Promise<RoomRecord | undefined> {
    const r = await this.db.get<RoomRow>('SELECT * FROM chat_rooms WHERE id = ?', [id]);
    return r ? toRoom(r) : undefined;
  }

  async rooms(transport?: string): Promise<RoomRecord[]> {
    const rows = transport ? await this.db.all<RoomRow>('SELECT * FROM chat_rooms WHERE transport = ? ORDER BY transport, room', [transport]) : await this.db.all<RoomRow>('SELECT * FROM chat_rooms ORDER BY transport, room');
    return rows.map(toRoom);
  }

  /** What notices a room gets; false when it is not bound (any more). */
  async setSubscribe(id: string, subscribe: readonly string[]): Promise<boolean> {
    return (await this.db.run('UPDATE chat_rooms SET subscribe = ? WHERE id = ?', [JSON.stringify(subscribe), id])) === 1;
  }

  async unbindRoom(id: string): Promise<boolean> {
    return (await this.db.run('DELETE FROM chat_rooms WHERE id = ?', [id])) === 1;
  }

  // ---- accounts and link codes ---------------------------------------------------------
  async accountUser(transport: string, account: string): Promise<string | undefined> {
    return (await this.db.get<{ user_id: string }>('SELECT user_id FROM chat_accounts WHERE transport = ? AND account = ?', [transport, account]))?.user_id;
  }

  async linkAccount(transport: string, account: string, userId: string, now: number): Promise<void> {
    await this.db.run('INSERT INTO chat_accounts (transport, account, user_id, linked_at) VALUES (?, ?, ?, ?) ON CONFLICT (transport, account) DO UPDATE SET user_id = excluded.user_id, linked_at = excluded.linked_at', [
      transport,
      account,
      userId,
      now,
    ]);
  }

  async accountsOf(userId: string): Promise<{ transport: string; account: string; linkedAt: number }[]> {
    const rows = await this.db.all<{ transport: string; account: string; linked_at: number }>('SELECT transport, account, linked_at FROM chat_accounts WHERE user_id = ? ORDER BY transport, account', [userId]);
    return rows.map((r) => ({ transport: r.transport, account: r.account, linkedAt: num(r.linked_at) }));
  }

  async addLinkCode(code: string, userId: string, expiresAt: number): Promise<void> {
    await this.db.run('DELETE FROM chat_link_codes WHERE user_id = ?', [userId]);
    await this.db.run('INSERT INTO chat_link_codes (code_hash, user_id, expires_at) VALUES (?, ?, ?)', [hashCode(code), userId, expiresAt]);
  }

  /** The code's person, once: a used or expired code is gone. */
  async redeemLinkCode(code: string, now: number): Promise<string | undefined> {
    const h = hashCode(code);
    const row = await this.db.get<{ user_id: string; expires_at: number }>('SELECT user_id, expires_at FROM chat_link_codes WHERE code_hash = ?', [h]);
    if (!row) return undefined;
    const taken = await this.db.run('DELETE FROM chat_link_codes WHERE code_hash = ?', [h]);
    return taken === 1 && num(row.expires_at) > now ? row.user_id : undefined;
  }

  // ---- confirmations -----------------------------------------------------------------
  async addConfirmation(c: Omit<ConfirmationRecord, 'state' | 'approver'>, now: number): Promise<void> {
    await this.db.run(
      'INSERT INTO chat_confirmations (code, room_id, requester, command, plan, plan_hash, needs_approver, tenants, state, thread, created_at, expires_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      [c.code, c.roomId, c.requester, c.command, c.plan, c.planHash, c.needsApprover ? 1 : 0, JSON.stringify(c.tenants), 'pending', c.thread, c.createdAt, c.expiresAt, now],
    );
  }

  async confirmation(code: string): Promise<ConfirmationRecord | undefined> {
    const r = await this.db.get<ConfirmationRow>('SELECT * FROM chat_confirmations WHERE code = ?', [code.toUpperCase()]);
    return r ? toConfirmation(r) : undefined;
  }

  /** Moves a confirmation from one state to another; false when someone else moved it first. */
  async moveConfirmation(code: string, from: ConfirmationState, to: ConfirmationState, now: number, approver?: string): Promise<boolean> {
    const n = approver
      ? await this.db.run('UPDATE chat_confirmations SET state = ?, approver = ?, updated_at = ? WHERE code = ? AND state = ?', [to, approver, now, code, from])
      : await this.db.run('UPDATE chat_confirmations SET state = ?, updated_at = ? WHERE code = ? AND state = ?', [to, now, code, from]);
    return n === 1;
  }

  async expiredConfirmations(now: number, limit = 100): Promise<ConfirmationRecord[]> {
    const rows = await this.db.all<ConfirmationRow>("SELECT * FROM chat_confirmations WHERE state IN ('pending', 'confirmed') AND expires_at <= ? ORDER BY expires_at LIMIT ?", [now, limit]);
    return rows.map(toConfirmation);
  }

  // ---- approval rules ----------------------------------------------------------------------
  async setPolicy(tenant: string, approval: string | null, now: number): Promise<void> {
    await this.db.run('INSERT INTO chat_policies (tenant, approval, updated_at) VALUES (?, ?, ?) ON CONFLICT (tenant) DO UPDATE SET approval = excluded.approval, updated_at = excluded.updated_at', [tenant, approval, now]);
  }

  async policies(tenants: readonly string[]): Promise<Map<string, string>> {
    if (!tenants.length) return new Map();
    const rows = await this.db.all<{ tenant: string; approval: string | null }>(`SELECT tenant, approval FROM chat_policies WHERE tenant IN ${inList(tenants.length)}`, [...tenants]);
    return new Map(rows.filter((r) => r.approval !== null).map((r) => [r.tenant, r.approval!]));
  }

  // ---- locks ---------------------------------------------------------------------------------
  async addLock(l: { stack: string; selector: string; tenants: string[] | null; reason: string }, by: string | null, now: number): Promise<LockRecord> {
    // In a transaction: a RETURNING statement writes, and only the writer connection may.
    const r = await this.db.tx(() =>
      this.db.get<LockRow>('INSERT INTO chat_locks (stack, selector, tenants, reason, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING *', [l.stack, l.selector, l.tenants ? JSON.stringify(l.tenants) : null, l.reason, by, now]),
    );
    return toLock(r!);
  }

  async locks(): Promise<LockRecord[]> {
    return (await this.db.all<LockRow>('SELECT * FROM chat_locks WHERE removed_at IS NULL ORDER BY num')).map(toLock);
  }

  async lock(id: string): Promise<LockRecord | undefined> {
    const m = /^L-(\d{1,9})$/.exec(id);
    if (!m) return undefined;
    const r = await this.db.get<LockRow>('SELECT * FROM chat_locks WHERE num = ? AND removed_at IS NULL', [Number(m[1])]);
    return r ? toLock(r) : undefined;
  }

  async removeLock(id: string, by: string | null, now: number): Promise<boolean> {
    const m = /^L-(\d{1,9})$/.exec(id);
    if (!m) return false;
    return (await this.db.run('UPDATE chat_locks SET removed_at = ?, removed_by = ? WHERE num = ? AND removed_at IS NULL', [now, by, Number(m[1])])) === 1;
  }

  // ---- outbox ------------------------------------------------------------------------------------
  async enqueue(roomId: string, kind: string, alarm: boolean, body: string, now: number, dueAt: number): Promise<void> {
    await this.db.run('INSERT INTO chat_outbox (room_id, kind, alarm, body, created_at, due_at) VALUES (?, ?, ?, ?, ?, ?)', [roomId, kind, alarm ? 1 : 0, body, now, dueAt]);
  }

  /** Rooms with unsent notices due by `now`. */
  async dueRooms(now: number): Promise<string[]> {
    return (await this.db.all<{ room_id: string }>('SELECT DISTINCT room_id FROM chat_outbox WHERE sent_at IS NULL AND due_at <= ?', [now])).map((r) => r.room_id);
  }

  async unsent(roomId: string, limit: number): Promise<OutboxRow[]> {
    const rows = await this.db.all<OutboxRow>('SELECT id, room_id, kind, alarm, body, created_at, due_at, attempts FROM chat_outbox WHERE room_id = ? AND sent_at IS NULL ORDER BY alarm DESC, id LIMIT ?', [roomId, limit]);
    return rows.map((r) => ({ ...r, id: num(r.id), alarm: num(r.alarm), created_at: num(r.created_at), due_at: num(r.due_at), attempts: num(r.attempts) }));
  }

  async markSent(ids: readonly number[], digest: number, now: number): Promise<void> {
    for (let i = 0; i < ids.length; i += 500) {
      const part = ids.slice(i, i + 500);
      await this.db.run(`UPDATE chat_outbox SET sent_at = ?, digest = ?, error = NULL WHERE id IN ${inList(part.length)} AND sent_at IS NULL`, [now, digest, ...part]);
    }
  }

  async deferSend(ids: readonly number[], dueAt: number, error: string): Promise<void> {
    for (let i = 0; i < ids.length; i += 500) {
      const part = ids.slice(i, i + 500);
      await this.db.run(`UPDATE chat_outbox SET due_at = ?, attempts = attempts + 1, error = ? WHERE id IN ${inList(part.length)}`, [dueAt, error.slice(0, 500), ...part]);
    }
  }

  /** Notices sent to a room, oldest first (tests and the bench count them). */
  sentTo(roomId: string): Promise<{ id: number; kind: string; body: string; digest: number; sent_at: number }[]> {
    return this.db.all('SELECT id, kind, body, digest, sent_at FROM chat_outbox WHERE room_id = ? AND sent_at IS NOT NULL ORDER BY id', [roomId]);
  }

  // ---- cursors -------------------------------------------------------------------------------------
  async cursor(name: string): Promise<string | undefined> {
    return (await this.db.get<{ value: string }>('SELECT value FROM chat_cursors WHERE name = ?', [name]))?.value;
  }

  async setCursor(name: string, value: string): Promise<void> {
    await this.db.run('INSERT INTO chat_cursors (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value', [name, value]);
  }

  async dropCursor(name: string): Promise<boolean> {
    return (await this.db.run('DELETE FROM chat_cursors WHERE name = ?', [name])) === 1;
  }

  // ---- presence changes ------------------------------------------------------------------------------
  async addFeed(rows: readonly { at: number; kind: 'offline' | 'online'; agentId: string; tenant: string }[]): Promise<void> {
    if (!rows.length) return;
    await this.db.tx(async () => {
      await this.db.lock(FEED_LOCK);
      // In order (ids follow it), 200 to a statement: a reconnect storm is thousands of rows.
      for (let i = 0; i < rows.length; i += 200) {
        const part = rows.slice(i, i + 200);
        await this.db.run(`INSERT INTO chat_feed (at, kind, agent_id, tenant) VALUES ${part.map(() => '(?, ?, ?, ?)').join(', ')}`, part.flatMap((r) => [r.at, r.kind, r.agentId, r.tenant]));
      }
    });
  }

  async feed(after: number, until: number, limit: number): Promise<FeedRow[]> {
    const rows = await this.db.all<FeedRow>('SELECT id, at, kind, agent_id, tenant FROM chat_feed WHERE id > ? AND at <= ? ORDER BY id LIMIT ?', [after, until, limit]);
    return rows.map((r) => ({ ...r, id: num(r.id), at: num(r.at) }));
  }

  /** The newest presence change of these agents after `after` (a flap within the grace time). */
  async lastFeed(agentIds: readonly string[], after: number): Promise<Map<string, FeedRow>> {
    const out = new Map<string, FeedRow>();
    for (let i = 0; i < agentIds.length; i += 500) {
      const part = agentIds.slice(i, i + 500);
      const rows = await this.db.all<FeedRow>(`SELECT id, at, kind, agent_id, tenant FROM chat_feed WHERE id > ? AND agent_id IN ${inList(part.length)} ORDER BY id`, [after, ...part]);
      for (const r of rows) out.set(r.agent_id, { ...r, id: num(r.id), at: num(r.at) });
    }
    return out;
  }

  async feedHead(): Promise<number> {
    return num((await this.db.get<{ id: number | null }>('SELECT max(id) AS id FROM chat_feed'))?.id ?? 0);
  }

  async pruneFeed(below: number): Promise<number> {
    return this.db.run('DELETE FROM chat_feed WHERE id < ?', [below]);
  }

  // ---- requests seen ---------------------------------------------------------------------------------
  /** True the first time (transport, key) is seen while it is kept; false for a replay. */
  async firstSeen(transport: string, key: string, now: number, keepMs: number): Promise<boolean> {
    await this.db.run('DELETE FROM chat_seen WHERE transport = ? AND seen_key = ? AND expires_at <= ?', [transport, key, now]);
    return (await this.db.run('INSERT INTO chat_seen (transport, seen_key, expires_at) VALUES (?, ?, ?) ON CONFLICT (transport, seen_key) DO NOTHING', [transport, key.slice(0, 300), now + keepMs])) === 1;
  }

  pruneSeen(now: number): Promise<number> {
    return this.db.run('DELETE FROM chat_seen WHERE expires_at <= ?', [now]);
  }

  // ---- console rooms' messages ---------------------------------------------------------------------------
  async addMessage(m: { roomId: string; at: number; kind: string; author: string | null; text: string; meta: unknown }): Promise<number> {
    return this.db.tx(async () => {
      await this.db.lock(MESSAGE_LOCK);
      const r = await this.db.get<{ id: number }>('INSERT INTO chat_messages (room_id, at, kind, author, text, meta) VALUES (?, ?, ?, ?, ?, ?) RETURNING id', [m.roomId, m.at, m.kind, m.author, m.text, JSON.stringify(m.meta ?? {})]);
      return num(r!.id);
    });
  }

  async messages(roomId: string, after: number, limit: number): Promise<MessageRow[]> {
    const rows = await this.db.all<MessageRow>('SELECT * FROM chat_messages WHERE room_id = ? AND id > ? ORDER BY id LIMIT ?', [roomId, after, limit]);
    return rows.map((r) => ({ ...r, id: num(r.id), at: num(r.at) }));
  }

  async lastMessages(roomId: string, limit: number): Promise<MessageRow[]> {
    const rows = await this.db.all<MessageRow>('SELECT * FROM chat_messages WHERE room_id = ? ORDER BY id DESC LIMIT ?', [roomId, limit]);
    return rows.map((r) => ({ ...r, id: num(r.id), at: num(r.at) })).reverse();
  }
}

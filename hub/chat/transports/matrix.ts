// Matrix, client-server API (the seed's chat is Matrix-based). The bot is an
// ordinary account with an access token:
// - GET /_matrix/client/v3/sync long-polls with the `since` token, stored in
//   the database after each batch (a restart or a new leader carries on; an
//   event seen twice is answered once: event ids are remembered);
// - invites to bound rooms are joined (POST /rooms/{id}/join), others ignored;
// - m.text messages from people that address the bot are commands; the bot's
//   own events and every m.notice (other bots) are never answered;
// - replies are m.notice in the command's thread (m.thread), sent with
//   PUT /rooms/{id}/send/m.room.message/{txnId}: one transaction id per
//   message, so a retried send is the same message;
// - 429 M_LIMIT_EXCEEDED: wait retry_after_ms, then send again.
// Only the leader syncs (one answer per message across replicas).
import { randomBytes } from 'node:crypto';
import type { Logger } from '../../../shared/logger.js';
import { sleep } from '../../../shared/sleep.js';
import type { RoomRecord } from '../../store/chat.js';
import type { Store } from '../../store/store.js';
import type { Settings } from '../config.js';
import { plainText, TransportError, type Inbound, type OutMessage, type ReplySink, type Transport } from '../types.js';
import { sendJson } from './http.js';

const API = '/_matrix/client/v3';
const SYNC_TIMEOUT_MS = 30_000;
/** Waits longer than this come back as an error for the notifier to schedule. */
const MAX_INLINE_WAIT_MS = 10_000;
const FILTER = JSON.stringify({ presence: { types: [] }, account_data: { types: [] }, room: { timeline: { limit: 50, types: ['m.room.message'] }, state: { types: [] }, ephemeral: { types: [] } } });

interface SyncAnswer {
  next_batch?: string;
  rooms?: {
    join?: Record<string, { timeline?: { events?: MatrixEvent[] } }>;
    invite?: Record<string, unknown>;
  };
}

interface MatrixEvent {
  type: string;
  event_id: string;
  sender: string;
  content?: { msgtype?: string; body?: string; 'm.relates_to'?: { rel_type?: string; event_id?: string } };
}

export class MatrixTransport implements Transport {
  readonly platform = 'matrix' as const;
  private readonly base: string;
  private readonly token: string;
  private userId: string | undefined;
  private running = false;
  private abort: AbortController | null = null;
  private loop: Promise<void> | null = null;

  constructor(
    readonly name: string,
    settings: Settings,
    private readonly deps: { store: Store; log: Logger; handle: (m: Inbound, out: ReplySink) => Promise<void> },
  ) {
    this.base = settings.text('homeserver')!.replace(/\/+$/, '');
    this.token = settings.secret('accessToken');
    this.userId = settings.text('userId');
  }

  private async call(method: 'GET' | 'POST' | 'PUT', path: string, body?: unknown, timeoutMs?: number): Promise<Record<string, unknown>> {
    for (let attempt = 0; ; attempt++) {
      try {
        const a = await sendJson(this.base + path, body, { method, headers: { authorization: `Bearer ${this.token}` }, timeoutMs: timeoutMs ?? 15_000, ...(this.abort && path.includes('/sync') ? { signal: this.abort.signal } : {}) });
        if (a.status >= 400) throw new TransportError(`${this.name}: HTTP ${a.status} ${String(a.body.errcode ?? '')} ${String(a.body.error ?? '')}`.trim(), null, a.status !== 408);
        return a.body;
      } catch (err) {
        // 429 M_LIMIT_EXCEEDED: wait what it says (here when short, else the caller schedules it).
        if (!(err instanceof TransportError) || err.retryAfterMs === null || err.retryAfterMs > MAX_INLINE_WAIT_MS || attempt >= 4) throw err;
        await sleep(err.retryAfterMs, this.abort?.signal ?? new AbortController().signal);
      }
    }
  }

  async send(room: RoomRecord, m: OutMessage): Promise<void> {
    await this.sendTo(room.room, m);
  }

  private async sendTo(roomId: string, m: OutMessage): Promise<void> {
    const txn = m.key ?? `ferry-${randomBytes(9).toString('base64url')}`;
    const content: Record<string, unknown> = { msgtype: 'm.notice', body: plainText(m) };
    if (m.thread) content['m.relates_to'] = { rel_type: 'm.thread', event_id: m.thread, is_falling_back: true, 'm.in_reply_to': { event_id: m.thread } };
    await this.call('PUT', `${API}/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${encodeURIComponent(txn)}`, content);
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.abort = new AbortController();
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.abort?.abort();
    await this.loop?.catch(() => {});
    this.loop = null;
  }

  private async run(): Promise<void> {
    const cursor = `matrix:${this.name}:since`;
    let failures = 0;
    while (this.running) {
      try {
        this.userId ??= String((await this.call('GET', `${API}/account/whoami`)).user_id ?? '');
        const since = await this.deps.store.chat.cursor(cursor);
        const q = new URLSearchParams({ timeout: since ? String(SYNC_TIMEOUT_MS) : '0', filter: FILTER });
        if (since) q.set('since', since);
        const s = (await this.call('GET', `${API}/sync?${q}`, undefined, SYNC_TIMEOUT_MS + 15_000)) as SyncAnswer;
        if (!this.running) return;
        await this.invites(Object.keys(s.rooms?.invite ?? {}));
        // The first sync (no token stored) only finds where now is: history is not answered.
        if (since) for (const [roomId, r] of Object.entries(s.rooms?.join ?? {})) for (const e of r.timeline?.events ?? []) await this.onEvent(roomId, e);
        if (s.next_batch) await this.deps.store.chat.setCursor(cursor, s.next_batch);
        failures = 0;
      } catch (err) {
        if (!this.running) return;
        failures++;
        const wait = err instanceof TransportError && err.retryAfterMs !== null ? err.retryAfterMs : Math.min(30_000, 500 * 2 ** Math.min(failures, 6));
        this.deps.log.warn({ transport: this.name, err: (err as Error).message, waitMs: wait }, 'matrix sync failed; retrying');
        await sleep(wait, this.abort!.signal);
      }
    }
  }

  /** Joins invites to rooms bound to this transport; leaves the others be. */
  private async invites(roomIds: string[]): Promise<void> {
    for (const id of roomIds) {
      if (!(await this.deps.store.chat.room(this.name, id))) continue;
      await this.call('POST', `${API}/rooms/${encodeURIComponent(id)}/join`, {});
      this.deps.log.info({ transport: this.name, room: id }, 'joined matrix room');
    }
  }

  private async onEvent(roomId: string, e: MatrixEvent): Promise<void> {
    if (e.type !== 'm.room.message' || e.sender === this.userId || e.content?.msgtype !== 'm.text' || typeof e.content.body !== 'string') return;
    if (!(await this.deps.store.chat.firstSeen(this.name, `event:${e.event_id}`, Date.now(), 7 * 86_400_000))) return;
    const rel = e.content['m.relates_to'];
    const thread = rel?.rel_type === 'm.thread' && rel.event_id ? rel.event_id : e.event_id;
    let n = 0;
    await this.deps.handle({ transport: this.name, platform: 'matrix', room: roomId, account: e.sender, text: e.content.body, messageId: e.event_id, thread }, (m) =>
      // One transaction id per reply to this event: a retry after a crash sends the same messages again, which the homeserver answers as sent.
      this.sendTo(roomId, { ...m, key: m.key ?? `ferry-${e.event_id.replace(/[^A-Za-z0-9]/g, '')}-${n++}` }),
    );
  }
}

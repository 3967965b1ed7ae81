// The console's own chat (no third party at all): a room's messages are rows
// of chat_messages — what people typed, the bot's replies and notices — read
// by the console's chat panel as Server-Sent Events (GET
// /v1/chat/console/rooms/:room/stream), resumable with Last-Event-ID, the
// same way GET /v1/events works: a doorbell (here, or `chat` from another
// replica) makes each stream read what follows its cursor from the table.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { encodeSse, SSE_CONTENT_TYPE, SSE_HEARTBEAT } from '../../../shared/events.js';
import type { Logger } from '../../../shared/logger.js';
import type { Cluster } from '../../cluster/cluster.js';
import type { MessageRow, RoomRecord } from '../../store/chat.js';
import type { Store } from '../../store/store.js';
import type { OutMessage, Transport } from '../types.js';

export const CONSOLE_TRANSPORT = 'console';

/** A console message as the panel receives it. */
export function messageView(r: MessageRow) {
  const meta = JSON.parse(r.meta) as Record<string, unknown>;
  return { id: r.id, at: new Date(r.at).toISOString(), kind: r.kind, author: r.author, text: r.text, ...meta };
}

export class ConsoleTransport implements Transport {
  readonly name = CONSOLE_TRANSPORT;
  readonly platform = 'console' as const;

  constructor(
    private readonly store: Store,
    private readonly streams: ConsoleStreams,
    private readonly now: () => number,
  ) {}

  async send(room: RoomRecord, m: OutMessage): Promise<void> {
    await this.post(room.id, m.kind, 'ferry', m.text, { ...(m.confirm ? { confirm: m.confirm } : {}), ...(m.audit ? { audit: m.audit } : {}), ...(m.link ? { link: m.link } : {}), ...(m.thread ? { thread: m.thread } : {}) });
  }

  /** Writes a message of the room (a person's, or the bot's) and rings the streams. */
  async post(roomId: string, kind: string, author: string | null, text: string, meta: Record<string, unknown>): Promise<number> {
    const id = await this.store.detached(() => this.store.chat.addMessage({ roomId, at: this.now(), kind, author, text, meta }));
    this.streams.ring(roomId);
    return id;
  }
}

interface Stream {
  res: ServerResponse;
  roomId: string;
  owner: string;
  cursor: number;
  pumping: boolean;
  again: boolean;
  closed: boolean;
}

export class ConsoleStreams {
  private readonly streams = new Set<Stream>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly store: Store,
    private readonly cluster: Cluster,
    private readonly log: Logger,
    heartbeatMs = 15_000,
  ) {
    cluster.on('chat', ({ room }) => this.ringLocal(room));
    this.timer = setInterval(() => {
      for (const s of this.streams) {
        s.res.write(SSE_HEARTBEAT);
        this.pump(s);
      }
    }, heartbeatMs);
    this.timer.unref();
  }

  count(owner: string): number {
    let n = 0;
    for (const s of this.streams) if (s.owner === owner) n++;
    return n;
  }

  /** New messages in the room: streams here read them, and other replicas' are rung. */
  ring(roomId: string): void {
    this.cluster.publish('chat', { room: roomId }); // rings here too
  }

  private ringLocal(roomId: string): void {
    for (const s of this.streams) if (s.roomId === roomId) this.pump(s);
  }

  async open(req: IncomingMessage, res: ServerResponse, roomId: string, after: number | null, owner: string): Promise<void> {
    const head = (await this.store.chat.lastMessages(roomId, 1))[0]?.id ?? 0;
    const s: Stream = { res, roomId, owner, cursor: after ?? Math.max(0, head - 50), pumping: false, again: false, closed: false };
    res.writeHead(200, { 'content-type': `${SSE_CONTENT_TYPE}; charset=utf-8`, 'cache-control': 'no-store', 'x-accel-buffering': 'no' });
    req.socket.setNoDelay(true);
    this.streams.add(s);
    res.on('close', () => {
      s.closed = true;
      this.streams.delete(s);
    });
    res.write(`retry: 2000\n\n` + encodeSse({ id: s.cursor, event: 'ready', data: { room: roomId, after: s.cursor } }));
    this.pump(s);
  }

  private pump(s: Stream): void {
    if (s.pumping) {
      s.again = true;
      return;
    }
    s.pumping = true;
    void (async () => {
      do {
        s.again = false;
        for (;;) {
          const rows = await this.store.chat.messages(s.roomId, s.cursor, 200);
          if (s.closed || !rows.length) break;
          let text = '';
          for (const r of rows) text += encodeSse({ id: r.id, event: 'message', data: messageView(r) });
          s.cursor = rows[rows.length - 1]!.id;
          s.res.write(text);
          if (rows.length < 200) break;
        }
      } while (s.again && !s.closed);
    })()
      .catch((err: unknown) => this.log.warn({ err: (err as Error).message }, 'could not read console chat messages'))
      .finally(() => (s.pumping = false));
  }

  close(): void {
    clearInterval(this.timer);
    for (const s of [...this.streams]) {
      s.closed = true;
      s.res.end();
    }
    this.streams.clear();
  }
}

// ChatOps assembled: the engine, the transports (built from their stored
// settings, secrets opened in memory only), the console's rooms and streams,
// the notifier, and the leader's Matrix sync loops. hub/server.ts makes one.
import type { KeyPair } from '../../shared/keys.js';
import type { HubContext } from '../http/context.js';
import type { RoomRecord } from '../store/chat.js';
import { Settings, isPlatform } from './config.js';
import { ChatEngine, type EngineOptions } from './engine.js';
import type { Platform } from './limits.js';
import { lockGate } from './locks.js';
import { Notifier, type NotifierOptions } from './notifier.js';
import { SecretBox } from './secrets.js';
import { CONSOLE_TRANSPORT, ConsoleStreams, ConsoleTransport } from './transports/console.js';
import { DingtalkTransport } from './transports/dingtalk.js';
import { FeishuTransport } from './transports/feishu.js';
import { MatrixTransport } from './transports/matrix.js';
import { SlackTransport } from './transports/slack.js';
import { WebhookTransport } from './transports/webhook.js';
import { WecomTransport } from './transports/wecom.js';
import type { Inbound, OutMessage, ReplySink, Transport } from './types.js';

export interface ChatOptions {
  engine: Partial<EngineOptions>;
  notifier: Partial<NotifierOptions>;
}

export class Chat {
  readonly box: SecretBox;
  readonly engine: ChatEngine;
  readonly streams: ConsoleStreams;
  readonly console: ConsoleTransport;
  readonly notifier: Notifier;
  private readonly built = new Map<string, { config: string; t: Transport }>();
  private readonly syncing = new Map<string, MatrixTransport>();
  private readonly refresher: NodeJS.Timeout;
  private closed = false;

  constructor(
    private readonly ctx: HubContext,
    hubKey: KeyPair,
    opts: Partial<ChatOptions> = {},
  ) {
    this.box = new SecretBox(hubKey.secretKey);
    this.engine = new ChatEngine(ctx, opts.engine);
    this.streams = new ConsoleStreams(ctx.store, ctx.cluster, ctx.log.child({ component: 'chat-console' }));
    this.console = new ConsoleTransport(ctx.store, this.streams, ctx.now);
    this.notifier = new Notifier(ctx.store, ctx.cluster, (n) => this.transportFor(n), (now) => this.expired(now), ctx.log.child({ component: 'chat-notifier' }), ctx.now, opts.notifier);
    // Locks hold on every deploy path, whatever the surface.
    ctx.rollouts.gates.push(lockGate(ctx.store));
    ctx.delivery.gates.push(lockGate(ctx.store));
    ctx.rollouts.events.on('transition', () => this.notifier.kick());
    ctx.gateway.on('connected', (id: string) => this.notifier.presence('online', id, ctx.gateway.session(id)?.tenant ?? null));
    ctx.gateway.on('disconnected', (id: string) => this.notifier.presence('offline', id, null));
    ctx.cluster.onLeadership(() => void this.syncLoops());
    ctx.cluster.on('chat-notify', () => void this.syncLoops());
    this.refresher = setInterval(() => void this.syncLoops(), 10_000);
    this.refresher.unref();
  }

  start(): void {
    this.notifier.start();
    void this.syncLoops();
  }

  /** Handles a message from any transport (the harness calls this with no platform at all). */
  handle(m: Inbound, out: ReplySink): Promise<void> {
    return this.engine.handle(m, out);
  }

  /** A bound room's settings, opened. */
  roomSettings(room: RoomRecord): Settings {
    return new Settings(room.config, this.box);
  }

  /** The transport named, built from its stored settings (rebuilt when they change); null when none. */
  async transportFor(name: string): Promise<Transport | null> {
    if (name === CONSOLE_TRANSPORT) return this.console;
    const row = await this.ctx.store.chat.transport(name);
    if (!row || !isPlatform(row.platform)) return null;
    const hit = this.built.get(name);
    if (hit && hit.config === row.config) return hit.t;
    const t = this.build(name, row.platform, new Settings(row.config, this.box));
    this.built.set(name, { config: row.config, t });
    return t;
  }

  private build(name: string, platform: Platform, s: Settings): Transport {
    const rooms = (room: RoomRecord) => this.roomSettings(room);
    switch (platform) {
      case 'console':
        return this.console;
      case 'matrix':
        return new MatrixTransport(name, s, { store: this.ctx.store, log: this.ctx.log.child({ component: 'chat-matrix', transport: name }), handle: (m, out) => this.handle(m, out) });
      case 'slack':
        return new SlackTransport(name, s, rooms);
      case 'dingtalk':
        return new DingtalkTransport(name, s, rooms, this.ctx.now);
      case 'feishu':
        return new FeishuTransport(name, s, rooms, this.ctx.now);
      case 'wecom':
        return new WecomTransport(name, s, rooms);
      case 'webhook':
        return new WebhookTransport(name, s, rooms, this.ctx.now);
      default: {
        const never: never = platform;
        return never;
      }
    }
  }

  /** Sends a reply or notice to a room through its transport. */
  async deliver(room: RoomRecord, m: OutMessage): Promise<void> {
    const t = await this.transportFor(room.transport);
    if (!t) throw new Error(`transport ${room.transport} is not configured`);
    await t.send(room, m);
  }

  /** On the leader: one Matrix sync loop per Matrix transport; elsewhere none. */
  private async syncLoops(): Promise<void> {
    if (this.closed) return;
    try {
      const want = this.ctx.cluster.leader ? (await this.ctx.store.chat.transports()).filter((t) => t.platform === 'matrix') : [];
      for (const [name, m] of this.syncing) {
        const row = want.find((w) => w.name === name);
        const current = row ? await this.transportFor(name) : null;
        if (current !== m) {
          this.syncing.delete(name);
          await m.stop();
        }
      }
      for (const row of want) {
        if (this.syncing.has(row.name)) continue;
        const t = (await this.transportFor(row.name)) as MatrixTransport;
        this.syncing.set(row.name, t);
        t.start();
      }
    } catch (err) {
      this.ctx.log.warn({ err: (err as Error).message }, 'could not start or stop matrix sync loops');
    }
  }

  /** Requests past their time: expired (once, on the leader), and what to tell their rooms. */
  private async expired(now: number): Promise<{ room: string; text: string; thread: string | null }[]> {
    const out = [];
    for (const c of await this.ctx.store.chat.expiredConfirmations(now)) {
      if (await this.engine.expire(c)) out.push({ room: c.roomId, text: `⌛ request ${c.code} timed out (${c.command}): nothing was done`, thread: c.thread });
    }
    return out;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.refresher);
    for (const m of this.syncing.values()) await m.stop();
    this.syncing.clear();
    this.streams.close();
    await this.notifier.close();
  }
}

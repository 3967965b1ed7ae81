// The agent gateway: authenticates agents at the HTTP upgrade (before any
// message is exchanged), holds one live socket per agent, keeps it honest
// with ping/pong, and decodes every frame once at the boundary.
import type { IncomingMessage } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { EventEmitter } from 'node:events';
import { WebSocketServer, type WebSocket, type RawData } from 'ws';
import { AUTH_CLOCK_SKEW_MS, AUTH_HEADERS, authStatement } from '../../shared/auth.js';
import { FerryError, asFerryError, type ErrorBody } from '../../shared/errors.js';
import { decodePublicKey, decodeSignature, verify } from '../../shared/keys.js';
import type { Logger } from '../../shared/logger.js';
import { CLOSE, MAX_PAYLOAD, decodeAgentMessage, encode, hubError, type AgentMessage, type HubMessage } from '../../shared/protocol.js';
import type { Cluster } from '../cluster/cluster.js';
import type { AgentRecord } from '../store/fleet.js';
import type { Store } from '../store/store.js';
import type { Challenges } from './challenge.js';
import { Presence } from './presence.js';

/** Bytes queued on a socket past which we stop sending to it (backpressure). */
const HIGH_WATER = 4 * 1024 * 1024;
/** Protocol violations tolerated on one connection before it is closed. */
const MAX_VIOLATIONS = 10;

export interface Session {
  agentId: string;
  tenant: string;
  ws: WebSocket;
  connectedAt: number;
  remote: string;
  alive: boolean;
  violations: number;
  /** The newest audit checkpoint the agent says it witnessed (from hello). */
  witnessed: { size: number; root: string } | null;
  /** The newest directive seq sent on this socket (a sweep sends only what is newer). */
  sentSeq: number;
  log: Logger;
}

export interface GatewayOptions {
  store: Store;
  cluster: Cluster;
  challenges: Challenges;
  log: Logger;
  heartbeatMs: number;
  /** host[:port] agents must connect to and sign for; by default the request's Host header. */
  publicHost?: string;
  now?: () => number;
}

export class Gateway extends EventEmitter {
  private readonly wss: WebSocketServer;
  private readonly sessions = new Map<string, Session>();
  private readonly heartbeat: NodeJS.Timeout;
  private readonly now: () => number;
  readonly presence: Presence;
  /** Messages sent through send/sendEncoded, by type (/metrics). */
  readonly sentCounts: Record<string, number> = {};

  constructor(private readonly opts: GatewayOptions) {
    super();
    this.setMaxListeners(0); // one listener per waiting API call (plans, acks)
    this.now = opts.now ?? Date.now;
    this.wss = new WebSocketServer({ noServer: true, maxPayload: MAX_PAYLOAD, perMessageDeflate: false, clientTracking: false });
    this.heartbeat = setInterval(() => this.beat(), opts.heartbeatMs);
    this.heartbeat.unref();
    this.presence = new Presence(opts.store, opts.cluster, opts.log.child({ component: 'presence' }), (id) => this.sessions.has(id), this.now);
    // The agent connected to another replica: an older socket here is stale.
    opts.cluster.on('connected', ({ agentId, replica }) => {
      if (replica !== opts.cluster.replicaId) this.disconnect(agentId, CLOSE.replaced, 'connected to another hub replica');
    });
    opts.cluster.on('revoke', ({ agentId }) => this.disconnect(agentId, CLOSE.revoked, 'agent revoked'));
  }

  /** Agents with a socket on this replica. */
  localAgents(): string[] {
    return [...this.sessions.keys()];
  }

  get connectedCount(): number {
    return this.sessions.size;
  }

  session(agentId: string): Session | undefined {
    return this.sessions.get(agentId);
  }

  /** Called by the HTTP server for upgrade requests on the agent path. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    this.authenticate(req).then(
      (agent) => {
        if (socket.destroyed) return;
        this.wss.handleUpgrade(req, socket, head, (ws) => this.attach(agent, ws, req));
      },
      (err: unknown) => {
        const e = asFerryError(err);
        this.opts.log.warn({ code: e.code, remote: req.socket.remoteAddress, agentId: req.headers[AUTH_HEADERS.agent] }, 'agent handshake refused');
        this.emit('refused', e.code);
        rejectUpgrade(socket, e.status, e.toJSON());
      },
    );
  }

  /** Closes an agent's live socket (revocation); terminates it if it lingers. */
  disconnect(agentId: string, code: number, reason: string): boolean {
    const s = this.sessions.get(agentId);
    if (!s) return false;
    s.ws.close(code, reason);
    setTimeout(() => s.ws.terminate(), 1000).unref();
    return true;
  }

  send(agentId: string, msg: HubMessage): boolean {
    const s = this.sessions.get(agentId);
    if (!s) return false;
    const ok = sendTo(s, msg);
    if (ok && msg.type === 'directive') s.sentSeq = Math.max(s.sentSeq, seqOf(msg.directive.payload));
    if (ok) this.sentCounts[msg.type] = (this.sentCounts[msg.type] ?? 0) + 1;
    return ok;
  }

  /** Sends a message already encoded (`encode`, or built to the same JSON): a wave sends thousands that share most of their bytes. */
  sendEncoded(agentId: string, type: HubMessage['type'], text: string, seq?: number): boolean {
    const s = this.sessions.get(agentId);
    if (!s) return false;
    const ok = sendText(s, type, text);
    if (ok && seq !== undefined) s.sentSeq = Math.max(s.sentSeq, seq);
    if (ok) this.sentCounts[type] = (this.sentCounts[type] ?? 0) + 1;
    return ok;
  }

  async close(): Promise<void> {
    clearInterval(this.heartbeat);
    for (const s of this.sessions.values()) s.ws.close(CLOSE.goingAway, 'hub shutting down');
    const deadline = Date.now() + 2000;
    while (this.sessions.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const s of [...this.sessions.values()]) {
      s.ws.terminate();
      this.presence.disconnected(s.agentId, this.now());
    }
    this.sessions.clear();
    await new Promise<void>((r) => this.wss.close(() => r()));
    // Before the database closes: what was received but is still batched in memory.
    this.emit('closed');
    await this.presence.close();
  }

  private async authenticate(req: IncomingMessage): Promise<AgentRecord> {
    const h = (name: string) => {
      const v = req.headers[name];
      return typeof v === 'string' ? v : undefined;
    };
    const agentId = h(AUTH_HEADERS.agent);
    const nonce = h(AUTH_HEADERS.nonce);
    const timeText = h(AUTH_HEADERS.time);
    const sigText = h(AUTH_HEADERS.signature);
    if (!agentId || !nonce || !timeText || !sigText) throw new FerryError('FERRY_E_AGENT_AUTH_MISSING');
    const reqHost = (req.headers.host ?? '').toLowerCase();
    if (this.opts.publicHost && reqHost !== this.opts.publicHost) {
      throw new FerryError('FERRY_E_AGENT_AUTH_HOST', `connected to ${JSON.stringify(reqHost.slice(0, 100))}, this hub is ${this.opts.publicHost}`);
    }
    const agent = await this.opts.store.fleet.findAgent(agentId.slice(0, 64));
    if (!agent) throw new FerryError('FERRY_E_AGENT_UNKNOWN', agentId.slice(0, 64));
    const now = this.now();
    const time = /^\d{1,15}$/.test(timeText) ? Number(timeText) : NaN;
    if (!Number.isSafeInteger(time) || Math.abs(now - time) > AUTH_CLOCK_SKEW_MS) {
      throw new FerryError('FERRY_E_AGENT_AUTH_CLOCK', `agent time ${timeText}, hub time ${now}`);
    }
    const host = this.opts.publicHost ?? reqHost;
    const sig = decodeSignature(sigText);
    if (!sig) throw new FerryError('FERRY_E_AGENT_AUTH_INVALID', 'signature is not base64 of 64 bytes');
    const ok = verify(authStatement({ host, agentId, nonce, time }), sig, decodePublicKey(agent.publicKey));
    if (!ok) throw new FerryError('FERRY_E_AGENT_AUTH_INVALID', `for host ${host}`);
    await this.opts.challenges.redeem(nonce, now);
    if (agent.revokedAt !== null) throw new FerryError('FERRY_E_AGENT_REVOKED', agent.id);
    return agent;
  }

  private attach(agent: AgentRecord, ws: WebSocket, req: IncomingMessage): void {
    const remote = `${req.socket.remoteAddress ?? '?'}:${req.socket.remotePort ?? '?'}`;
    const log = this.opts.log.child({ agentId: agent.id, tenant: agent.tenant });
    const previous = this.sessions.get(agent.id);
    if (previous) {
      previous.log.warn({ remote: previous.remote }, 'agent connected again; closing the older connection');
      previous.ws.close(CLOSE.replaced, 'replaced by a newer connection');
      setTimeout(() => previous.ws.terminate(), 1000).unref();
    }
    const s: Session = { agentId: agent.id, tenant: agent.tenant, ws, connectedAt: this.now(), remote, alive: true, violations: 0, witnessed: null, sentSeq: 0, log };
    this.sessions.set(agent.id, s);
    this.presence.connected(agent.id, s.connectedAt);
    if (this.opts.cluster.shared) this.opts.cluster.publish('connected', { agentId: agent.id, replica: this.opts.cluster.replicaId });
    log.info({ remote }, 'agent connected');
    ws.on('pong', () => (s.alive = true));
    ws.on('message', (data, isBinary) => this.onFrame(s, data, isBinary));
    ws.on('error', (err) => log.warn({ err: err.message, code: (err as { code?: string }).code }, 'agent socket error'));
    ws.on('close', (code, reason) => {
      if (this.sessions.get(agent.id) === s) {
        this.sessions.delete(agent.id);
        this.presence.disconnected(agent.id, this.now());
        this.emit('disconnected', agent.id);
      }
      log.info({ code, reason: reason.toString() }, 'agent disconnected');
    });
    sendTo(s, { type: 'welcome', agentId: agent.id, tenant: agent.tenant, heartbeatMs: this.opts.heartbeatMs, serverTime: this.now() });
    this.emit('connected', agent.id);
  }

  private onFrame(s: Session, data: RawData, isBinary: boolean): void {
    let msg: AgentMessage;
    try {
      msg = decodeAgentMessage(isBinary ? null : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as Buffer));
    } catch (err) {
      const e = asFerryError(err, 'FERRY_E_PROTOCOL_INVALID');
      s.violations++;
      s.log.warn({ code: e.code, detail: e.detail, violations: s.violations }, 'bad message from agent');
      sendTo(s, hubError(e.code, e.detail));
      if (s.violations >= MAX_VIOLATIONS) s.ws.close(CLOSE.protocolError, 'too many protocol errors');
      return;
    }
    switch (msg.type) {
      case 'hello':
        this.presence.hello(s.agentId, msg.agentVersion, { host: msg.host, engine: msg.engine, protocol: msg.protocol }, this.now());
        s.witnessed = msg.witnessed ?? null;
        s.log.info({ agentVersion: msg.agentVersion, hostname: msg.host.hostname }, 'agent hello');
        this.emit('hello', s.agentId, msg);
        break;
      case 'error':
        s.log.warn({ code: msg.code, message: msg.message }, 'agent reported an error');
        break;
      case 'ack':
        this.emit('ack', s.agentId, msg);
        break;
      case 'cosign':
        this.emit('cosign', s.agentId, msg);
        break;
      case 'status':
        this.emit('status', s.agentId, msg);
        break;
      case 'plan':
        this.emit('plan', s.agentId, msg);
        break;
      case 'relay':
        this.emit('relay', s.agentId, msg);
        break;
      case 'checks':
        this.emit('checks', s.agentId, msg);
        break;
      case 'figures':
        this.emit('figures', s.agentId, msg);
        break;
      case 'operation-result':
        this.emit('operation-result', s.agentId, msg);
        break;
      case 'stream-data':
        this.emit('stream-data', s.agentId, msg);
        break;
      case 'upgrade':
        this.emit('upgrade', s.agentId, msg);
        break;
      default: {
        const never: never = msg;
        throw new Error(`unhandled message ${(never as { type: string }).type}`);
      }
    }
  }

  private beat(): void {
    for (const s of this.sessions.values()) {
      if (!s.alive) {
        s.log.warn('agent missed a heartbeat; terminating its socket');
        s.ws.terminate();
        continue;
      }
      s.alive = false;
      s.ws.ping();
    }
  }
}

/** A directive envelope's seq (the hub signed it, so its payload parses). */
function seqOf(payload: string): number {
  try {
    return (JSON.parse(Buffer.from(payload, 'base64').toString('utf8')) as { seq?: number }).seq ?? 0;
  } catch {
    return 0;
  }
}

function sendTo(s: Session, msg: HubMessage): boolean {
  return sendText(s, msg.type, encode(msg));
}

function sendText(s: Session, type: HubMessage['type'], text: string): boolean {
  if (s.ws.readyState !== s.ws.OPEN) return false;
  if (s.ws.bufferedAmount > HIGH_WATER) {
    s.log.warn({ bufferedAmount: s.ws.bufferedAmount, type }, 'agent socket is congested; message not sent');
    return false;
  }
  s.ws.send(text);
  return true;
}

function rejectUpgrade(socket: Duplex, status: number, body: ErrorBody): void {
  if (!socket.writable) return void socket.destroy();
  const json = JSON.stringify({ error: body });
  socket.once('finish', () => socket.destroy());
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nConnection: close\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${Buffer.byteLength(json)}\r\n\r\n${json}`,
  );
}

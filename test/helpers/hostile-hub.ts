// A hostile hub, run as its own process: `node dist/test/helpers/hostile-hub.js CONFIG.json`.
// It holds the real hub's signing key (as a thief or a compromised hub
// would), listens where the agents' hub was, hands out challenges, accepts
// their WebSocket (it does not check who connects: it is not the hub), greets
// them with a real `welcome`, and then, per connection, plays a script:
// signed directives and checkpoints dated as it likes, garbage frames, a
// frame far over the size limit. Everything the agent sends back, and every
// connection and close, is printed on stdout as one JSON line, for the test.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { WebSocketServer, type WebSocket } from 'ws';
import { AGENT_PATH, CHALLENGE_PATH } from '../../shared/auth.js';
import { PAYLOAD_TYPES, addSignature, createEnvelope, signatureFor, type Envelope } from '../../shared/dsse.js';
import { privateKeyFromPem } from '../../shared/keys.js';
import { canonicalJson } from '../../shared/release.js';

export type HostileStep =
  | { kind: 'directive'; seq: number; issuedAt: number; expiresAt: number; rootVersion: number; releases: { stack: string; version: string; digest: string; envelope: Envelope }[] }
  | { kind: 'checkpoint'; size: number; root: string; at: number; fromSize: number | null; consistency: string[] }
  | { kind: 'garbage'; count: number }
  | { kind: 'big'; bytes: number }
  /** Waits until the agent has sent a message of this type on this connection. */
  | { kind: 'await'; type: string }
  | { kind: 'close'; code: number };

export interface HostileConfig {
  port: number;
  /** The real hub's key file (hub-signing.key in its data dir). */
  keyFile: string;
  agentId: string;
  tenant: string;
  heartbeatMs: number;
  /** What the hub's welcome says its clock reads, relative to its real clock. */
  welcomeOffsetMs?: number;
  /** One script per connection, in order; later connections are only greeted. */
  connections: HostileStep[][];
}

function main(): void {
  const cfg = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as HostileConfig;
  const key = privateKeyFromPem(readFileSync(cfg.keyFile, 'utf8'));
  const say = (event: string, fields: Record<string, unknown> = {}) => process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');
  const sign = (type: keyof typeof PAYLOAD_TYPES, doc: unknown): Envelope => {
    const env = createEnvelope(PAYLOAD_TYPES[type], canonicalJson(doc));
    return addSignature(env, signatureFor(env, key));
  };

  const server = createServer((req, res) => {
    if (req.url?.startsWith(CHALLENGE_PATH)) {
      res.writeHead(200, { 'content-type': 'application/json' });
      return void res.end(JSON.stringify({ nonce: randomBytes(24).toString('base64url') }));
    }
    res.writeHead(404).end();
  });
  // no payload limit of its own: it is the one sending the oversized frame
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  let n = 0;
  server.on('upgrade', (req, socket, head) => {
    if (!req.url?.startsWith(AGENT_PATH)) return void socket.destroy();
    wss.handleUpgrade(req, socket, head, (ws) => void serve(ws, ++n));
  });

  async function serve(ws: WebSocket, conn: number): Promise<void> {
    say('connection', { n: conn });
    const received: { type: string }[] = [];
    const waiters: (() => void)[] = [];
    ws.on('message', (data) => {
      let msg: { type: string };
      try {
        msg = JSON.parse(data.toString()) as { type: string };
      } catch {
        msg = { type: '(not json)' };
      }
      received.push(msg);
      say('received', { n: conn, msg });
      for (const w of waiters.splice(0)) w();
    });
    const ping = setInterval(() => ws.ping(), cfg.heartbeatMs);
    ws.on('close', (code, reason) => {
      clearInterval(ping);
      say('closed', { n: conn, code, reason: reason.toString() });
      for (const w of waiters.splice(0)) w();
    });
    ws.send(JSON.stringify({ type: 'welcome', agentId: cfg.agentId, tenant: cfg.tenant, heartbeatMs: cfg.heartbeatMs, serverTime: Date.now() + (cfg.welcomeOffsetMs ?? 0) }));
    for (const step of cfg.connections[conn - 1] ?? []) {
      if (ws.readyState !== ws.OPEN) break;
      switch (step.kind) {
        case 'directive': {
          const doc = { _type: 'directive', tenant: cfg.tenant, agent: cfg.agentId, seq: step.seq, issuedAt: step.issuedAt, expiresAt: step.expiresAt, rootVersion: step.rootVersion, releases: step.releases.map(({ stack, version, digest }) => ({ stack, version, digest })) };
          ws.send(JSON.stringify({ type: 'directive', directive: sign('directive', doc), releases: step.releases.map((r) => r.envelope), roots: [] }));
          break;
        }
        case 'checkpoint': {
          const cp = sign('checkpoint', { _type: 'checkpoint', log: cfg.tenant, size: step.size, root: step.root, at: step.at });
          ws.send(JSON.stringify({ type: 'checkpoint', checkpoint: cp, fromSize: step.fromSize, consistency: step.consistency, entries: [] }));
          break;
        }
        case 'garbage':
          for (let i = 0; i < step.count && ws.readyState === ws.OPEN; i++) ws.send(`{"type": garbage ${i}`);
          break;
        case 'big':
          ws.send(Buffer.alloc(step.bytes, 0x61).toString('latin1'));
          break;
        case 'await':
          while (!received.some((m) => m.type === step.type) && ws.readyState === ws.OPEN) await new Promise<void>((r) => waiters.push(r));
          break;
        case 'close':
          ws.close(step.code, 'hostile hub moves on');
          break;
      }
      say('sent', { n: conn, kind: step.kind });
    }
  }

  server.listen(cfg.port, '127.0.0.1', () => say('listening', { port: cfg.port }));
  process.on('SIGTERM', () => {
    for (const c of wss.clients) c.terminate();
    server.close(() => process.exit(0));
  });
}

if (process.argv[1]?.endsWith('hostile-hub.js')) main();

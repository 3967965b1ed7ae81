// One client worker process for bench/rollout: drives a slice of simulated
// agents that do the real signed handshake (GET challenge, Ed25519 over the
// auth statement, upgrade with x-ferry-* headers, hello) and then act as a
// fake engine: on a `directive` frame they note the receive time, ack it
// (accepted, with the payload digest) and, after `applyMs`, report every
// release in it `applied`. Signatures are not verified here (the agent's
// verify cost comes after receipt, which is what is measured).
// Talks to the orchestrator over the fork IPC channel (see RolloutFromWorker).
import { readFileSync } from 'node:fs';
import { Agent as UndiciAgent, request } from 'undici';
import WebSocket from 'ws';
import { AGENT_PATH, AUTH_HEADERS, CHALLENGE_PATH, authStatement, hostOf } from '../../shared/auth.js';
import { payloadBytes, payloadDigest, type Envelope } from '../../shared/dsse.js';
import { signNode } from '../../shared/keys.js';
import { MAX_PAYLOAD, PROTOCOL_VERSION } from '../../shared/protocol.js';
import { secretKeyOf, type BenchAgentKey } from './seed.js';

export interface RolloutWorkerConfig {
  /** Replicas: agent i dials hubUrls[i % n] first and the next one after each failed or lost connection (a balancer's failover). */
  hubUrls: string[];
  keysFile: string;
  from: number;
  to: number;
  concurrency: number;
  applyMs: number;
  /** Source address for this worker's sockets (127.0.0.x: past 28,000 agents one address runs out of ports); undefined: the kernel picks. */
  sourceAddress?: string;
}

/** mark: from now on, note when each agent is welcomed again (a replica is about to be killed). */
export type RolloutToWorker = { type: 'start' } | { type: 'collect' } | { type: 'mark' } | { type: 'stop' };

export type RolloutFromWorker =
  | { type: 'ready'; agents: number }
  | { type: 'progress'; welcomed: number; directives: number; applied: number; failures: number; disconnects: number; back: number; open: number }
  | { type: 'connected' }
  /** Per agent: when its first directive frame arrived and when it sent `applied` (Date.now(), NaN: never). */
  | { type: 'collected'; receivedAt: number[]; appliedAt: number[]; backAt: number[]; cpuMs: number }
  | { type: 'fatal'; message: string };

const cfg = JSON.parse(process.argv[2] ?? '{}') as RolloutWorkerConfig;
const keys = (JSON.parse(readFileSync(cfg.keysFile, 'utf8')) as BenchAgentKey[]).slice(cfg.from, cfg.to);
const n = keys.length;
const send = (m: RolloutFromWorker) => process.send!(m);

const hubs = cfg.hubUrls.map((u) => {
  const base = new URL(u);
  const ws = new URL(AGENT_PATH, base);
  ws.protocol = 'ws:';
  return { base, ws, challenge: new URL(CHALLENGE_PATH, base) };
});
const dispatcher = new UndiciAgent({ connections: 64, keepAliveTimeout: 30_000, ...(cfg.sourceAddress ? { connect: { localAddress: cfg.sourceAddress } } : {}) });
const hello = JSON.stringify({
  type: 'hello',
  protocol: PROTOCOL_VERSION,
  agentVersion: 'bench-rollout',
  host: { hostname: 'bench', platform: 'linux', release: '6.1', arch: 'x64', cpus: 2, memoryBytes: 1 << 30 },
  engine: { error: { code: 'FERRY_E_ENGINE_UNREACHABLE', message: 'bench agent: fake engine' } },
});

const receivedAt = new Array<number>(n).fill(NaN);
const appliedAt = new Array<number>(n).fill(NaN);
const welcomedOnce = new Array<boolean>(n).fill(false);
/** After a mark: when each agent was welcomed again (NaN: not yet, or never disconnected). */
let backAt = new Array<number>(n).fill(NaN);
let marked = false;
let back = 0;
/** Sockets welcomed and not closed. */
let open = 0;
/** Which replica each agent dials next. */
const replica = Array.from({ length: n }, (_, i) => (cfg.from + i) % hubs.length);
const sockets: (WebSocket | undefined)[] = new Array(n).fill(undefined);
let welcomed = 0;
let directives = 0;
let applied = 0;
let failures = 0;
let disconnects = 0;
let inFlight = 0;
let next = 0;
let stopping = false;

async function attempt(i: number): Promise<void> {
  const k = keys[i]!;
  const { base, ws: wsUrl, challenge: challengeUrl } = hubs[replica[i]!]!;
  const kp = { publicKey: new Uint8Array(Buffer.from(k.publicKey, 'base64')), secretKey: secretKeyOf(k) };
  const res = await request(challengeUrl, { dispatcher, headersTimeout: 30_000, bodyTimeout: 30_000 });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`challenge ${res.statusCode}`);
  const nonce = (JSON.parse(text) as { nonce: string }).nonce;
  const time = Date.now();
  const sig = Buffer.from(signNode(authStatement({ host: hostOf(base), agentId: k.id, nonce, time }), kp)).toString('base64');
  const ws = new WebSocket(wsUrl, {
    headers: { [AUTH_HEADERS.agent]: k.id, [AUTH_HEADERS.nonce]: nonce, [AUTH_HEADERS.time]: String(time), [AUTH_HEADERS.signature]: sig },
    perMessageDeflate: false,
    maxPayload: MAX_PAYLOAD,
    ...(cfg.sourceAddress ? { localAddress: cfg.sourceAddress } : {}),
    handshakeTimeout: 30_000,
  });
  sockets[i] = ws;
  await new Promise<void>((resolve) => {
    let ok = false;
    let accepted = 0;
    ws.on('open', () => ws.send(hello));
    ws.on('message', (data) => {
      const now = Date.now();
      const m = JSON.parse(data.toString()) as { type: string; directive?: Envelope };
      if (m.type === 'welcome' && !ok) {
        ok = true;
        open++;
        if (marked && welcomedOnce[i] && Number.isNaN(backAt[i])) {
          backAt[i] = now;
          back++;
        }
        if (!welcomedOnce[i]) {
          welcomedOnce[i] = true;
          welcomed++;
          inFlight--;
          launch();
          if (welcomed === n) send({ type: 'connected' });
        }
        return;
      }
      if (m.type !== 'directive' || !m.directive) return;
      const env = m.directive;
      const doc = JSON.parse(payloadBytes(env).toString()) as { seq: number; releases: { stack: string; version: string }[] };
      const digest = payloadDigest(env);
      if (doc.seq <= accepted) {
        ws.send(JSON.stringify({ type: 'ack', seq: doc.seq, digest, accepted: doc.seq === accepted, ...(doc.seq === accepted ? { duplicate: true } : { code: 'FERRY_E_DIRECTIVE_REPLAY' }) }));
        return;
      }
      accepted = doc.seq;
      if (Number.isNaN(receivedAt[i])) {
        receivedAt[i] = now;
        directives++;
      }
      ws.send(JSON.stringify({ type: 'ack', seq: doc.seq, digest, accepted: true }));
      const report = () => {
        if (ws.readyState !== WebSocket.OPEN) return;
        const since = new Date().toISOString();
        ws.send(JSON.stringify({ type: 'status', releases: doc.releases.map((r) => ({ stack: r.stack, version: r.version, state: 'applied', since, runningVersion: r.version })), services: [] }));
        if (Number.isNaN(appliedAt[i])) {
          appliedAt[i] = Date.now();
          applied++;
        }
      };
      if (cfg.applyMs > 0) setTimeout(report, cfg.applyMs);
      else report();
    });
    ws.on('unexpected-response', (_q, r) => {
      failures++;
      r.resume();
      ws.terminate();
    });
    ws.on('error', () => {
      if (!ok) failures++;
    });
    ws.on('close', () => {
      if (ok) open--;
      if (ok && !stopping) disconnects++;
      resolve();
    });
  });
}

async function runAgent(i: number): Promise<void> {
  let tries = 0;
  while (!stopping) {
    try {
      await attempt(i);
    } catch {
      failures++;
    }
    if (stopping) return;
    tries++;
    replica[i] = (replica[i]! + 1) % hubs.length;
    // The agent's backoff: base 1 s, cap 60 s, full jitter.
    await new Promise((r) => setTimeout(r, Math.random() * Math.min(60_000, 1000 * 2 ** Math.min(tries, 6))));
  }
}

function launch(): void {
  while (inFlight < cfg.concurrency && next < n) {
    const i = next++;
    inFlight++;
    void runAgent(i);
  }
}

const progress = setInterval(() => send({ type: 'progress', welcomed, directives, applied, failures, disconnects, back, open }), 500);

process.on('message', (m: RolloutToWorker) => {
  if (m.type === 'start') launch();
  else if (m.type === 'collect') {
    const cpu = process.cpuUsage();
    send({ type: 'collected', receivedAt, appliedAt, backAt, cpuMs: (cpu.user + cpu.system) / 1000 });
  } else if (m.type === 'mark') {
    marked = true;
    back = 0;
    backAt = new Array<number>(n).fill(NaN);
  } else if (m.type === 'stop') stop();
});
process.on('disconnect', stop);

function stop(): void {
  if (stopping) return;
  stopping = true;
  clearInterval(progress);
  for (const ws of sockets) ws?.terminate();
  void dispatcher.close();
  setTimeout(() => process.exit(0), 200);
}

send({ type: 'ready', agents: n });

// Simulated agents. Two kinds, both doing the real handshake byte for byte
// (GET challenge, Ed25519 signature over the auth statement, upgrade with
// x-ferry-* headers, welcome, hello) and both reconnecting with the agent's
// backoffDelay (base 1 s, cap 60 s, full jitter):
//   connection  the agent's own Connection class, transport and all, signing
//               with shared/keys `sign` as the agent does;
//   lean        the same steps in a few lines, signing with `signNode`
//               (OpenSSL; Ed25519 is deterministic, so the hub receives the
//               very same signature). A floor for the clients' CPU, which on
//               a small bench machine comes out of the cores the hub needs.
import WebSocket from 'ws';
import { Connection, backoffDelay, refusal, transportError } from '../../agent/connection.js';
import { createTransport, type Transport } from '../../agent/proxy.js';
import { AGENT_PATH, AUTH_HEADERS, CHALLENGE_PATH, authStatement, hostOf } from '../../shared/auth.js';
import { FerryError, asFerryError } from '../../shared/errors.js';
import { fingerprint, signNode, type KeyPair } from '../../shared/keys.js';
import type { Logger } from '../../shared/logger.js';
import { MAX_PAYLOAD, decodeHubMessage, encode, type Hello } from '../../shared/protocol.js';
import type { ClientKind } from './messages.js';
import type { BenchAgentKey } from './seed.js';

/** The agent's defaults (agent/config.ts). */
export const RECONNECT = { baseMs: 1000, capMs: 60_000 } as const;

export interface SimHooks {
  welcome(): void;
  disconnected(): void;
  /** A failed attempt, by a short stable key (code and errno). */
  failure(key: string): void;
}

export interface SimAgent {
  run(signal: AbortSignal): Promise<void>;
  transport: Transport;
}

export interface SimContext {
  hubUrl: string;
  sourceAddress?: string;
  hello: Hello;
  /** Logger for Connection (warn level; the worker counts its failure lines). */
  log: Logger;
}

/** The agent's direct transport; with a source address, the same two agents bound to it. */
export function benchTransport(hubUrl: string, sourceAddress?: string): Transport {
  return createTransport(hubUrl, {}, undefined, { localAddress: sourceAddress });
}

/** `CODE ERRNO`, or `CODE detail` (long numbers elided, so ports and times group together; HTTP statuses stay). */
export function failureKey(code: string, detail: string | undefined): string {
  const errno = /^(E[A-Z]+|UND_ERR_[A-Z_]+)\b/.exec(detail ?? '')?.[1];
  if (errno) return `${code} ${errno}`;
  return detail ? `${code} ${detail.replace(/\d{4,}/g, '#').slice(0, 60)}` : code;
}

export function simAgent(kind: ClientKind, k: BenchAgentKey, kp: KeyPair, ctx: SimContext, hooks: SimHooks): SimAgent {
  const transport = benchTransport(ctx.hubUrl, ctx.sourceAddress);
  if (kind === 'lean') return { transport, run: (signal) => runLean(k, kp, ctx, transport, hooks, signal) };
  const conn = new Connection({
    identity: { hubUrl: ctx.hubUrl, agentId: k.id, tenant: k.tenant, name: k.name, labels: {}, fingerprint: fingerprint(kp.publicKey), enrolledAt: new Date().toISOString() },
    key: kp,
    transport,
    log: ctx.log,
    reconnect: RECONNECT,
    hello: () => Promise.resolve(ctx.hello),
  });
  conn.on('welcome', () => hooks.welcome());
  conn.on('disconnected', () => hooks.disconnected());
  return { transport, run: (signal) => conn.run(signal) };
}

async function runLean(k: BenchAgentKey, kp: KeyPair, ctx: SimContext, transport: Transport, hooks: SimHooks, signal: AbortSignal): Promise<void> {
  let attempt = 0;
  while (!signal.aborted) {
    let welcomed = false;
    try {
      welcomed = await leanAttempt(k, kp, ctx, transport, hooks, signal);
    } catch (err) {
      const e = asFerryError(err, 'FERRY_E_HUB_UNREACHABLE');
      hooks.failure(failureKey(e.code, e.detail));
    }
    if (signal.aborted) break;
    attempt = welcomed ? 0 : attempt + 1;
    await sleep(backoffDelay(attempt, RECONNECT.baseMs, RECONNECT.capMs), signal);
  }
}

async function leanAttempt(k: BenchAgentKey, kp: KeyPair, ctx: SimContext, transport: Transport, hooks: SimHooks, signal: AbortSignal): Promise<boolean> {
  const base = new URL(ctx.hubUrl);
  let nonce: string;
  try {
    const res = await transport.request(new URL(CHALLENGE_PATH, base), { signal, timeoutMs: 15_000 });
    const text = res.text;
    if (res.status !== 200) throw refusal(res.status, text);
    nonce = (JSON.parse(text) as { nonce: string }).nonce;
  } catch (err) {
    throw err instanceof FerryError ? err : transportError(err as Error);
  }
  const time = Date.now();
  const signature = signNode(authStatement({ host: hostOf(base), agentId: k.id, nonce, time }), kp);
  const url = new URL(AGENT_PATH, base);
  url.protocol = 'ws:';
  const ws = new WebSocket(url, {
    headers: {
      [AUTH_HEADERS.agent]: k.id,
      [AUTH_HEADERS.nonce]: nonce,
      [AUTH_HEADERS.time]: String(time),
      [AUTH_HEADERS.signature]: Buffer.from(signature).toString('base64'),
    },
    agent: transport.wsAgent,
    perMessageDeflate: false,
    maxPayload: MAX_PAYLOAD,
    handshakeTimeout: 15_000,
    followRedirects: false,
  });
  const onAbort = () => ws.close(1001, 'agent stopping');
  signal.addEventListener('abort', onAbort, { once: true });
  return await new Promise<boolean>((resolve, reject) => {
    let welcomed = false;
    let failure: FerryError | undefined;
    ws.on('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => {
        failure = refusal(res.statusCode ?? 0, text);
        ws.terminate();
      });
      res.on('error', () => ws.terminate());
    });
    ws.on('open', () => ws.send(encode(ctx.hello)));
    ws.on('message', (data) => {
      let msg;
      try {
        msg = decodeHubMessage(data as Buffer);
      } catch {
        return; // a frame this client does not know: not what is measured
      }
      if (msg.type === 'welcome' && !welcomed) {
        welcomed = true;
        hooks.welcome();
      }
    });
    ws.on('error', (err) => (failure ??= transportError(err)));
    ws.on('close', () => {
      signal.removeEventListener('abort', onAbort);
      if (welcomed) hooks.disconnected();
      if (failure && !welcomed) reject(failure);
      else resolve(welcomed);
    });
  });
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

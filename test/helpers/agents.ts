// Hand-driven agents for gateway tests: real keys, real HTTP enrollment, real
// WebSocket handshakes, with every part of the proof open to tampering.
import { request } from 'undici';
import WebSocket from 'ws';
import { AGENT_PATH, AUTH_HEADERS, CHALLENGE_PATH, ENROLL_PATH, authStatement, enrollStatement, hostOf } from '../../shared/auth.js';
import { encodePublicKey, generateKeyPair, sign, type KeyPair } from '../../shared/keys.js';
import type { TestHub } from './hub.js';

export interface EnrolledAgent {
  id: string;
  tenant: string;
  kp: KeyPair;
}

export async function ensureTenant(th: TestHub, tenant: string): Promise<void> {
  const r = await th.api('POST', '/v1/tenants', { name: tenant });
  if (r.status !== 201 && r.status !== 409) throw new Error(`tenant create: ${r.status} ${JSON.stringify(r.body)}`);
}

export async function enrollmentToken(th: TestHub, tenant: string, ttlSeconds = 3600): Promise<string> {
  await ensureTenant(th, tenant);
  const r = await th.api('POST', `/v1/tenants/${tenant}/enrollment-tokens`, { ttlSeconds });
  if (r.status !== 201) throw new Error(`token create: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.token as string;
}

export async function postEnroll(hubUrl: string, body: Record<string, unknown>): Promise<{ status: number; body: any }> {
  const res = await request(new URL(ENROLL_PATH, hubUrl), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.statusCode, body: await res.body.json() };
}

export function enrollBody(hubUrl: string, token: string, kp: KeyPair, name = 'test-agent', labels: Record<string, string> = {}) {
  const publicKey = encodePublicKey(kp.publicKey);
  const proof = Buffer.from(sign(enrollStatement({ host: hostOf(hubUrl), token, publicKey }), kp.secretKey)).toString('base64');
  return { token, publicKey, name, labels, proof };
}

export async function enrollAgent(th: TestHub, tenant = 'bank-a', name = 'test-agent'): Promise<EnrolledAgent> {
  const token = await enrollmentToken(th, tenant);
  const kp = generateKeyPair();
  const r = await postEnroll(th.url, enrollBody(th.url, token, kp, name));
  if (r.status !== 201) throw new Error(`enroll: ${r.status} ${JSON.stringify(r.body)}`);
  return { id: r.body.agentId, tenant, kp };
}

export async function challenge(hubUrl: string): Promise<string> {
  const res = await request(new URL(CHALLENGE_PATH, hubUrl));
  return ((await res.body.json()) as { nonce: string }).nonce;
}

export interface HandshakeTamper {
  nonce?: string;
  time?: number;
  host?: string;
  agentId?: string;
  key?: KeyPair;
  signature?: string;
  omit?: (keyof typeof AUTH_HEADERS)[];
}

export type Attempt = { ok: true; ws: WebSocket; box: Inbox; headers: Record<string, string> } | { ok: false; status: number; body: any; closedAfter: boolean };

/** Signs a handshake (optionally tampered with) and tries to connect. */
export async function connect(hubUrl: string, agent: EnrolledAgent, tamper: HandshakeTamper = {}, wsOpts: WebSocket.ClientOptions = {}): Promise<Attempt> {
  const nonce = tamper.nonce ?? (await challenge(hubUrl));
  const time = tamper.time ?? Date.now();
  const host = tamper.host ?? hostOf(hubUrl);
  const agentId = tamper.agentId ?? agent.id;
  const sig = tamper.signature ?? Buffer.from(sign(authStatement({ host, agentId, nonce, time }), (tamper.key ?? agent.kp).secretKey)).toString('base64');
  const headers: Record<string, string> = {
    [AUTH_HEADERS.agent]: agentId,
    [AUTH_HEADERS.nonce]: nonce,
    [AUTH_HEADERS.time]: String(time),
    [AUTH_HEADERS.signature]: sig,
  };
  for (const k of tamper.omit ?? []) delete headers[AUTH_HEADERS[k]];
  return connectWithHeaders(hubUrl, headers, wsOpts);
}

export function connectWithHeaders(hubUrl: string, headers: Record<string, string>, wsOpts: WebSocket.ClientOptions = {}): Promise<Attempt> {
  const url = new URL(AGENT_PATH, hubUrl);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(url, { perMessageDeflate: false, ...wsOpts, headers: { ...headers, ...(wsOpts.headers ?? {}) } });
  // Attach the inbox before 'open': the welcome can arrive in the same chunk.
  const box = inbox(ws);
  return new Promise((resolve, reject) => {
    ws.on('open', () => resolve({ ok: true, ws, box, headers }));
    ws.on('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c));
      res.on('end', () => {
        // the hub closes the socket after a refusal: wait up to 1 s to see it
        const done = (closedAfter: boolean) => resolve({ ok: false, status: res.statusCode ?? 0, body: text ? JSON.parse(text) : null, closedAfter });
        if (res.socket.destroyed) return done(true);
        const timer = setTimeout(() => done(false), 1000);
        res.socket.once('close', () => (clearTimeout(timer), done(true)));
      });
    });
    ws.on('error', (err) => reject(err));
  });
}

export interface Inbox {
  messages: any[];
  next(type?: string, timeoutMs?: number): Promise<any>;
}

/** Collects decoded messages from a socket. */
export function inbox(ws: WebSocket): Inbox {
  const messages: any[] = [];
  const waiters: { type?: string; resolve: (m: any) => void }[] = [];
  ws.on('message', (d) => {
    const m = JSON.parse(d.toString());
    messages.push(m);
    const i = waiters.findIndex((w) => !w.type || w.type === m.type);
    if (i >= 0) waiters.splice(i, 1)[0]!.resolve(m);
  });
  let read = 0;
  return {
    messages,
    next(type, timeoutMs = 5000) {
      const found = messages.slice(read).find((m) => !type || m.type === type);
      if (found) {
        read = messages.indexOf(found) + 1;
        return Promise.resolve(found);
      }
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`no ${type ?? 'message'} within ${timeoutMs} ms`)), timeoutMs);
        waiters.push({ type, resolve: (m) => (clearTimeout(t), (read = messages.length), resolve(m)) });
      });
    },
  };
}

export function closed(ws: WebSocket): Promise<{ code: number; reason: string }> {
  if (ws.readyState === WebSocket.CLOSED) return Promise.resolve({ code: -1, reason: 'already closed' });
  return new Promise((r) => ws.once('close', (code, reason) => r({ code, reason: reason.toString() })));
}

export function helloFrame(): string {
  return JSON.stringify({
    type: 'hello',
    protocol: 1,
    agentVersion: 'test',
    host: { hostname: 'test-host', platform: 'linux', release: '6.1', arch: 'x64', cpus: 2, memoryBytes: 1 << 30 },
    engine: { error: { code: 'FERRY_E_ENGINE_UNREACHABLE', message: 'no engine in this test' } },
  });
}

// The agent's one outbound connection to the hub. Each attempt fetches a
// fresh hub nonce, signs it (bound to hub host, agent id and time) and opens
// the WebSocket with the proof in the upgrade headers. Lost connections are
// retried with exponential backoff and full jitter; a revoked or unknown agent
// stops for good. A hub that sends malformed or oversized frames is dropped
// (after MAX_VIOLATIONS in VIOLATION_WINDOW_MS, as the hub drops agents) and
// the next attempt backs off as after a failure. The agent never listens on
// any socket.
import { backoffDelay, sleep } from '../shared/sleep.js';
export { backoffDelay } from '../shared/sleep.js';
import { EventEmitter } from 'node:events';
import { hostname, platform, release, arch, cpus, totalmem } from 'node:os';
import WebSocket from 'ws';
import { AGENT_PATH, AUTH_HEADERS, CHALLENGE_PATH, authStatement, hostOf } from '../shared/auth.js';
import { FerryError, asFerryError, isErrorCode } from '../shared/errors.js';
import { sign, type KeyPair } from '../shared/keys.js';
import type { Logger } from '../shared/logger.js';
import { CLOSE, MAX_PAYLOAD, PROTOCOL_VERSION, decodeHubMessage, encode, type AgentMessage, type Hello, type HostFacts, type HubMessage } from '../shared/protocol.js';
import { VERSION } from '../shared/version.js';
import type { Engine } from './engine/engine.js';
import { proxyRefusal, type Transport } from './proxy.js';
import type { Identity } from './state.js';

/** Errors after which retrying cannot help: the agent stops. */
const FATAL = new Set(['FERRY_E_AGENT_REVOKED', 'FERRY_E_AGENT_UNKNOWN']);
const HIGH_WATER = 4 * 1024 * 1024;
const DEFAULT_HEARTBEAT_MS = 15_000;
/** Bad frames tolerated from the hub within VIOLATION_WINDOW_MS; the one that reaches it drops the connection. */
export const MAX_VIOLATIONS = 10;
export const VIOLATION_WINDOW_MS = 60_000;

/** Protocol violations in a sliding window of time. Pure: time is an argument. */
export class ViolationWindow {
  private times: number[] = [];

  constructor(
    private readonly max = MAX_VIOLATIONS,
    private readonly windowMs = VIOLATION_WINDOW_MS,
  ) {}

  /** Records one at `now`; true when the limit is reached. */
  add(now: number): boolean {
    this.times = this.times.filter((t) => now - t < this.windowMs && t <= now);
    this.times.push(now);
    return this.times.length >= this.max;
  }

  get count(): number {
    return this.times.length;
  }
}

/** A frame the ws library refused (too large, not a valid frame) as a catalogue error; null for other socket errors. */
export function frameError(err: Error & { code?: string }): FerryError | null {
  if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') return new FerryError('FERRY_E_PROTOCOL_TOO_LARGE', `the hub sent a frame over the ${MAX_PAYLOAD}-byte limit (${err.message})`);
  if (err.code?.startsWith('WS_ERR_')) return new FerryError('FERRY_E_PROTOCOL_MALFORMED', `the hub sent an invalid WebSocket frame (${err.code}: ${err.message})`);
  return null;
}

export function hostFacts(): HostFacts {
  return { hostname: hostname().slice(0, 255), platform: platform(), release: release().slice(0, 128), arch: arch(), cpus: cpus().length, memoryBytes: totalmem() };
}

export async function buildHello(engine: Engine, witnessed: Hello['witnessed'] = null): Promise<Hello> {
  let facts: Hello['engine'];
  try {
    facts = await engine.info();
  } catch (err) {
    const e = asFerryError(err, 'FERRY_E_ENGINE_UNREACHABLE');
    facts = { error: { code: e.code, message: e.message.slice(0, 2048), hint: e.hint } };
  }
  return { type: 'hello', protocol: PROTOCOL_VERSION, agentVersion: VERSION, host: hostFacts(), engine: facts, witnessed };
}

export interface ConnectionOptions {
  identity: Identity;
  key: KeyPair;
  transport: Transport;
  log: Logger;
  reconnect: { baseMs: number; capMs: number };
  hello: () => Promise<Hello>;
  random?: () => number;
  now?: () => number;
}

/** Emits 'welcome' (Welcome), 'message' (HubMessage), 'disconnected' ({code, reason}), 'failed' (FerryError: an attempt that did not connect). */
export class Connection extends EventEmitter {
  private ws: WebSocket | undefined;
  private readonly now: () => number;
  private hubOffset: number | null = null;

  constructor(private readonly opts: ConnectionOptions) {
    super();
    this.now = opts.now ?? Date.now;
  }

  /** The hub's clock minus this host's, measured at its last welcome (null before one). */
  get hubClockOffsetMs(): number | null {
    return this.hubOffset;
  }

  get connected(): boolean {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  /** Bytes queued on the socket, not yet sent (streams wait while it is high; agent/operations/streams.ts). */
  get bufferedAmount(): number {
    return this.ws?.bufferedAmount ?? 0;
  }

  send(msg: AgentMessage): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || ws.bufferedAmount > HIGH_WATER) return false;
    ws.send(encode(msg));
    return true;
  }

  /** Connects and stays connected until `signal` aborts (resolves) or a fatal error (rejects). */
  async run(signal: AbortSignal): Promise<void> {
    const { log, reconnect } = this.opts;
    let attempt = 0;
    while (!signal.aborted) {
      let welcomed = false;
      let dropped: FerryError | null = null;
      try {
        ({ welcomed, dropped } = await this.attempt(signal));
      } catch (err) {
        const e = asFerryError(err, 'FERRY_E_HUB_UNREACHABLE');
        if (FATAL.has(e.code)) {
          log.error({ code: e.code, detail: e.detail }, 'hub refused this agent for good; stopping');
          throw e;
        }
        log.warn({ code: e.code, detail: e.detail, attempt }, 'connection attempt failed');
        this.emit('failed', e);
      }
      if (signal.aborted) break;
      // A hub we dropped for bad frames is retried as after a failure: backing off, not at once.
      attempt = welcomed && !dropped ? 0 : attempt + 1;
      const delay = backoffDelay(attempt, reconnect.baseMs, reconnect.capMs, this.opts.random);
      log.info({ delayMs: delay, attempt }, 'reconnecting after delay');
      await sleep(delay, signal);
    }
  }

  /** One connection attempt; resolves when the socket closes: whether the hub welcomed us, and why we dropped it, if we did. */
  private async attempt(signal: AbortSignal): Promise<{ welcomed: boolean; dropped: FerryError | null }> {
    const { identity, key, transport, log } = this.opts;
    const base = new URL(identity.hubUrl);
    const nonce = await fetchChallenge(base, transport, signal);
    const time = this.now();
    const statement = authStatement({ host: hostOf(base), agentId: identity.agentId, nonce, time });
    const wsUrl = new URL(AGENT_PATH, base);
    wsUrl.protocol = base.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(wsUrl, {
      headers: {
        [AUTH_HEADERS.agent]: identity.agentId,
        [AUTH_HEADERS.nonce]: nonce,
        [AUTH_HEADERS.time]: String(time),
        [AUTH_HEADERS.signature]: Buffer.from(sign(statement, key.secretKey)).toString('base64'),
      },
      agent: transport.wsAgent,
      ca: transport.ca,
      perMessageDeflate: false,
      maxPayload: MAX_PAYLOAD,
      handshakeTimeout: 15_000,
      followRedirects: false,
    });
    this.ws = ws;
    let welcomed = false;
    let watchdog: NodeJS.Timeout | undefined;
    const arm = (ms: number) => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => {
        log.warn('no heartbeat from the hub; dropping the connection');
        ws.terminate();
      }, ms);
    };
    let heartbeatMs = DEFAULT_HEARTBEAT_MS;
    const onAbort = () => ws.close(1001, 'agent stopping');
    signal.addEventListener('abort', onAbort, { once: true });

    const violations = new ViolationWindow();
    let dropped: FerryError | null = null;
    const drop = (e: FerryError, msg: string) => {
      if (dropped) return;
      dropped = e;
      log.error({ code: e.code, detail: e.detail }, msg);
      ws.close(CLOSE.protocolError, e.code);
      setTimeout(() => ws.terminate(), 1000).unref();
    };

    return await new Promise<{ welcomed: boolean; dropped: FerryError | null }>((resolve, reject) => {
      let failure: FerryError | undefined;
      ws.on('unexpected-response', (_req, res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.length < 64 && chunks.push(c));
        res.on('end', () => {
          failure = refusal(res.statusCode ?? 0, Buffer.concat(chunks).toString('utf8'));
          ws.terminate();
        });
        res.on('error', () => ws.terminate());
      });
      ws.on('open', () => {
        log.info({ hub: identity.hubUrl, proxy: transport.proxy?.host ?? null }, 'connected to hub');
        arm(heartbeatMs * 2.5);
        void this.opts.hello().then((hello) => this.send(hello));
      });
      ws.on('ping', () => arm(heartbeatMs * 2.5));
      ws.on('message', (data, isBinary) => {
        if (dropped) return; // being closed for bad frames: nothing more is read
        let msg: HubMessage;
        try {
          msg = decodeHubMessage(isBinary ? null : Buffer.isBuffer(data) ? data : Buffer.from(data as ArrayBuffer));
        } catch (err) {
          const e = asFerryError(err, 'FERRY_E_PROTOCOL_INVALID');
          if (violations.add(this.now())) {
            return drop(e, `the hub sent ${violations.count} bad messages within ${VIOLATION_WINDOW_MS / 1000} s; dropping the connection`);
          }
          log.warn({ code: e.code, detail: e.detail, violations: violations.count }, 'bad message from hub');
          this.send({ type: 'error', code: e.code, message: e.message.slice(0, 2048) });
          return;
        }
        if (msg.type === 'welcome') {
          welcomed = true;
          heartbeatMs = msg.heartbeatMs;
          arm(heartbeatMs * 2.5);
          this.hubOffset = msg.serverTime - this.now();
          log.info({ skewMs: this.hubOffset }, 'hub welcomed agent');
          this.emit('welcome', msg);
        } else if (msg.type === 'error') {
          log.warn({ code: msg.code, message: msg.message }, 'hub reported an error');
        }
        this.emit('message', msg);
      });
      ws.on('error', (err) => {
        // ws closes the socket itself after a frame it cannot take (1009 too large, 1002 invalid)
        const bad = frameError(err);
        if (bad) {
          dropped ??= bad;
          log.error({ code: bad.code, detail: bad.detail }, 'the hub sent a frame this agent refuses; connection closed');
          return;
        }
        failure ??= transportError(err, transport.proxy);
      });
      ws.on('close', (code, reasonBuf) => {
        clearTimeout(watchdog);
        signal.removeEventListener('abort', onAbort);
        this.ws = undefined;
        const reason = reasonBuf.toString();
        if (welcomed) {
          log.warn({ closeCode: code, reason, ...(dropped ? { code: dropped.code } : {}) }, 'disconnected from hub');
          this.emit('disconnected', { code, reason });
        }
        if (code === CLOSE.revoked) return reject(new FerryError('FERRY_E_AGENT_REVOKED', reason));
        if (failure && !welcomed && !dropped) return reject(failure);
        resolve({ welcomed, dropped });
      });
    });
  }
}

async function fetchChallenge(base: URL, transport: Transport, signal: AbortSignal): Promise<string> {
  let res;
  try {
    res = await transport.request(new URL(CHALLENGE_PATH, base), { signal, timeoutMs: 15_000 });
  } catch (err) {
    throw transportError(err as Error, transport.proxy);
  }
  const text = res.text;
  if (res.status !== 200) throw proxyRefusal(res.status, transport.proxy) ?? refusal(res.status, text);
  const body = JSON.parse(text) as { nonce?: unknown };
  if (typeof body.nonce !== 'string') throw new FerryError('FERRY_E_PROTOCOL_INVALID', 'challenge without nonce');
  return body.nonce;
}

/** Turns a hub's HTTP refusal into the FerryError it carries. */
export function refusal(status: number, text: string): FerryError {
  try {
    const body = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
    if (isErrorCode(body.error?.code)) return new FerryError(body.error.code, typeof body.error.message === 'string' ? body.error.message : undefined);
  } catch {
    // not one of ours
  }
  return new FerryError('FERRY_E_HUB_UNREACHABLE', `HTTP ${status} from the hub URL (a proxy or another server?)`);
}

/** Maps socket and TLS errors onto catalogue codes. */
export function transportError(err: Error & { code?: string; cause?: unknown }, proxy?: URL | null): FerryError {
  if (err instanceof FerryError) return err;
  const code = err.code ?? (err.cause as { code?: string } | undefined)?.code ?? '';
  const via = proxy ? ` (via proxy ${proxy.host})` : '';
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS|HOSTNAME/i.test(code) || /certificate/i.test(err.message)) {
    return new FerryError('FERRY_E_HUB_TLS', `${code || err.message}${via}`, { cause: err });
  }
  return new FerryError('FERRY_E_HUB_UNREACHABLE', `${code ? code + ': ' : ''}${err.message}${via}`, { cause: err });
}

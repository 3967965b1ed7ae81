// The hub API client: base URL, bearer token, JSON both ways, and every
// failure mapped onto a catalogue code. The hub answers errors as
// `{error:{code,message,hint}}`; those come back as the same FerryError, so
// the CLI prints the hub's words and exits with the code's exit status.
// `follow` reads the hub's event stream (Server-Sent Events), reconnecting
// with Last-Event-ID so a dropped connection loses and repeats nothing.
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import { Agent, request } from 'undici';
import { ERRORS, FerryError, isErrorCode, type ErrorCode } from '../shared/errors.js';
import { SSE_CONTENT_TYPE, SseDecoder, type SseMessage } from '../shared/events.js';
import { sleep } from '../shared/sleep.js';
import type { HubTarget } from './contexts.js';

const TIMEOUT_MS = 30_000;
/** The hub sends a heartbeat every 15 s: a stream silent for this long is dead. */
const STREAM_IDLE_MS = 45_000;
const RECONNECT_MAX_MS = 5_000;

export interface FollowOptions {
  /** Resume after this event id (as Last-Event-ID). */
  lastEventId?: string;
  /** Stops following (the generator returns). */
  signal?: AbortSignal;
  /** Give up when the hub cannot be reached for this long (default 60 s). */
  giveUpMs?: number;
  /** Told each time the stream is lost and about to be reopened. */
  onReconnect?: (cause: FerryError | null) => void;
}

export class HubClient {
  readonly hub: string;
  readonly #token: string;
  readonly #dispatcher: Agent;

  constructor(target: HubTarget) {
    this.hub = target.hub;
    this.#token = target.token;
    // Without a CA file Node's default trust applies, which already includes
    // NODE_EXTRA_CA_CERTS; a given `ca` replaces the defaults, so add the roots back.
    const ca = target.caFile ? [...rootCertificates, readCa(target.caFile)] : undefined;
    this.#dispatcher = new Agent({ connect: { ...(ca ? { ca } : {}), timeout: 10_000 } });
  }

  get<T>(path: string, query: Record<string, string | undefined> = {}): Promise<T> {
    return this.#call<T>('GET', path, undefined, query);
  }

  /** `timeoutMs`: how long to wait for the answer (default 30 s); a call that waits on the hub's side needs more. */
  post<T>(path: string, body: unknown = {}, opts: { timeoutMs?: number } = {}): Promise<T> {
    return this.#call<T>('POST', path, body, {}, false, opts.timeoutMs);
  }

  delete<T>(path: string): Promise<T> {
    return this.#call<T>('DELETE', path, undefined, {});
  }

  /** POSTs bytes (an agent bundle archive) with their content type; the answer is JSON. */
  postBytes<T>(path: string, bytes: Buffer, contentType: string, query: Record<string, string | undefined> = {}, opts: { timeoutMs?: number } = {}): Promise<T> {
    return this.#call<T>('POST', path, { bytes, contentType }, query, false, opts.timeoutMs);
  }

  /** A non-JSON answer (the audit export's NDJSON), as text. */
  getText(path: string): Promise<string> {
    return this.#call<string>('GET', path, undefined, {}, true);
  }

  close(): Promise<void> {
    return this.#dispatcher.close();
  }

  /**
   * A streamed answer of JSON lines (remote operations' logs, exec, stats
   * --watch), yielded as they come; ends when the hub ends it or `signal`
   * aborts. An error answer throws before the first line.
   */
  async *lines(method: 'GET' | 'POST', path: string, opts: { query?: Record<string, string | undefined>; body?: unknown; signal?: AbortSignal } = {}): AsyncGenerator<unknown> {
    const url = new URL(this.hub + path);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, v);
    let res;
    try {
      res = await request(url, {
        method,
        dispatcher: this.#dispatcher,
        ...(opts.signal ? { signal: opts.signal } : {}),
        headers: { authorization: `Bearer ${this.#token}`, accept: 'application/x-ndjson', 'x-ferry-surface': 'cli', ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}) },
        body: opts.body !== undefined ? JSON.stringify(opts.body) : undefined,
        headersTimeout: TIMEOUT_MS,
        bodyTimeout: 0, // a followed log may be quiet for long; the hub ends it
      });
    } catch (err) {
      if (opts.signal?.aborted) return;
      throw transportError(err, this.hub);
    }
    if (res.statusCode >= 400) throw hubError(res.statusCode, await res.body.text(), this.hub);
    const text = new TextDecoder();
    let buf = '';
    try {
      for await (const chunk of res.body) {
        buf += text.decode(chunk as Buffer, { stream: true });
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line) yield JSON.parse(line) as unknown;
        }
      }
    } catch (err) {
      if (opts.signal?.aborted) return;
      throw transportError(err, this.hub);
    }
  }

  /**
   * Follows a Server-Sent Events endpoint: yields every message, and when the
   * connection drops (or the hub ends it) reconnects with the last event id.
   * An error answer other than 5xx (bad filter, auth, not found) ends it with
   * that error; so does a hub unreachable for `giveUpMs`.
   */
  async *follow(path: string, query: Record<string, string | undefined>, opts: FollowOptions = {}): AsyncGenerator<SseMessage> {
    const url = new URL(this.hub + path);
    for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, v);
    const signal = opts.signal ?? new AbortController().signal;
    let lastId = opts.lastEventId ?? '';
    let delay = 250;
    let failingSince: number | null = null;
    while (!signal.aborted) {
      let cause: FerryError | null = null;
      try {
        const res = await request(url, {
          method: 'GET',
          dispatcher: this.#dispatcher,
          signal,
          headers: { authorization: `Bearer ${this.#token}`, accept: SSE_CONTENT_TYPE, 'x-ferry-surface': 'cli', ...(lastId ? { 'last-event-id': lastId } : {}) },
          headersTimeout: TIMEOUT_MS,
          bodyTimeout: STREAM_IDLE_MS,
        });
        if (res.statusCode >= 400) {
          const e = hubError(res.statusCode, await res.body.text(), this.hub);
          if (res.statusCode < 500) throw e;
          cause = e;
        } else if (!String(res.headers['content-type'] ?? '').startsWith(SSE_CONTENT_TYPE)) {
          await res.body.dump();
          throw new FerryError('FERRY_E_HUB_UNREACHABLE', `${this.hub}${path} is not an event stream (is it a Ferry hub?)`);
        } else {
          const decoder = new SseDecoder();
          const text = new TextDecoder();
          for await (const chunk of res.body) {
            for (const m of decoder.push(text.decode(chunk as Buffer, { stream: true }))) {
              lastId = m.lastEventId;
              if (m.event === 'ready') {
                failingSince = null;
                delay = decoder.retry ?? 250;
              }
              yield m;
            }
          }
        }
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof FerryError) throw err; // the hub's own answer: retrying will not change it
        cause = transportError(err, this.hub);
        if (cause.code === 'FERRY_E_HUB_TLS') throw cause;
      }
      if (signal.aborted) return;
      failingSince ??= Date.now();
      if (Date.now() - failingSince > (opts.giveUpMs ?? 60_000)) throw cause ?? new FerryError('FERRY_E_HUB_UNREACHABLE', `${this.hub}: the event stream keeps closing`);
      opts.onReconnect?.(cause);
      await sleep(delay, signal);
      delay = Math.min(delay * 2, RECONNECT_MAX_MS);
    }
  }

  async #call<T>(method: 'GET' | 'POST' | 'DELETE', path: string, body: unknown, query: Record<string, string | undefined>, raw = false, timeoutMs = TIMEOUT_MS): Promise<T> {
    const url = new URL(this.hub + path);
    for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, v);
    let status: number;
    let text: string;
    try {
      const res = await request(url, {
        method,
        dispatcher: this.#dispatcher,
        headers: {
          authorization: `Bearer ${this.#token}`,
          accept: 'application/json',
          'x-ferry-surface': 'cli',
          ...(body !== undefined ? { 'content-type': isBytes(body) ? body.contentType : 'application/json' } : {}),
        },
        body: body === undefined ? undefined : isBytes(body) ? body.bytes : JSON.stringify(body),
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
      status = res.statusCode;
      text = await res.body.text();
    } catch (err) {
      throw transportError(err, this.hub);
    }
    if (status >= 400) throw hubError(status, text, this.hub);
    if (raw) return text as T;
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new FerryError('FERRY_E_HUB_UNREACHABLE', `${this.hub} answered ${method} ${path} with something other than JSON (is it a Ferry hub?)`);
    }
  }
}

const isBytes = (b: unknown): b is { bytes: Buffer; contentType: string } => typeof b === 'object' && b !== null && Buffer.isBuffer((b as { bytes?: unknown }).bytes);

/** Runs `fn` with a client and closes its connections afterwards, so the process can exit. */
export async function withHub<T>(target: HubTarget, fn: (hub: HubClient) => Promise<T>): Promise<T> {
  const hub = new HubClient(target);
  try {
    return await fn(hub);
  } finally {
    await hub.close();
  }
}

function readCa(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new FerryError('FERRY_E_CONFIG_INVALID', `CA file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** Socket, DNS and TLS failures: the hub was never heard from. */
export function transportError(err: unknown, hub: string): FerryError {
  if (err instanceof FerryError) return err;
  const e = err as Error & { code?: string; cause?: { code?: string }; errors?: { code?: string }[] };
  const code = e.code ?? e.cause?.code ?? e.errors?.[0]?.code ?? '';
  const what = code || e.message;
  // An https URL to a plain-HTTP server: the TLS hello is answered with HTTP, which OpenSSL reads as a bad record.
  if (hub.startsWith('https:') && (/WRONG_VERSION_NUMBER|PACKET_LENGTH_TOO_LONG|HTTP_REQUEST/i.test(code) || /wrong version number|packet length too long|http request/i.test(e.message))) {
    return new FerryError('FERRY_E_HUB_NOT_TLS', `${hub}: the server answered in plain HTTP (${what}); use ${hub.replace(/^https:/, 'http:')}`, { cause: err });
  }
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS|HOSTNAME|ERR_SSL/i.test(code) || /certificate/i.test(e.message)) {
    return new FerryError('FERRY_E_HUB_TLS', `${hub}: ${what}`, { cause: err });
  }
  return new FerryError('FERRY_E_HUB_UNREACHABLE', `${hub}: ${what}`, { cause: err });
}

/** An error answer. A hub's own code is kept with its message; anything else is named by status. */
export function hubError(status: number, text: string, hub: string): FerryError {
  let error: { code?: unknown; message?: unknown } | undefined;
  try {
    error = (JSON.parse(text) as { error?: typeof error }).error;
  } catch {
    // not JSON: a proxy, a load balancer or another server answered
  }
  if (!error || typeof error.code !== 'string') {
    return new FerryError('FERRY_E_HUB_UNREACHABLE', `HTTP ${status} from ${hub} without a Ferry error (wrong URL, or a proxy in between?)`);
  }
  const message = typeof error.message === 'string' ? error.message : '';
  if (isErrorCode(error.code)) return new FerryError(error.code, detailOf(error.code, message));
  // A newer hub may use a code this CLI does not know yet: keep it in the text.
  return new FerryError(codeForStatus(status), `${error.code}: ${message}`);
}

/** The hub sends `catalogue message: detail`; FerryError adds the catalogue part itself. */
function detailOf(code: ErrorCode, message: string): string | undefined {
  const base = ERRORS[code].message;
  if (message === '' || message === base) return undefined;
  return message.startsWith(`${base}: `) ? message.slice(base.length + 2) : message;
}

function codeForStatus(status: number): ErrorCode {
  switch (status) {
    case 400:
      return 'FERRY_E_VALIDATION';
    case 401:
      return 'FERRY_E_AUTH_INVALID';
    case 403:
      return 'FERRY_E_FORBIDDEN';
    case 404:
      return 'FERRY_E_NOT_FOUND';
    case 409:
      return 'FERRY_E_CONFLICT';
    case 503:
      return 'FERRY_E_UNAVAILABLE';
    default:
      return 'FERRY_E_INTERNAL';
  }
}

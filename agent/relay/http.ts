// The relay's HTTP: Node's own http/https clients (the agent loads no undici,
// see agent/proxy.ts), one keep-alive agent per endpoint, through the
// endpoint's proxy (HTTP CONNECT) and with its CA. Bodies are streamed both
// ways; a connection idle longer than the timeout is cut. Socket and TLS
// failures become FERRY_E_REGISTRY_UNREACHABLE, marked retryable.
import { readFileSync } from 'node:fs';
import { Agent as HttpAgent, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { rootCertificates } from 'node:tls';
import type { Readable } from 'node:stream';
import { HttpsProxyAgent } from 'https-proxy-agent';
import { FerryError } from '../../shared/errors.js';
import { proxyFor, type ProxySettings } from '../proxy.js';

export interface EndpointOptions {
  /** Proxy for this endpoint (the hub's settings for the hub, the bank registry's own for it). */
  proxy?: ProxySettings;
  /** Extra CA file (PEM) trusted besides the system roots and NODE_EXTRA_CA_CERTS. */
  caFile?: string;
  /** Idle timeout per request (connect, headers, and between body bytes), ms. Default 30 s. */
  idleTimeoutMs?: number;
  /** Sockets per endpoint. Default 8. */
  maxSockets?: number;
}

export interface HttpRequest {
  method: 'GET' | 'HEAD' | 'PUT' | 'POST' | 'PATCH' | 'DELETE';
  url: URL;
  headers?: Record<string, string>;
  /** A buffer, or a stream with a known content-length header. */
  body?: Buffer | Readable;
  signal?: AbortSignal;
}

/** A retryable failure: the operation may succeed if repeated (5xx, 429, a lost connection). */
export class Retryable extends Error {
  constructor(readonly error: FerryError, readonly retryAfterMs?: number) {
    super(error.message);
  }
}

export interface Endpoint {
  send(req: HttpRequest): Promise<IncomingMessage>;
  close(): void;
}

export function endpoint(base: URL, opts: EndpointOptions = {}): Endpoint {
  const secure = base.protocol === 'https:';
  const ca = opts.caFile ? [...rootCertificates, readCa(opts.caFile)] : undefined;
  const proxy = opts.proxy ? proxyFor(base, opts.proxy) : null;
  const common = { keepAlive: true, maxSockets: opts.maxSockets ?? 8, ...(ca ? { ca } : {}) };
  const agent = proxy ? (new HttpsProxyAgent(proxy.href, common) as unknown as HttpAgent) : secure ? new HttpsAgent(common) : new HttpAgent(common);
  const idleMs = opts.idleTimeoutMs ?? 30_000;
  const send = (r: HttpRequest) =>
    new Promise<IncomingMessage>((resolve, reject) => {
      const fn = r.url.protocol === 'https:' ? httpsRequest : httpRequest;
      const req = fn(r.url, { method: r.method, headers: { 'user-agent': 'ferry-agent', ...r.headers }, agent, ...(r.signal ? { signal: r.signal } : {}), ...(ca ? { ca } : {}) }, resolve);
      // The request's timeout is the socket's idle timeout, through the response body too.
      req.setTimeout(idleMs, () => req.destroy(Object.assign(new Error(`no answer from ${r.url.host} within ${idleMs} ms`), { code: 'ETIMEDOUT' })));
      req.on('error', (err: Error & { code?: string }) => reject(r.signal?.aborted ? r.signal.reason : unreachable(err, r.url, proxy)));
      if (!r.body) req.end();
      else if (Buffer.isBuffer(r.body)) req.end(r.body);
      else {
        r.body.on('error', (err) => req.destroy(err));
        r.body.pipe(req);
      }
    });
  return { send, close: () => agent.destroy() };
}

function readCa(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new FerryError('FERRY_E_CONFIG_INVALID', `ca file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** Socket and TLS errors as a retryable FERRY_E_REGISTRY_UNREACHABLE (certificate errors are not retried). */
export function unreachable(err: Error & { code?: string }, url: URL, proxy: URL | null = null): Error {
  if (err instanceof FerryError || err instanceof Retryable) return err;
  const code = err.code ?? '';
  const via = proxy ? ` via proxy ${proxy.host}` : '';
  const e = new FerryError('FERRY_E_REGISTRY_UNREACHABLE', `${url.host}${via}: ${code ? code + ': ' : ''}${err.message}`, { cause: err });
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|HOSTNAME/i.test(code)) return e;
  return new Retryable(e);
}

/** Reads a whole (small) body; more than `max` bytes is an error. */
export async function readBody(res: IncomingMessage, max = 4 * 1024 * 1024): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of res) {
    size += (c as Buffer).length;
    if (size > max) {
      res.destroy();
      throw new FerryError('FERRY_E_REGISTRY_FAILED', `the registry sent more than ${max} bytes`);
    }
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}

/** Drains and discards a body, so the connection can be reused. */
export async function drain(res: IncomingMessage): Promise<void> {
  res.resume();
  await new Promise<void>((r) => {
    if (res.complete || res.destroyed) return r();
    res.once('end', r);
    res.once('close', r);
    res.once('error', () => r());
  });
}

export function header(h: IncomingHttpHeaders, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

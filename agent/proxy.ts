// Outbound transport for the agent: which proxy (if any) to use for the hub
// URL, and the TLS trust to apply. Corporate networks reach the internet only
// through an HTTP proxy with CONNECT, often with basic auth in the URL; the
// conventional variables are https_proxy / http_proxy / no_proxy (either
// case), and the agent's config overrides them.
//
// Node's own http/https clients carry both the two plain requests (challenge,
// enroll) and the WebSocket, through one proxy agent. The agent used undici
// for the plain requests until its idle RSS was measured: undici's HTTP
// parser is a WebAssembly instance that cost the long-running agent about
// 8 MB for two small requests per connection (bench/README.md, reconcile).
import { readFileSync } from 'node:fs';
import { Agent as HttpAgentClass, request as httpRequest, type Agent as HttpAgent, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { rootCertificates } from 'node:tls';
import { HttpsProxyAgent } from 'https-proxy-agent';
import { FerryError } from '../shared/errors.js';

export interface ProxySettings {
  httpsProxy?: string;
  httpProxy?: string;
  noProxy?: string;
}

/** Proxy settings from the environment, lower case first (curl's convention). */
export function proxyFromEnv(env: NodeJS.ProcessEnv): ProxySettings {
  const pick = (name: string) => env[name] ?? env[name.toUpperCase()] ?? undefined;
  return { httpsProxy: pick('https_proxy'), httpProxy: pick('http_proxy'), noProxy: pick('no_proxy') };
}

/**
 * True when `no_proxy` exempts the host. Entries are comma or space
 * separated: `*`, a host name (matches itself and its subdomains, with or
 * without a leading dot), an IP address, and an optional `:port`.
 */
export function bypassesProxy(target: URL, noProxy: string | undefined): boolean {
  if (!noProxy) return false;
  const host = target.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  const port = target.port || (target.protocol === 'https:' || target.protocol === 'wss:' ? '443' : '80');
  for (const raw of noProxy.split(/[\s,]+/)) {
    const entry = raw.trim().toLowerCase();
    if (!entry) continue;
    if (entry === '*') return true;
    // A bare IPv6 address has several colons and no port; otherwise host[:port].
    const m = (entry.split(':').length > 2 && !entry.startsWith('[') ? [entry, entry] : /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(entry)) as string[] | null;
    if (!m) continue;
    const eHost = m[1]!.replace(/^\[|\]$/g, '').replace(/^\*?\./, '.');
    if (m[2] && m[2] !== port) continue;
    if (eHost.startsWith('.') ? host.endsWith(eHost) || host === eHost.slice(1) : host === eHost || host.endsWith('.' + eHost)) return true;
  }
  return false;
}

/** The proxy URL to use for `target`, or null for a direct connection. */
export function proxyFor(target: URL, s: ProxySettings): URL | null {
  if (bypassesProxy(target, s.noProxy)) return null;
  const secure = target.protocol === 'https:' || target.protocol === 'wss:';
  const raw = secure ? s.httpsProxy : s.httpProxy;
  if (!raw) return null;
  let url: URL;
  try {
    url = new URL(raw.includes('://') ? raw : `http://${raw}`);
  } catch {
    throw new FerryError('FERRY_E_CONFIG_INVALID', `proxy URL ${JSON.stringify(raw)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new FerryError('FERRY_E_CONFIG_INVALID', `proxy ${url.protocol} is not supported; use an http:// or https:// proxy`);
  }
  return url;
}

/** Trust for the hub's certificate: system roots plus NODE_EXTRA_CA_CERTS (Node adds those itself) plus a configured CA. */
export function hubCa(caFile: string | undefined): string[] | undefined {
  if (!caFile) return undefined;
  try {
    return [...rootCertificates, readFileSync(caFile, 'utf8')];
  } catch (err) {
    throw new FerryError('FERRY_E_CONFIG_INVALID', `ca file ${caFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

export interface HubRequest {
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
  /** For the whole exchange, ms. */
  timeoutMs: number;
  signal?: AbortSignal;
}

export interface HubResponse {
  status: number;
  text: string;
}

/** The largest response body read from the hub (or whatever answers in its place). */
const MAX_RESPONSE_BYTES = 1 << 20;

export interface Transport {
  /** One plain HTTP(S) request to the hub, through the proxy if any. Rejects with the socket/TLS error as is. */
  request(url: URL, req: HubRequest): Promise<HubResponse>;
  /** For the WebSocket (ws takes a Node http.Agent); undefined for a direct connection. */
  wsAgent: HttpAgent | undefined;
  ca: string[] | undefined;
  proxy: URL | null;
  close(): Promise<void>;
}

export interface TransportOptions {
  /** Source address for direct connections (benchmarks spread simulated agents over loopback addresses). */
  localAddress?: string;
}

export function createTransport(hubUrl: string, settings: ProxySettings, caFile: string | undefined, opts: TransportOptions = {}): Transport {
  const target = new URL(hubUrl);
  const proxy = proxyFor(target, settings);
  const ca = hubCa(caFile);
  const tls = ca ? { ca } : {};
  // https-proxy-agent tunnels with CONNECT for http and https targets alike and takes basic auth from the URL.
  const wsAgent = proxy
    ? (new HttpsProxyAgent(proxy.href, { ...tls, keepAlive: false, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) }) as unknown as HttpAgent)
    : opts.localAddress
      ? new (target.protocol === 'https:' || target.protocol === 'wss:' ? HttpsAgent : HttpAgentClass)({ ...tls, localAddress: opts.localAddress, keepAlive: false })
      : undefined;
  const request = (url: URL, r: HubRequest) =>
    new Promise<HubResponse>((resolve, reject) => {
      const signal = r.signal ? AbortSignal.any([r.signal, AbortSignal.timeout(r.timeoutMs)]) : AbortSignal.timeout(r.timeoutMs);
      const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
      const req = send(url, { method: r.method ?? 'GET', headers: r.headers, agent: wsAgent, signal, ...(url.protocol === 'https:' ? tls : {}) }, (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_RESPONSE_BYTES) return req.destroy(new FerryError('FERRY_E_PROTOCOL_INVALID', `response from ${url.host} over ${MAX_RESPONSE_BYTES} bytes`));
          chunks.push(c);
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      });
      req.on('error', (err: Error & { code?: string }) => {
        if (err.name === 'AbortError' && !r.signal?.aborted) err = Object.assign(new Error(`no answer from ${url.host} within ${r.timeoutMs} ms`), { code: 'ETIMEDOUT' });
        reject(err);
      });
      req.end(r.body);
    });
  return {
    request,
    wsAgent,
    ca,
    proxy,
    close: async () => {
      wsAgent?.destroy();
    },
  };
}

/** The refusal of a proxy in the hub's place (407 and friends), named as the proxy's. */
export function proxyRefusal(status: number, proxy: URL | null): FerryError | null {
  if (!proxy || status !== 407) return null;
  return new FerryError('FERRY_E_HUB_UNREACHABLE', `proxy ${proxy.host} answered 407 Proxy Authentication Required; check the user and password in the proxy URL`);
}

// Outbound transport for the agent: which proxy (if any) to use for the hub
// URL, and the TLS trust to apply. Corporate networks reach the internet only
// through an HTTP proxy with CONNECT, often with basic auth in the URL; the
// conventional variables are https_proxy / http_proxy / no_proxy (either
// case), and the agent's config overrides them.
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import type { Agent as HttpAgent } from 'node:http';
import { HttpsProxyAgent } from 'https-proxy-agent';
import { Agent as UndiciAgent, ProxyAgent, type Dispatcher } from 'undici';
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

export interface Transport {
  /** For undici requests (challenge, enroll). */
  dispatcher: Dispatcher;
  /** For the WebSocket (ws takes a Node http.Agent). */
  wsAgent: HttpAgent | undefined;
  ca: string[] | undefined;
  proxy: URL | null;
  close(): Promise<void>;
}

export function createTransport(hubUrl: string, settings: ProxySettings, caFile: string | undefined): Transport {
  const target = new URL(hubUrl);
  const proxy = proxyFor(target, settings);
  const ca = hubCa(caFile);
  const tls = ca ? { ca } : {};
  let dispatcher: Dispatcher;
  let wsAgent: HttpAgent | undefined;
  if (proxy) {
    const auth = proxy.username ? `Basic ${Buffer.from(`${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`).toString('base64')}` : undefined;
    const bare = new URL(proxy.origin);
    dispatcher = new ProxyAgent({ uri: bare.href, token: auth, requestTls: tls });
    wsAgent = new HttpsProxyAgent(proxy.href, { ...tls, keepAlive: false }) as unknown as HttpAgent;
  } else {
    dispatcher = new UndiciAgent({ connect: tls });
  }
  return {
    dispatcher,
    wsAgent,
    ca,
    proxy,
    close: async () => {
      await dispatcher.close();
      wsAgent?.destroy();
    },
  };
}

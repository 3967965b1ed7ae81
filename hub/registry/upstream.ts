// The vendor's registries, as the hub reads them for agents: GET and HEAD of
// manifests and blobs by digest, with the hub's own credentials (basic, or
// the Docker token flow), over plain HTTP only for loopback registries.
// Nothing here decides who may have what (origin.ts does).
import { readFileSync } from 'node:fs';
import { Agent, interceptors, request, type Dispatcher } from 'undici';
import { FerryError } from '../../shared/errors.js';
import { MANIFEST_ACCEPT, challengeParams } from '../../shared/oci.js';

export interface RegistryCredentials {
  username: string;
  password: string;
}

export interface UpstreamOptions {
  /** host[:port] -> credentials for the vendor's registries. */
  credentials: ReadonlyMap<string, RegistryCredentials>;
  /** Registries spoken to over plain HTTP (loopback ones always are). */
  insecure: readonly string[];
  timeoutMs: number;
}

export interface UpstreamResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Dispatcher.ResponseData['body'];
}

/**
 * --registry-credentials FILE: a Docker config.json (`{"auths": {"host":
 * {"auth": base64(user:pass)}}}`, as `docker login` writes it) or
 * `{"host": {"username": "...", "password": "..."}}`.
 */
export function loadRegistryCredentials(file: string): Map<string, RegistryCredentials> {
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new FerryError('FERRY_E_CONFIG_INVALID', `--registry-credentials ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const bad = (why: string) => new FerryError('FERRY_E_CONFIG_INVALID', `--registry-credentials ${file}: ${why}`);
  if (!doc || typeof doc !== 'object') throw bad('not a JSON object');
  const auths = (doc as { auths?: unknown }).auths;
  const out = new Map<string, RegistryCredentials>();
  for (const [host, v] of Object.entries((auths && typeof auths === 'object' ? auths : doc) as Record<string, unknown>)) {
    const e = (v ?? {}) as { auth?: unknown; username?: unknown; password?: unknown };
    const key = host.replace(/^https?:\/\//, '').replace(/\/.*$/, '').toLowerCase();
    if (typeof e.auth === 'string') {
      const text = Buffer.from(e.auth, 'base64').toString('utf8');
      const i = text.indexOf(':');
      if (i < 1) throw bad(`${host}: "auth" is not base64 of user:password`);
      out.set(key, { username: text.slice(0, i), password: text.slice(i + 1) });
    } else if (typeof e.username === 'string' && typeof e.password === 'string') {
      out.set(key, { username: e.username, password: e.password });
    } else throw bad(`${host}: give "auth" (base64 of user:password) or "username" and "password"`);
  }
  return out;
}

const isLoopback = (host: string) => /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?$/.test(host);

/** `registry.vendor.com/payments/api` -> { host, path: 'payments/api' } (Docker Hub names get its host and library/). */
export function splitName(name: string): { host: string; path: string } {
  const first = name.split('/')[0]!;
  const hasHost = name.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost');
  if (hasHost) return { host: first, path: name.slice(first.length + 1) };
  return { host: 'registry-1.docker.io', path: name.includes('/') ? name : `library/${name}` };
}

export class Upstream {
  private readonly agent = new Agent({ connections: 64, connect: { timeout: 10_000 } });
  /** Registries on object storage answer blobs with a redirect to it. */
  private readonly dispatcher = this.agent.compose(interceptors.redirect({ maxRedirections: 3 }));
  /** Bearer tokens by host and scope, until they expire. */
  private readonly tokens = new Map<string, { token: string; until: number }>();

  constructor(private readonly o: UpstreamOptions) {}

  private base(host: string): string {
    return `${isLoopback(host) || this.o.insecure.includes(host) ? 'http' : 'https'}://${host}`;
  }

  /** A GET or HEAD of `/v2/<path>/<kind>/<digest>`, following the registry's auth challenge once. */
  async fetch(method: 'GET' | 'HEAD', name: string, kind: 'manifests' | 'blobs', digest: string, range?: string): Promise<UpstreamResponse> {
    const { host, path } = splitName(name);
    const url = `${this.base(host)}/v2/${path}/${kind}/${digest}`;
    const scope = `repository:${path}:pull`;
    const go = async (auth: string | undefined) => {
      try {
        return await request(url, {
          method,
          dispatcher: this.dispatcher,
          headers: { ...(kind === 'manifests' ? { accept: MANIFEST_ACCEPT } : {}), ...(range ? { range } : {}), ...(auth ? { authorization: auth } : {}) },
          headersTimeout: this.o.timeoutMs,
          bodyTimeout: this.o.timeoutMs,
        });
      } catch (err) {
        throw new FerryError('FERRY_E_REGISTRY_UNREACHABLE', `${host}: ${(err as { code?: string }).code ?? (err as Error).message}`, { cause: err });
      }
    };
    const key = `${host}\n${scope}`;
    const cached = this.tokens.get(key);
    let res = await go(cached && cached.until > Date.now() ? `Bearer ${cached.token}` : this.basic(host));
    if (res.statusCode === 401) {
      const challenge = String(res.headers['www-authenticate'] ?? '');
      await res.body.dump();
      const auth = await this.authorise(host, challenge, scope, key);
      res = await go(auth);
    }
    return { status: res.statusCode, headers: res.headers, body: res.body };
  }

  private basic(host: string): string | undefined {
    const c = this.o.credentials.get(host);
    return c ? `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}` : undefined;
  }

  private async authorise(host: string, challenge: string, scope: string, key: string): Promise<string | undefined> {
    if (/^basic/i.test(challenge)) return this.basic(host);
    if (!/^bearer/i.test(challenge)) return undefined;
    const p = challengeParams(challenge);
    if (!p.realm) return undefined;
    const u = new URL(p.realm);
    if (p.service) u.searchParams.set('service', p.service);
    u.searchParams.set('scope', p.scope ?? scope);
    const basic = this.basic(host);
    const res = await request(u, { dispatcher: this.dispatcher, headers: basic ? { authorization: basic } : {}, headersTimeout: this.o.timeoutMs, bodyTimeout: this.o.timeoutMs }).catch((err: unknown) => {
      throw new FerryError('FERRY_E_REGISTRY_UNREACHABLE', `${u.host}: ${(err as { code?: string }).code ?? (err as Error).message}`);
    });
    if (res.statusCode !== 200) {
      await res.body.dump();
      throw new FerryError('FERRY_E_REGISTRY_AUTH', `${host}: the token service answered ${res.statusCode}`);
    }
    const doc = (await res.body.json()) as { token?: string; access_token?: string; expires_in?: number };
    const token = doc.token ?? doc.access_token;
    if (!token) throw new FerryError('FERRY_E_REGISTRY_AUTH', `${host}: the token service gave no token`);
    this.tokens.set(key, { token, until: Date.now() + Math.max(30, (doc.expires_in ?? 60) - 10) * 1000 });
    return `Bearer ${token}`;
  }

  close(): Promise<void> {
    return this.agent.close();
  }
}

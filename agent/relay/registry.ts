// A client for one OCI distribution endpoint: a bank registry (push, pull,
// mount, delete), a vendor registry (pull), or the hub's registry origin
// (pull, each request signed by the agent's key). Credentials go to that
// endpoint only: answered challenges are Basic to the registry itself, or
// Bearer from a token service on https or on the registry's own host.
// Redirected blob downloads (to object storage) carry no credentials.
// Every refusal becomes a catalogue code; 5xx, 429 and lost connections are
// Retryable (see retry.ts).
import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { FerryError, isErrorCode, type ErrorCode } from '../../shared/errors.js';
import { MANIFEST_ACCEPT, challengeParams, registryErrors, sha256Digest } from '../../shared/oci.js';
import { Retryable, drain, endpoint, header, readBody, type Endpoint, type EndpointOptions, type HttpRequest } from './http.js';

export type RegistryAuth =
  | { kind: 'challenge'; username?: string; password?: string }
  /** The hub origin: headers proving the agent's identity, per request. */
  | { kind: 'signed'; headers: (method: string, url: URL) => Record<string, string> };

export interface RegistryOptions extends EndpointOptions {
  /** http(s)://host[:port][/base path]; the API is under <url>/v2/. */
  url: string;
  auth: RegistryAuth;
}

export interface UploadState {
  location: string;
  /** Bytes the registry holds. */
  offset: number;
}

type Body = Buffer | (() => Readable);

interface Call {
  method: HttpRequest['method'];
  /** Path under the base (starting /v2/), or an absolute URL (upload locations). */
  path: string | URL;
  headers?: Record<string, string>;
  body?: Body;
  /** Token scope for Bearer auth, e.g. `repository:a/b:pull,push`. */
  scope: string;
  /** Statuses handed back to the caller; anything else is an error. */
  ok: number[];
  what: string;
  signal?: AbortSignal;
}

export class RegistryClient {
  /** host[:port], as it appears in image references. */
  readonly host: string;
  private readonly base: URL;
  private readonly http: Endpoint;
  private readonly granted = new Map<string, string>();

  constructor(private readonly o: RegistryOptions) {
    this.base = new URL(o.url.replace(/\/+$/, '') + '/');
    this.host = this.base.host;
    this.http = endpoint(this.base, o);
  }

  close(): void {
    this.http.close();
  }

  /** Whether the registry answers its API root (200, or 401 asking for credentials). */
  async ping(signal?: AbortSignal): Promise<boolean> {
    try {
      const res = await this.http.send({ method: 'GET', url: this.url('/v2/'), ...(signal ? { signal } : {}) });
      await drain(res);
      return res.statusCode === 200 || res.statusCode === 401;
    } catch {
      return false;
    }
  }

  /** Digest and size of a manifest, or null when absent. */
  async headManifest(name: string, ref: string, signal?: AbortSignal): Promise<{ digest: string; size: number } | null> {
    const res = await this.call({ method: 'HEAD', path: `/v2/${name}/manifests/${ref}`, headers: { accept: MANIFEST_ACCEPT }, scope: pull(name), ok: [200, 404], what: `manifest ${name}:${ref}`, signal });
    await drain(res);
    if (res.statusCode === 404) return null;
    return { digest: header(res.headers, 'docker-content-digest') ?? '', size: Number(header(res.headers, 'content-length') ?? 0) };
  }

  async getManifest(name: string, digest: string, signal?: AbortSignal): Promise<{ bytes: Buffer; contentType: string }> {
    const res = await this.call({ method: 'GET', path: `/v2/${name}/manifests/${digest}`, headers: { accept: MANIFEST_ACCEPT }, scope: pull(name), ok: [200], what: `manifest ${name}@${digest}`, signal });
    return { bytes: await readBody(res), contentType: header(res.headers, 'content-type') ?? '' };
  }

  /** Stores a manifest under a digest or tag; returns the digest the registry computed. */
  async putManifest(name: string, ref: string, bytes: Buffer, mediaType: string, signal?: AbortSignal): Promise<string> {
    const res = await this.call({ method: 'PUT', path: `/v2/${name}/manifests/${ref}`, headers: { 'content-type': mediaType, 'content-length': String(bytes.length) }, body: bytes, scope: push(name), ok: [201, 200], what: `manifest put ${name}:${ref}`, signal });
    await drain(res);
    return header(res.headers, 'docker-content-digest') ?? sha256Digest(bytes);
  }

  /** Deletes a manifest by digest (every tag on it goes too); absent is fine. */
  async deleteManifest(name: string, digest: string, signal?: AbortSignal): Promise<void> {
    const res = await this.call({ method: 'DELETE', path: `/v2/${name}/manifests/${digest}`, scope: `repository:${name}:delete`, ok: [202, 200, 404], what: `manifest delete ${name}@${digest}`, signal });
    await drain(res);
  }

  async tags(name: string, signal?: AbortSignal): Promise<string[]> {
    const res = await this.call({ method: 'GET', path: `/v2/${name}/tags/list`, scope: pull(name), ok: [200, 404], what: `tags of ${name}`, signal });
    if (res.statusCode === 404) return (await drain(res), []);
    const doc = JSON.parse((await readBody(res)).toString('utf8')) as { tags?: string[] | null };
    return doc.tags ?? [];
  }

  /** Size of a blob, or null when absent. */
  async headBlob(name: string, digest: string, signal?: AbortSignal): Promise<number | null> {
    const res = await this.call({ method: 'HEAD', path: `/v2/${name}/blobs/${digest}`, scope: pull(name), ok: [200, 404], what: `blob ${name}@${digest}`, signal });
    await drain(res);
    return res.statusCode === 404 ? null : Number(header(res.headers, 'content-length') ?? 0);
  }

  /**
   * The blob's bytes from `offset` on. `total` is the whole blob's size when
   * the registry says it. A registry that ignores Range answers from byte 0:
   * `start` says where the stream begins.
   */
  async getBlob(name: string, digest: string, offset: number, signal?: AbortSignal): Promise<{ stream: IncomingMessage; start: number; total: number | null }> {
    const headers: Record<string, string> = offset > 0 ? { range: `bytes=${offset}-` } : {};
    let res = await this.call({ method: 'GET', path: `/v2/${name}/blobs/${digest}`, headers, scope: pull(name), ok: [200, 206, 307, 302, 303], what: `blob ${name}@${digest}`, signal });
    for (let hops = 0; res.statusCode === 307 || res.statusCode === 302 || res.statusCode === 303; hops++) {
      const to = new URL(header(res.headers, 'location') ?? '', this.url(`/v2/${name}/blobs/${digest}`));
      await drain(res);
      if (hops >= 3) throw new FerryError('FERRY_E_REGISTRY_FAILED', `${this.host}: too many redirects for blob ${digest}`);
      // Storage behind a redirect gets no registry credentials.
      const ep = endpoint(to, this.o);
      res = await ep.send({ method: 'GET', url: to, headers, ...(signal ? { signal } : {}) });
      res.once('close', () => ep.close());
      if (res.statusCode !== 200 && res.statusCode !== 206 && !(res.statusCode! >= 300 && res.statusCode! < 400)) throw await failure(res, 'GET', `blob ${digest} from ${to.host}`, to.host);
    }
    if (res.statusCode === 206) {
      const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(header(res.headers, 'content-range') ?? '');
      if (!m || Number(m[1]) !== offset) {
        res.destroy();
        throw new FerryError('FERRY_E_REGISTRY_FAILED', `${this.host}: range answer ${header(res.headers, 'content-range')} for bytes=${offset}-`);
      }
      return { stream: res, start: offset, total: m[3] === '*' ? null : Number(m[3]) };
    }
    const len = header(res.headers, 'content-length');
    return { stream: res, start: 0, total: len !== undefined ? Number(len) : null };
  }

  /** Mounts a blob from another repository of this registry; null when the registry started an upload instead. */
  async mount(name: string, digest: string, from: string, signal?: AbortSignal): Promise<'mounted' | UploadState> {
    const res = await this.call({ method: 'POST', path: `/v2/${name}/blobs/uploads/?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(from)}`, headers: { 'content-length': '0' }, scope: `${push(name)} ${pull(from)}`, ok: [201, 202], what: `mount ${digest} from ${from} into ${name}`, signal });
    await drain(res);
    if (res.statusCode === 201) return 'mounted';
    return { location: this.location(res), offset: 0 };
  }

  async startUpload(name: string, signal?: AbortSignal): Promise<UploadState> {
    const res = await this.call({ method: 'POST', path: `/v2/${name}/blobs/uploads/`, headers: { 'content-length': '0' }, scope: push(name), ok: [202], what: `upload start ${name}`, signal });
    await drain(res);
    return { location: this.location(res), offset: 0 };
  }

  /** Where an upload stands, as the registry reports it; null when the registry no longer knows it. */
  async uploadStatus(name: string, location: string, signal?: AbortSignal): Promise<UploadState | null> {
    const res = await this.call({ method: 'GET', path: new URL(location), scope: push(name), ok: [204, 200, 404], what: `upload status ${name}`, signal });
    await drain(res);
    if (res.statusCode === 404) return null;
    return { location: this.location(res, location), offset: rangeEnd(header(res.headers, 'range')) };
  }

  /** Sends bytes [start, start+length) of an upload; returns the registry's new state. 416 answers with the registry's offset. */
  async patch(name: string, up: UploadState, length: number, body: () => Readable, signal?: AbortSignal): Promise<UploadState | { mismatch: true }> {
    const res = await this.call({
      method: 'PATCH',
      path: new URL(up.location),
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(length), 'content-range': `${up.offset}-${up.offset + length - 1}` },
      body,
      scope: push(name),
      ok: [202, 204, 416],
      what: `upload chunk ${name} at ${up.offset}`,
      signal,
    });
    await drain(res);
    if (res.statusCode === 416) return { mismatch: true };
    const said = header(res.headers, 'range');
    return { location: this.location(res, up.location), offset: said ? rangeEnd(said) : up.offset + length };
  }

  /** Completes an upload: the registry checks the digest and makes the blob visible. */
  async finishUpload(name: string, up: UploadState, digest: string, signal?: AbortSignal): Promise<void> {
    const url = new URL(up.location);
    url.searchParams.set('digest', digest);
    const res = await this.call({ method: 'PUT', path: url, headers: { 'content-length': '0' }, body: Buffer.alloc(0), scope: push(name), ok: [201, 204], what: `upload finish ${name}@${digest}`, signal });
    await drain(res);
  }

  async cancelUpload(name: string, location: string): Promise<void> {
    try {
      await drain(await this.call({ method: 'DELETE', path: new URL(location), scope: push(name), ok: [204, 404, 202, 200], what: `upload cancel ${name}` }));
    } catch {
      // the registry expires abandoned uploads itself
    }
  }

  private url(path: string): URL {
    return new URL(path.replace(/^\//, ''), this.base);
  }

  private location(res: IncomingMessage, previous?: string): string {
    const loc = header(res.headers, 'location');
    if (!loc && !previous) throw new FerryError('FERRY_E_REGISTRY_FAILED', `${this.host}: upload answer without Location`);
    return loc ? new URL(loc, this.base).href : previous!;
  }

  /** One request, answering one auth challenge; errors mapped to codes. */
  private async call(c: Call): Promise<IncomingMessage> {
    const url = typeof c.path === 'string' ? this.url(c.path) : c.path;
    if (url.host !== this.host) throw new FerryError('FERRY_E_REGISTRY_FAILED', `${this.host} sent an upload location on another host (${url.host}); refusing to send credentials there`);
    const attempt = async (authorization: string | undefined) => {
      const auth = this.o.auth.kind === 'signed' ? this.o.auth.headers(c.method, url) : authorization ? { authorization } : {};
      const body = typeof c.body === 'function' ? c.body() : c.body;
      return this.http.send({ method: c.method, url, headers: { ...c.headers, ...auth }, ...(body ? { body } : {}), ...(c.signal ? { signal: c.signal } : {}) });
    };
    let res = await attempt(this.granted.get(c.scope));
    if (res.statusCode === 401 && this.o.auth.kind === 'challenge') {
      const challenge = header(res.headers, 'www-authenticate') ?? '';
      await drain(res);
      const authorization = await this.answer(challenge, c.scope, c.signal);
      res = await attempt(authorization);
      if (res.statusCode !== 401) this.granted.set(c.scope, authorization);
    }
    if (c.ok.includes(res.statusCode ?? 0)) return res;
    throw await failure(res, c.method, c.what, this.host, this.o.auth.kind === 'challenge' ? this.o.auth.username !== undefined : true);
  }

  private async answer(challenge: string, scope: string, signal?: AbortSignal): Promise<string> {
    const a = this.o.auth as Extract<RegistryAuth, { kind: 'challenge' }>;
    const scheme = /^\s*(\w+)/.exec(challenge)?.[1]?.toLowerCase();
    const basic = a.username !== undefined ? `Basic ${Buffer.from(`${a.username}:${a.password ?? ''}`).toString('base64')}` : undefined;
    const noCreds = () => new FerryError('FERRY_E_REGISTRY_AUTH', `${this.host} asks for credentials and none are configured for it`);
    if (scheme === 'basic') {
      if (!basic) throw noCreds();
      return basic;
    }
    if (scheme !== 'bearer') throw new FerryError('FERRY_E_REGISTRY_AUTH', `${this.host} asks for authentication Ferry does not speak: ${JSON.stringify(challenge.slice(0, 100))}`);
    const p = challengeParams(challenge);
    let realm: URL;
    try {
      realm = new URL(p.realm ?? '');
    } catch {
      throw new FerryError('FERRY_E_REGISTRY_AUTH', `${this.host} gave no usable token realm`);
    }
    // Credentials go to a token service on https, or on the registry's own host.
    if (realm.protocol !== 'https:' && realm.hostname !== this.base.hostname) {
      throw new FerryError('FERRY_E_REGISTRY_AUTH', `${this.host} sends credentials to ${realm.origin}, which is neither https nor the registry's host`);
    }
    if (p.service) realm.searchParams.set('service', p.service);
    for (const s of scope.split(' ')) realm.searchParams.append('scope', s);
    const ep = endpoint(realm, this.o);
    try {
      const res = await ep.send({ method: 'GET', url: realm, headers: { accept: 'application/json', ...(basic ? { authorization: basic } : {}) }, ...(signal ? { signal } : {}) });
      const body = await readBody(res, 1 << 20);
      if (res.statusCode === 401 || res.statusCode === 403) throw new FerryError('FERRY_E_REGISTRY_AUTH', `token service ${realm.origin} for ${this.host} refused ${basic ? 'the configured credentials' : 'an anonymous request'} (HTTP ${res.statusCode})`);
      const doc = JSON.parse(body.toString('utf8') || '{}') as { token?: unknown; access_token?: unknown };
      const token = doc.token ?? doc.access_token;
      if (res.statusCode !== 200 || typeof token !== 'string' || !token) throw new FerryError('FERRY_E_REGISTRY_UNREACHABLE', `token service ${realm.origin} answered HTTP ${res.statusCode} without a token`);
      return `Bearer ${token}`;
    } finally {
      ep.close();
    }
  }
}

function ferryError(body: Buffer): { code: ErrorCode; message: string } | null {
  try {
    const e = (JSON.parse(body.toString('utf8')) as { error?: { code?: unknown; message?: unknown } }).error;
    return e && isErrorCode(e.code) ? { code: e.code, message: typeof e.message === 'string' ? e.message : '' } : null;
  } catch {
    return null;
  }
}

const pull = (name: string) => `repository:${name}:pull`;
const push = (name: string) => `repository:${name}:pull,push`;

/** `Range: 0-N` of an upload -> bytes held (N+1). Distribution says `0-0` for an empty upload. */
function rangeEnd(range: string | undefined): number {
  const m = /^(?:bytes=)?0-(\d+)$/.exec(range ?? '');
  if (!m) return 0;
  const end = Number(m[1]);
  return end === 0 ? 0 : end + 1;
}

/** A refused request as a catalogue code; 5xx and 429 are Retryable. */
async function failure(res: IncomingMessage, method: string, what: string, host: string, hadCredentials = false): Promise<Error> {
  const status = res.statusCode ?? 0;
  const body = method === 'HEAD' ? (await drain(res), Buffer.alloc(0)) : await readBody(res, 64 * 1024).catch(() => Buffer.alloc(0));
  // The hub's origin answers with Ferry's own error body (agent auth, not in any release of the tenant, limits).
  const ferry = ferryError(body);
  if (ferry && !(status === 429 || status >= 500)) return new FerryError(ferry.code, `${host} ${what}: ${ferry.message}`);
  const errors = registryErrors(body);
  const text = errors.map((e) => `${e.code}${e.message ? `: ${e.message}` : ''}`).join('; ') || body.toString('utf8').trim().slice(0, 200);
  const detail = `${host} ${what}: HTTP ${status}${text ? ` (${text})` : ''}`;
  const codes = errors.map((e) => e.code);
  if (status === 507 || status === 413 || /quota|no space left|disk full|storage limit|insufficient storage/i.test(text)) return new FerryError('FERRY_E_REGISTRY_QUOTA', detail);
  if (status === 401) return new FerryError('FERRY_E_REGISTRY_AUTH', `${detail}${hadCredentials ? '' : '; no credentials are configured for it'}`);
  if (status === 403) return new FerryError(codes.includes('DENIED') || hadCredentials ? 'FERRY_E_REGISTRY_DENIED' : 'FERRY_E_REGISTRY_AUTH', detail);
  if (status === 404) return new FerryError('FERRY_E_IMAGE_NOT_FOUND', detail);
  if (codes.includes('DIGEST_INVALID') || codes.includes('SIZE_INVALID')) return new FerryError('FERRY_E_REGISTRY_DIGEST', detail);
  if (status === 429 || status >= 500) {
    const after = Number(header(res.headers, 'retry-after'));
    return new Retryable(new FerryError('FERRY_E_REGISTRY_FAILED', detail), Number.isFinite(after) && after > 0 ? after * 1000 : undefined);
  }
  return new FerryError('FERRY_E_REGISTRY_FAILED', detail);
}

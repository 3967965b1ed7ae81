// Pinning images: every image of a release is `repo@sha256:…`, so what an
// agent runs is exactly what was signed. This module asks the registry (the
// Docker Registry HTTP API v2) which manifest a tag names right now.
//
// References are parsed the way Docker does; the pinned reference keeps the
// registry host and repository as written (`nginx:1.25` -> `nginx@sha256:…`,
// `127.0.0.1:5000/app:v1` -> `127.0.0.1:5000/app@sha256:…`).
import { createHash } from 'node:crypto';
import { Agent, type Dispatcher, request } from 'undici';
import { FerryError } from '../shared/errors.js';
import { MANIFEST_ACCEPT, SHA256, challengeParams, registryErrors } from '../shared/oci.js';
import type { Service } from '../shared/release.js';
import type { ComposeService } from './compose-service.js';
import { parseImageRef, type ImageRef } from './image-ref.js';

export { parseImageRef, type ImageRef } from './image-ref.js';

export interface RegistryOptions {
  username?: string;
  password?: string;
  /** When set, credentials go only to this registry (host[:port]); otherwise to any registry that asks for them. */
  credentialsFor?: string;
  /** Registries (host[:port], or host for any port) spoken to over plain http; loopback ones always are. */
  insecure?: readonly string[];
  /** Per request, connect to last byte. Default 10 s. */
  timeoutMs?: number;
  /** How many references `pinImages` resolves at once. Default 4. */
  concurrency?: number;
  /** For a proxy agent, say; by default a direct connection that is closed afterwards. */
  dispatcher?: Dispatcher;
  signal?: AbortSignal;
}

const MANIFEST_TYPES = MANIFEST_ACCEPT;
const MAX_BODY = 4 * 1024 * 1024; // registries refuse manifests above 4 MiB

/** `ref` pinned as `name@sha256:…`; a reference with a digest is checked to exist and kept. */
export async function resolveImage(ref: string, opts: RegistryOptions = {}): Promise<string> {
  const image = parseImageRef(ref);
  return withClient(opts, (c) => c.resolve(image));
}

/**
 * The services with `image` set to their pinned reference. Each distinct
 * reference is resolved once, a few at a time; the first failure is thrown,
 * naming the services that use the image.
 */
export async function pinImages(services: Readonly<Record<string, ComposeService>>, opts: RegistryOptions & { imageAt?: Readonly<Record<string, string>> } = {}): Promise<Record<string, Service>> {
  const refs = [...new Set(Object.values(services).map((s) => s.imageRef))];
  const images = refs.map(parseImageRef);
  const pinned = new Map<string, string>();
  await withClient(opts, (c) =>
    eachLimited(images, opts.concurrency ?? 4, async (image) => {
      try {
        pinned.set(image.ref, await c.resolve(image));
      } catch (err) {
        const users = Object.keys(services).filter((s) => services[s]!.imageRef === image.ref);
        if (!(err instanceof FerryError)) throw err;
        const at = opts.imageAt?.[users[0]!];
        const where = at ? `${at}: services.${users[0]}.image: ` : '';
        throw new FerryError(err.code, `${where}${err.detail} (service${users.length > 1 ? 's' : ''} ${users.join(', ')})`, { cause: err });
      }
    }),
  );
  return Object.fromEntries(Object.entries(services).map(([name, { imageRef, ...rest }]) => [name, { image: pinned.get(imageRef)!, ...rest }]));
}

async function eachLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { err: unknown } | undefined;
  const worker = async () => {
    while (!failure && next < items.length) {
      const item = items[next++]!;
      await fn(item).catch((err: unknown) => void (failure ??= { err }));
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (failure) throw failure.err;
}

async function withClient<T>(opts: RegistryOptions, fn: (c: Client) => Promise<T>): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const own = opts.dispatcher ? undefined : new Agent({ connect: { timeout: timeoutMs }, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
  try {
    return await fn(new Client(opts, opts.dispatcher ?? own!, timeoutMs));
  } finally {
    await own?.close();
  }
}

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

const header = (r: Reply, name: string): string | undefined => {
  const v = r.headers[name];
  return Array.isArray(v) ? v[0] : v;
};

/** One resolution session: shares connections, tokens and what each registry asked for. */
class Client {
  /** Authorization that worked, per registry/repository. */
  private readonly granted = new Map<string, string>();
  private readonly tokens = new Map<string, Promise<string>>();

  constructor(private readonly opts: RegistryOptions, private readonly dispatcher: Dispatcher, private readonly timeoutMs: number) {}

  async resolve(image: ImageRef): Promise<string> {
    const reference = image.digest ?? image.tag!;
    const url = `${this.origin(image.registry)}/v2/${image.repository}/manifests/${reference}`;
    const head = await this.send(image, 'HEAD', url);
    const found = header(head, 'docker-content-digest');
    if (head.status === 200 && (image.digest || (found && SHA256.test(found)))) return `${image.name}@${image.digest ?? found}`;
    if (head.status === 404) throw this.notFound(image, head);
    // No usable digest header, or a registry that does not do HEAD: read the manifest itself.
    const get = head.status === 200 || head.status === 405 || head.status >= 500 ? await this.send(image, 'GET', url) : head;
    if (get.status !== 200) throw get.status === 404 || manifestUnknown(get) ? this.notFound(image, get) : this.unexpected(image, get);
    const said = header(get, 'docker-content-digest');
    const digest = image.digest ?? (said && SHA256.test(said) ? said : `sha256:${createHash('sha256').update(get.body).digest('hex')}`);
    return `${image.name}@${digest}`;
  }

  private origin(registry: string): string {
    const apiHost = registry === 'docker.io' ? 'registry-1.docker.io' : registry;
    return `${this.plainHttp(registry) ? 'http' : 'https'}://${apiHost}`;
  }

  private plainHttp(hostPort: string): boolean {
    const host = hostPort.replace(/:\d+$/, '');
    return host === 'localhost' || /^127\.\d+\.\d+\.\d+$/.test(host) || (this.opts.insecure ?? []).some((h) => h === hostPort || h === host);
  }

  private credentials(registry: string): string | undefined {
    const { username, password, credentialsFor } = this.opts;
    if (username === undefined || (credentialsFor !== undefined && credentialsFor !== registry)) return undefined;
    return `Basic ${Buffer.from(`${username}:${password ?? ''}`).toString('base64')}`;
  }

  /** A request with whatever authorization the registry asked for; one challenge is answered, then refusals are final. */
  private async send(image: ImageRef, method: 'HEAD' | 'GET', url: string): Promise<Reply> {
    const key = `${image.registry}/${image.repository}`;
    const earlier = this.granted.get(key);
    let reply = await this.http(image.registry, method, url, earlier);
    if (reply.status === 401) {
      if (earlier) this.tokens.clear(); // a token that worked before has expired: fetch new ones
      const auth = await this.authorize(image, header(reply, 'www-authenticate') ?? '');
      reply = await this.http(image.registry, method, url, auth);
      if (reply.status !== 401 && reply.status !== 403) this.granted.set(key, auth);
    }
    if (reply.status === 401 || reply.status === 403) {
      const creds = this.credentials(image.registry) !== undefined;
      throw new FerryError('FERRY_E_REGISTRY_AUTH', `registry ${image.registry} refused access to ${image.repository} (HTTP ${reply.status}${creds ? ' with the given credentials' : ', no credentials given'}); the repository may not exist or may need other credentials`);
    }
    return reply;
  }

  private async authorize(image: ImageRef, challenge: string): Promise<string> {
    const scheme = /^\s*(\w+)/.exec(challenge)?.[1]?.toLowerCase();
    const basic = this.credentials(image.registry);
    const noCreds = () => new FerryError('FERRY_E_REGISTRY_AUTH', `registry ${image.registry} needs credentials for ${image.repository}: give --registry-user and --registry-password (or FERRY_REGISTRY_USER and FERRY_REGISTRY_PASSWORD)`);
    if (scheme === 'basic') {
      if (!basic) throw noCreds();
      return basic;
    }
    if (scheme !== 'bearer') throw new FerryError('FERRY_E_REGISTRY_AUTH', `registry ${image.registry} asks for authentication Ferry does not speak: ${JSON.stringify(challenge.slice(0, 100))}`);
    const params = challengeParams(challenge);
    let realm: URL;
    try {
      realm = new URL(params.realm ?? '');
    } catch {
      throw new FerryError('FERRY_E_REGISTRY_AUTH', `registry ${image.registry} gave no usable token realm in ${JSON.stringify(challenge.slice(0, 200))}`);
    }
    // Never send a password in clear to a token service the user did not mark as plain-http.
    if (realm.protocol !== 'https:' && !(realm.protocol === 'http:' && this.plainHttp(realm.host))) {
      throw new FerryError('FERRY_E_REGISTRY_AUTH', `registry ${image.registry} sends credentials to ${realm.origin}, which is not https; add ${realm.host} to the insecure registries to allow it`);
    }
    if (params.service) realm.searchParams.set('service', params.service);
    realm.searchParams.set('scope', params.scope ?? `repository:${image.repository}:pull`);
    let token = this.tokens.get(realm.href);
    if (!token) {
      token = this.fetchToken(image, realm, basic);
      this.tokens.set(realm.href, token);
      token.catch(() => this.tokens.delete(realm.href));
    }
    return `Bearer ${await token}`;
  }

  private async fetchToken(image: ImageRef, realm: URL, basic: string | undefined): Promise<string> {
    const reply = await this.http(realm.host, 'GET', realm.href, basic, 'application/json');
    if (reply.status === 401 || reply.status === 403) {
      throw new FerryError('FERRY_E_REGISTRY_AUTH', `token service ${realm.origin} for registry ${image.registry} refused ${basic ? 'the given credentials' : 'an anonymous request'} (HTTP ${reply.status})`);
    }
    let body: { token?: unknown; access_token?: unknown } = {};
    try {
      body = JSON.parse(reply.body.toString('utf8')) as typeof body;
    } catch {
      // reported below
    }
    const token = body.token ?? body.access_token;
    if (reply.status !== 200 || typeof token !== 'string' || token === '') {
      throw new FerryError('FERRY_E_REGISTRY_UNREACHABLE', `token service ${realm.origin} for registry ${image.registry} answered HTTP ${reply.status} without a token`);
    }
    return token;
  }

  private async http(registry: string, method: 'HEAD' | 'GET', url: string, authorization?: string, accept = MANIFEST_TYPES): Promise<Reply> {
    const signals = [AbortSignal.timeout(this.timeoutMs), ...(this.opts.signal ? [this.opts.signal] : [])];
    try {
      const res = await request(url, {
        method,
        dispatcher: this.dispatcher,
        signal: AbortSignal.any(signals),
        headers: { accept, 'user-agent': 'ferry', ...(authorization && { authorization }) },
      });
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of res.body) {
        size += (chunk as Buffer).length;
        if (size > MAX_BODY) {
          res.body.destroy();
          throw new FerryError('FERRY_E_REGISTRY_UNREACHABLE', `registry ${registry} sent more than ${MAX_BODY} bytes for ${url}`);
        }
        chunks.push(chunk as Buffer);
      }
      return { status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) };
    } catch (err) {
      if (err instanceof FerryError) throw err;
      if (this.opts.signal?.aborted) throw err;
      const e = err as { code?: string; name?: string; message?: string; cause?: { code?: string; message?: string } };
      const why = e.name === 'TimeoutError' ? `no answer within ${this.timeoutMs} ms` : [e.code ?? e.cause?.code, e.message ?? e.cause?.message].filter(Boolean).join(': ');
      throw new FerryError('FERRY_E_REGISTRY_UNREACHABLE', `registry ${registry} at ${new URL(url).origin}: ${why}`, { cause: err });
    }
  }

  private notFound(image: ImageRef, reply: Reply): FerryError {
    const code = registryErrorCodes(reply)[0];
    return new FerryError('FERRY_E_IMAGE_NOT_FOUND', `${image.ref} is not in registry ${image.registry}${code ? ` (${code})` : ''}`);
  }

  private unexpected(image: ImageRef, reply: Reply): FerryError {
    const codes = registryErrorCodes(reply);
    return new FerryError('FERRY_E_REGISTRY_UNREACHABLE', `registry ${image.registry} answered HTTP ${reply.status}${codes.length ? ` (${codes.join(', ')})` : ''} for ${image.ref}`);
  }
}

/** The `errors[].code` values of a registry error body (MANIFEST_UNKNOWN, NAME_UNKNOWN, …). */
function registryErrorCodes(reply: Reply): string[] {
  return registryErrors(reply.body).map((e) => e.code);
}

function manifestUnknown(reply: Reply): boolean {
  return registryErrorCodes(reply).some((c) => c === 'MANIFEST_UNKNOWN' || c === 'NAME_UNKNOWN');
}

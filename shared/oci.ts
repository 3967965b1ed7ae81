// What the ferry CLI (pinning tags) and the agent's relay (copying images)
// both need from the OCI distribution and image specs: media types, the
// registry's auth challenge and error bodies, and manifests as a list of the
// descriptors they point at.
import { createHash } from 'node:crypto';
import { FerryError } from './errors.js';

export const MEDIA = {
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
} as const;

/** The Accept header for a manifest of any kind Ferry handles. */
export const MANIFEST_ACCEPT = [MEDIA.dockerManifest, MEDIA.dockerList, MEDIA.ociManifest, MEDIA.ociIndex].join(', ');

export const SHA256 = /^sha256:[0-9a-f]{64}$/;

export function sha256Digest(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** `Bearer realm="…",service="…",scope="…"` -> { realm, service, scope }. */
export function challengeParams(challenge: string): Record<string, string> {
  const out: Record<string, string> = {};
  const re = /(\w+)=(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))/g;
  for (const m of challenge.replace(/^\s*\w+\s*/, '').matchAll(re)) out[m[1]!.toLowerCase()] = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3]!;
  return out;
}

/** The `errors[]` of a registry error body (MANIFEST_UNKNOWN, DENIED, …), detail folded into the message; empty when the body is not one. */
export function registryErrors(body: Buffer): { code: string; message: string }[] {
  try {
    const doc = JSON.parse(body.toString('utf8')) as { errors?: { code?: unknown; message?: unknown; detail?: unknown }[] };
    return (doc.errors ?? [])
      .filter((e) => typeof e.code === 'string')
      .map((e) => {
        const detail = e.detail === undefined || e.detail === null ? '' : typeof e.detail === 'string' ? e.detail : JSON.stringify(e.detail);
        return { code: e.code as string, message: [typeof e.message === 'string' ? e.message : '', detail].filter(Boolean).join(': ') };
      });
  } catch {
    return [];
  }
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  /** Foreign layers: fetched from these URLs, never stored in a registry. */
  urls?: string[];
}

export type Manifest =
  | { kind: 'index'; mediaType: string; children: Descriptor[] }
  | { kind: 'image'; mediaType: string; config: Descriptor; layers: Descriptor[] };

/** Parses an image manifest or index (Docker schema 2 or OCI); anything else is FERRY_E_REGISTRY_FAILED. */
export function parseManifest(bytes: Uint8Array, contentType?: string): Manifest {
  let doc: { schemaVersion?: unknown; mediaType?: unknown; manifests?: unknown; config?: unknown; layers?: unknown };
  try {
    doc = JSON.parse(Buffer.from(bytes).toString('utf8')) as typeof doc;
  } catch {
    throw new FerryError('FERRY_E_REGISTRY_FAILED', 'a manifest is not JSON');
  }
  if (doc.schemaVersion !== 2) throw new FerryError('FERRY_E_REGISTRY_FAILED', `manifest schemaVersion ${String(doc.schemaVersion)} (only schema 2 and OCI are supported)`);
  const mediaType = typeof doc.mediaType === 'string' ? doc.mediaType : (contentType ?? '');
  const desc = (d: unknown, where: string): Descriptor => {
    const x = d as Partial<Descriptor> | null;
    if (!x || typeof x.digest !== 'string' || !SHA256.test(x.digest) || !Number.isSafeInteger(x.size) || (x.size as number) < 0) {
      throw new FerryError('FERRY_E_REGISTRY_FAILED', `manifest ${where} is not a sha256 descriptor with a size`);
    }
    return { mediaType: typeof x.mediaType === 'string' ? x.mediaType : '', digest: x.digest, size: x.size as number, ...(Array.isArray(x.urls) && x.urls.length ? { urls: x.urls as string[] } : {}) };
  };
  if (Array.isArray(doc.manifests)) return { kind: 'index', mediaType: mediaType || MEDIA.ociIndex, children: doc.manifests.map((m, i) => desc(m, `manifests[${i}]`)) };
  if (doc.config && Array.isArray(doc.layers)) return { kind: 'image', mediaType: mediaType || MEDIA.ociManifest, config: desc(doc.config, 'config'), layers: doc.layers.map((l, i) => desc(l, `layers[${i}]`)) };
  throw new FerryError('FERRY_E_REGISTRY_FAILED', 'a manifest is neither an image manifest nor an index');
}

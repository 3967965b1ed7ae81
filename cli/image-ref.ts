// Image references parsed the way Docker parses them, and refused here when
// the release schema would refuse them on the agents.
import { FerryError } from '../shared/errors.js';
import { DIGEST_REF } from '../shared/release.js';

export interface ImageRef {
  /** The reference as written. */
  ref: string;
  /** Registry and repository as written, without tag or digest: the pinned reference's left side. */
  name: string;
  /** host[:port] of the registry; `docker.io` when none is written. */
  registry: string;
  /** Repository on that registry (`library/nginx` for `nginx`). */
  repository: string;
  /** The tag, `latest` when neither tag nor digest is written; undefined for a bare digest reference. */
  tag?: string;
  /** `sha256:…` when the reference already pins one. */
  digest?: string;
}

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^\w[\w.-]{0,127}$/;
const SHA256 = /^sha256:[0-9a-f]{64}$/;
/** Parses an image reference like Docker; throws FERRY_E_VALIDATION naming what is wrong. */
export function parseImageRef(ref: string): ImageRef {
  const bad = (why: string) => new FerryError('FERRY_E_VALIDATION', `image ${JSON.stringify(ref)}: ${why}`);
  let name = ref;
  let digest: string | undefined;
  let tag: string | undefined;
  const at = name.indexOf('@');
  if (at >= 0) {
    digest = name.slice(at + 1);
    name = name.slice(0, at);
    if (!SHA256.test(digest)) throw bad('the digest must be sha256: and 64 lowercase hex digits');
  }
  const colon = name.lastIndexOf(':');
  if (colon > name.lastIndexOf('/')) {
    tag = name.slice(colon + 1);
    name = name.slice(0, colon);
    if (!TAG.test(tag)) throw bad('a tag is up to 128 letters, digits, _ . and -, not starting with . or -');
  }
  const slash = name.indexOf('/');
  const first = name.slice(0, slash);
  const hasHost = slash > 0 && (first.includes('.') || first.includes(':') || first === 'localhost');
  let repository = hasHost ? name.slice(slash + 1) : name;
  if (!repository.split('/').every((c) => COMPONENT.test(c))) throw bad('a repository is lowercase letters and digits, with . _ - separators and / between parts');
  // The release schema's pattern is what agents accept; refuse here what it would refuse there.
  if (!DIGEST_REF.test(`${name}@sha256:${'0'.repeat(64)}`)) throw bad('write the registry as a lowercase host name or IPv4 address, with an optional :port');
  const registry = !hasHost || first === 'index.docker.io' ? 'docker.io' : first;
  if (registry === 'docker.io' && !repository.includes('/')) repository = `library/${repository}`;
  return { ref, name, registry, repository, ...(digest ? { digest } : { tag: tag ?? 'latest' }) };
}


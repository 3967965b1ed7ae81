// Trust roots, after TUF's root role reduced to what a live channel needs.
// A tenant's root names keys and thresholds for three roles: `root` (signs
// roots), `release` (release managers, offline, N of M) and `hub` (the hub's
// online key: directives and checkpoints). Root v1 is pinned at enrollment
// (its fingerprint can be checked out of band); v(n+1) must be signed by a
// threshold of v(n)'s root role and of its own, and versions step by one.
import { z } from 'zod';
import { FerryError } from './errors.js';
import { PAYLOAD_TYPES, payloadBytes, verifyEnvelope, type Envelope, type TrustedKeys } from './dsse.js';
import { decodePublicKey, fingerprint, keyId } from './keys.js';
import { parseStrictJson } from './strict-json.js';

export const ROLE_NAMES = ['root', 'release', 'hub'] as const;
export type RoleName = (typeof ROLE_NAMES)[number];

const KeyIdText = z.string().regex(/^[0-9a-f]{64}$/);

export const RootKey = z.strictObject({
  keytype: z.literal('ed25519'),
  public: z.string().max(64),
  /** Who holds it (display only). */
  name: z.string().max(64).optional(),
});

export const RoleSpec = z.strictObject({
  keyids: z.array(KeyIdText).min(1).max(32),
  threshold: z.number().int().min(1).max(32),
});
export type RoleSpec = z.infer<typeof RoleSpec>;

export const Root = z.strictObject({
  _type: z.literal('root'),
  tenant: z.string().max(64),
  version: z.number().int().min(1),
  createdAt: z.number().int().nonnegative(),
  keys: z.record(KeyIdText, RootKey).refine((k) => Object.keys(k).length <= 64, 'at most 64 keys'),
  roles: z.strictObject({ root: RoleSpec, release: RoleSpec, hub: RoleSpec }),
});
export type Root = z.infer<typeof Root>;

/** Validates a root's internal consistency beyond its schema. */
export function checkRoot(root: Root): Root {
  for (const [id, k] of Object.entries(root.keys)) {
    const pub = decodePublicKey(k.public);
    if (keyId(pub) !== id) throw new FerryError('FERRY_E_PAYLOAD_INVALID', `root key id ${id.slice(0, 12)}… is not the SHA-256 of its key`);
  }
  for (const name of ROLE_NAMES) {
    const role = root.roles[name];
    if (new Set(role.keyids).size !== role.keyids.length) throw new FerryError('FERRY_E_PAYLOAD_INVALID', `role ${name} lists a key twice`);
    for (const id of role.keyids) if (!root.keys[id]) throw new FerryError('FERRY_E_PAYLOAD_INVALID', `role ${name} names unknown key ${id.slice(0, 12)}…`);
    if (role.threshold > role.keyids.length) throw new FerryError('FERRY_E_PAYLOAD_INVALID', `role ${name}: threshold ${role.threshold} above its ${role.keyids.length} keys`);
  }
  return root;
}

/** Parses verified root payload bytes strictly. */
export function parseRoot(payload: Uint8Array): Root {
  const r = Root.safeParse(parseStrictJson(payload));
  if (!r.success) {
    const i = r.error.issues[0];
    throw new FerryError('FERRY_E_PAYLOAD_INVALID', `root: ${i?.path.join('.') || '(root)'}: ${i?.message}`);
  }
  return checkRoot(r.data);
}

export function trustedKeys(root: Root, role: RoleName): TrustedKeys {
  const spec = root.roles[role];
  const keys = new Map<string, Uint8Array>();
  for (const id of spec.keyids) keys.set(id, decodePublicKey(root.keys[id]!.public));
  return { keys, threshold: spec.threshold };
}

/** The fingerprint an institution checks out of band: of root v1's payload bytes. */
export function rootFingerprint(env: Envelope): string {
  return fingerprint(payloadBytes(env));
}

/**
 * Accepts a first root: self-signed by a threshold of its own root role and,
 * when given, matching the expected fingerprint.
 */
export function acceptInitialRoot(env: Envelope, expected: { tenant?: string; fingerprint?: string } = {}): Root {
  if (expected.fingerprint && rootFingerprint(env) !== expected.fingerprint) {
    throw new FerryError('FERRY_E_ROOT_UNTRUSTED', `fingerprint ${rootFingerprint(env)}, expected ${expected.fingerprint}`);
  }
  if (env.payloadType !== PAYLOAD_TYPES.root) throw new FerryError('FERRY_E_PAYLOAD_TYPE', `expected ${PAYLOAD_TYPES.root}`);
  // Bootstrapping: the keys come from the document itself, so parse, then
  // verify against them; the fingerprint (when given) is what anchors trust.
  const root = parseRoot(payloadBytes(env));
  verifyEnvelope(env, PAYLOAD_TYPES.root, trustedKeys(root, 'root'), 'root');
  if (expected.tenant && root.tenant !== expected.tenant) throw new FerryError('FERRY_E_DIRECTIVE_BINDING', `root is for tenant ${root.tenant}`);
  return root;
}

/** Accepts root v(n+1) given trusted v(n). */
export function acceptRootUpdate(current: Root, env: Envelope): Root {
  // 1. the current root's root role vouches for these bytes
  const verified = verifyEnvelope(env, PAYLOAD_TYPES.root, trustedKeys(current, 'root'), `root v${current.version} keys`);
  // 2. only then parse, and the new root's own root role must sign it too
  const next = parseRoot(verified.payload);
  verifyEnvelope(env, PAYLOAD_TYPES.root, trustedKeys(next, 'root'), `root v${next.version} keys`);
  if (next.version !== current.version + 1) {
    throw new FerryError('FERRY_E_ROOT_VERSION', `have v${current.version}, offered v${next.version}; versions step by one`);
  }
  if (next.tenant !== current.tenant) throw new FerryError('FERRY_E_DIRECTIVE_BINDING', `root for tenant ${next.tenant}, expected ${current.tenant}`);
  return next;
}

/** Follows a chain of root updates in order; stops with an error at the first bad link. */
export function followRoots(current: Root, chain: readonly Envelope[]): Root {
  let root = current;
  for (const env of chain) {
    const raw = parseRootVersionHint(env);
    if (raw !== null && raw <= root.version) continue; // already have it
    root = acceptRootUpdate(root, env);
  }
  return root;
}

/** The version an (unverified) root claims, only to skip ones already held. */
function parseRootVersionHint(env: Envelope): number | null {
  try {
    const v = (parseStrictJson(payloadBytes(env)) as { version?: unknown }).version;
    return typeof v === 'number' ? v : null;
  } catch {
    return null;
  }
}

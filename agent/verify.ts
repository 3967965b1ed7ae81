// What an agent accepts. Pure and synchronous: the current trust state, the
// bundle from the hub, and the facts (who we are, the clock, the local
// policy) go in; the new trust state and the verified releases come out, or
// a FerryError naming the first check that failed. Checks run in this order:
// size caps, envelope shape, payload type, signatures and thresholds against
// the pinned root, tenant and agent binding, expiry, seq, version floor,
// local policy. Nothing here touches disk or network.
import semver from 'semver';
import { FerryError } from '../shared/errors.js';
import { MAX_ENVELOPE_BYTES, PAYLOAD_TYPES, decodeEnvelope, payloadDigest, validSigners, verifyEnvelope, type Envelope } from '../shared/dsse.js';
import { parseDirective, parseRelease, type Directive, type Release } from '../shared/release.js';
import { acceptInitialRoot, followRoots, trustedKeys, type Root } from '../shared/trust.js';
import { checkRelease, inWindow, operationAllowed, type Policy } from './policy.js';

export const MAX_RELEASES = 64;
export const MAX_ROOTS = 64;

/** What the agent persists between directives (see trust-store.ts). */
export interface TrustState {
  /** Accepted roots, v1 first; the last is current. */
  roots: Envelope[];
  /** Fingerprint of root v1 the enroller pinned, if any. */
  pinnedRootFingerprint: string | null;
  /** Newest issuedAt accepted: trusted time never goes below it. */
  maxIssuedAt: number;
  last: { seq: number; digest: string } | null;
  /** Highest floor seen per stack. */
  floors: Record<string, string>;
}

export const EMPTY_STATE: TrustState = { roots: [], pinnedRootFingerprint: null, maxIssuedAt: 0, last: null, floors: {} };

export interface Bundle {
  directive: unknown;
  releases: unknown[];
  roots: unknown[];
}

export interface AcceptedRelease {
  release: Release;
  envelope: Envelope;
  digest: string;
  /** Key ids of the release-role signers that verified. */
  signers: string[];
}

export interface Accepted {
  state: TrustState;
  root: Root;
  directive: Directive;
  digest: string;
  releases: AcceptedRelease[];
  /** The same directive again: acknowledge, change nothing. */
  duplicate: boolean;
}

export interface Facts {
  agentId: string;
  tenant: string;
  now: number;
  policy: Policy;
}

/** The current root, re-derived from the persisted chain (each link re-verified). */
export function currentRoot(state: TrustState): Root | null {
  const [first, ...rest] = state.roots;
  if (!first) return null;
  return followRoots(acceptInitialRoot(first, { fingerprint: state.pinnedRootFingerprint ?? undefined }), rest);
}

/** Accepts root updates (or a first root) on their own; returns the new state. */
export function acceptRoots(state: TrustState, rawRoots: unknown[], tenant: string): { state: TrustState; root: Root | null } {
  if (rawRoots.length > MAX_ROOTS) throw new FerryError('FERRY_E_ENVELOPE_INVALID', `${rawRoots.length} roots, limit ${MAX_ROOTS}`);
  const envs = rawRoots.map((r) => decodeEnvelope(r));
  let root = currentRoot(state);
  const chain = [...state.roots];
  for (const env of envs) {
    if (!root) {
      root = acceptInitialRoot(env, { tenant, fingerprint: state.pinnedRootFingerprint ?? undefined });
      chain.push(env);
      continue;
    }
    const next = followRoots(root, [env]); // skips versions already held, verifies the rest
    if (next.version > root.version) chain.push(env);
    root = next;
  }
  return { state: { ...state, roots: chain }, root };
}

export function verifyBundle(state: TrustState, bundle: Bundle, facts: Facts): Accepted {
  // 1. size caps
  if (!Array.isArray(bundle.releases) || bundle.releases.length > MAX_RELEASES) throw new FerryError('FERRY_E_ENVELOPE_INVALID', `at most ${MAX_RELEASES} releases`);
  if (!Array.isArray(bundle.roots)) throw new FerryError('FERRY_E_ENVELOPE_INVALID', 'roots must be a list');
  for (const e of [bundle.directive, ...bundle.releases]) {
    if (JSON.stringify(e ?? null).length > MAX_ENVELOPE_BYTES) throw new FerryError('FERRY_E_ENVELOPE_INVALID', 'envelope over 1 MiB');
  }
  // 2. envelope shape
  const dEnv = decodeEnvelope(bundle.directive);
  const rEnvs = bundle.releases.map((r) => decodeEnvelope(r));
  // roots first: a rotation may change the hub or release keys used below
  const { state: rooted, root } = acceptRoots(state, bundle.roots, facts.tenant);
  if (!root) throw new FerryError('FERRY_E_ROOT_MISSING', 'this agent holds no trust root and none was sent');

  // 3-4. payload type, signatures: the hub role signs directives
  const dVerified = verifyEnvelope(dEnv, PAYLOAD_TYPES.directive, trustedKeys(root, 'hub'), 'hub');
  const directive = parseDirective(dVerified.payload);
  const digest = payloadDigest(dEnv);

  // 5. binding
  if (directive.tenant !== facts.tenant || directive.agent !== facts.agentId) {
    throw new FerryError('FERRY_E_DIRECTIVE_BINDING', `directive for ${directive.agent} of ${directive.tenant}; this is ${facts.agentId} of ${facts.tenant}`);
  }
  // 6. expiry, on trusted time: the clock cannot be set back below what we have seen
  const trustedNow = Math.max(facts.now, rooted.maxIssuedAt);
  if (directive.expiresAt <= trustedNow) {
    throw new FerryError('FERRY_E_DIRECTIVE_EXPIRED', `expired ${new Date(directive.expiresAt).toISOString()}, trusted time ${new Date(trustedNow).toISOString()}`);
  }
  // 7. seq
  const last = rooted.last;
  if (last && directive.seq === last.seq) {
    if (last.digest !== digest) throw new FerryError('FERRY_E_DIRECTIVE_FORK', `seq ${directive.seq}: have ${last.digest}, offered ${digest}`);
  } else if (last && directive.seq < last.seq) {
    throw new FerryError('FERRY_E_DIRECTIVE_REPLAY', `seq ${directive.seq}, already at ${last.seq}`);
  }
  const duplicate = !!last && directive.seq === last.seq;

  // releases: each named release must be sent, match its digest, and meet the release threshold
  const byDigest = new Map(rEnvs.map((e) => [payloadDigest(e), e]));
  const releaseKeys = trustedKeys(root, 'release');
  const floors = { ...rooted.floors };
  const accepted: AcceptedRelease[] = [];
  for (const ref of directive.releases) {
    const env = byDigest.get(ref.digest);
    if (!env) throw new FerryError('FERRY_E_DIRECTIVE_RELEASE', `${ref.stack}@${ref.version} (${ref.digest}) not in the bundle`);
    const v = verifyEnvelope(env, PAYLOAD_TYPES.release, releaseKeys, 'release');
    const release = parseRelease(v.payload);
    if (release.stack !== ref.stack || release.version !== ref.version) {
      throw new FerryError('FERRY_E_DIRECTIVE_RELEASE', `directive says ${ref.stack}@${ref.version}, release is ${release.stack}@${release.version}`);
    }
    // 8. version floor
    const floor = floors[release.stack];
    if (floor && semver.lt(release.version, floor)) throw new FerryError('FERRY_E_RELEASE_FLOOR', `${release.stack}@${release.version} is below floor ${floor}`);
    if (release.floor && (!floor || semver.gt(release.floor, floor))) floors[release.stack] = release.floor;
    accepted.push({ release, envelope: env, digest: ref.digest, signers: v.signers });
  }
  if (new Set(directive.releases.map((r) => r.stack)).size !== directive.releases.length) {
    throw new FerryError('FERRY_E_PAYLOAD_INVALID', 'directive names one stack twice');
  }

  // 9. local policy
  if (!duplicate) {
    if (!operationAllowed(facts.policy, 'deploy')) throw new FerryError('FERRY_E_POLICY_OPERATION', 'deploy');
    if (!inWindow(facts.policy, facts.now)) throw new FerryError('FERRY_E_POLICY_WINDOW', `now ${new Date(facts.now).toISOString()}`);
    for (const a of accepted) {
      checkRelease(facts.policy, a.release, (keys) => countCosigners(a.envelope, keys));
    }
  }

  const next: TrustState = {
    ...rooted,
    maxIssuedAt: Math.max(rooted.maxIssuedAt, directive.issuedAt),
    last: { seq: directive.seq, digest },
    floors,
  };
  return { state: next, root, directive, digest, releases: accepted, duplicate };
}

/** How many distinct institution keys validly signed the release envelope. */
function countCosigners(env: Envelope, keys: ReadonlyMap<string, Uint8Array>): number {
  return validSigners(env, keys).length;
}


/**
 * Pre-staging: releases sent ahead of a rollout, checked as a directive's
 * releases are (size, shape, release-role threshold against the root this
 * agent holds, version floor, registries and co-signers of the local policy)
 * but not adopted: no state changes, nothing runs. The roots sent along are
 * only used to follow a rotation the agent has not seen yet.
 */
export function verifyPrestage(state: TrustState, releases: unknown[], roots: unknown[], facts: Facts): AcceptedRelease[] {
  if (!Array.isArray(releases) || releases.length > MAX_RELEASES) throw new FerryError('FERRY_E_ENVELOPE_INVALID', `at most ${MAX_RELEASES} releases`);
  for (const e of releases) if (JSON.stringify(e ?? null).length > MAX_ENVELOPE_BYTES) throw new FerryError('FERRY_E_ENVELOPE_INVALID', 'envelope over 1 MiB');
  const { state: rooted, root } = acceptRoots(state, roots, facts.tenant);
  if (!root) throw new FerryError('FERRY_E_ROOT_MISSING', 'this agent holds no trust root and none was sent');
  const keys = trustedKeys(root, 'release');
  return releases.map((raw) => {
    const env = decodeEnvelope(raw);
    const v = verifyEnvelope(env, PAYLOAD_TYPES.release, keys, 'release');
    const release = parseRelease(v.payload);
    const floor = rooted.floors[release.stack];
    if (floor && semver.lt(release.version, floor)) throw new FerryError('FERRY_E_RELEASE_FLOOR', `${release.stack}@${release.version} is below floor ${floor}`);
    checkRelease(facts.policy, release, (k) => countCosigners(env, k));
    return { release, envelope: env, digest: payloadDigest(env), signers: v.signers };
  });
}

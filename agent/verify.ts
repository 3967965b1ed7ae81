// What an agent accepts. Pure and synchronous: the current trust state, the
// bundle from the hub, and the facts (who we are, the clock, the local
// policy) go in; the new trust state and the verified releases come out, or
// a FerryError naming the first check that failed. Checks run in this order:
// size caps, envelope shape, payload type, signatures and thresholds against
// the pinned root, tenant and agent binding, date (not ahead of the local
// clock by more than the allowed skew), expiry, seq, version floor, local
// policy. Nothing here touches disk or network.
import semver from 'semver';
import { FerryError } from '../shared/errors.js';
import { MAX_ENVELOPE_BYTES, PAYLOAD_TYPES, decodeEnvelope, payloadDigest, validSigners, verifyEnvelope, type Envelope } from '../shared/dsse.js';
import { AGENT_STACK, parseAgentBundle, type AgentBundle } from '../shared/agent-bundle.js';
import { parseDirective, parseRelease, type Directive, type Release } from '../shared/release.js';
import { acceptInitialRoot, followRoots, trustedKeys, type Root } from '../shared/trust.js';
import { checkRelease, inWindow, operationAllowed, type Policy } from './policy.js';

export const MAX_RELEASES = 64;
export const MAX_ROOTS = 64;
/** How far ahead of the local clock a signed document may be dated (and so trusted time may go): 5 minutes. */
export const DEFAULT_MAX_CLOCK_SKEW_MS = 5 * 60_000;

/** What the agent persists between directives (see trust-store.ts). */
export interface TrustState {
  /** Accepted roots, v1 first; the last is current. */
  roots: Envelope[];
  /** Fingerprint of root v1 the enroller pinned, if any. */
  pinnedRootFingerprint: string | null;
  /**
   * Newest issuedAt accepted: trusted time never goes below it (setting the
   * clock back does not revive an expired directive). Every issuedAt is
   * checked against the local clock plus the allowed skew before it counts,
   * so it never runs ahead of the clock it was accepted under.
   */
  maxIssuedAt: number;
  /**
   * Set once maxIssuedAt is known to be bounded by the local clock: always by
   * this version; absent in state written by earlier versions, which believed
   * any issuedAt (see boundTrustedTime).
   */
  issuedAtBounded?: true;
  last: { seq: number; digest: string } | null;
  /** Highest floor seen per stack. */
  floors: Record<string, string>;
}

export const EMPTY_STATE: TrustState = { roots: [], pinnedRootFingerprint: null, maxIssuedAt: 0, issuedAtBounded: true, last: null, floors: {} };

export interface Bundle {
  directive: unknown;
  releases: unknown[];
  roots: unknown[];
  /** The agent bundle statement the directive's `upgrade` names. */
  bundle?: unknown;
}

/** A verified agent bundle statement: what the agent may upgrade itself to. */
export interface AcceptedAgentBundle {
  statement: AgentBundle;
  envelope: Envelope;
  digest: string;
  signers: string[];
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
  /** The agent version the directive names, verified (null: it names none). */
  agentBundle: AcceptedAgentBundle | null;
  /** The same directive again: acknowledge, change nothing. */
  duplicate: boolean;
}

/** The clock a signed document's date is judged by. */
export interface ClockFacts {
  now: number;
  /** How far ahead of `now` a document may be dated (DEFAULT_MAX_CLOCK_SKEW_MS unless configured). */
  maxSkewMs?: number;
  /** The hub's clock minus this agent's, from the hub's welcome; null or absent when not known. It only says whose clock is wrong. */
  hubClockOffsetMs?: number | null;
}

export interface Facts extends ClockFacts {
  agentId: string;
  tenant: string;
  policy: Policy;
}

/**
 * Refuses a signed document dated further ahead of the local clock than the
 * allowed skew (FERRY_E_CLOCK_AHEAD): believing it would move trusted time
 * into the future and make every later document look expired. The detail
 * says which clock is wrong, as far as this agent can tell: the hub's clock
 * agreed with this host's at connect (the hub authenticates agents within
 * 5 minutes), so a document far ahead of both was dated wrongly by its signer.
 */
export function refuseIfAhead(what: string, issuedAt: number, c: ClockFacts): void {
  const skew = c.maxSkewMs ?? DEFAULT_MAX_CLOCK_SKEW_MS;
  const ahead = issuedAt - c.now;
  if (ahead <= skew) return;
  const off = c.hubClockOffsetMs ?? null;
  let whose: string;
  if (off === null) whose = "the hub's clock could not be compared with this host's; if this host's clock is right (check it against NTP), the hub's clock or its signature is at fault";
  else if (Math.abs(off) <= skew) whose = `this host's clock is not at fault: the hub's clock agreed with it at connect (${signedSpan(off)}), so the hub signed a document dated in the future (a wrong signing clock, or a forged document)`;
  else if (off > 0) whose = `the hub's clock was ${span(off)} ahead of this host's at connect: the hub's clock is wrong, or this host's is behind; check both against NTP`;
  else whose = `the hub's own clock was ${span(-off)} behind this host's at connect, yet it signed a document dated ahead of both: the hub is at fault`;
  throw new FerryError('FERRY_E_CLOCK_AHEAD', `${what} is dated ${iso(issuedAt)}, ${span(ahead)} ahead of this host's clock (${iso(c.now)}; allowed ${span(skew)}); ${whose}`);
}

/**
 * State written by an earlier version may hold a maxIssuedAt from the future
 * (it believed any issuedAt): one future-dated directive then made every
 * later one look expired, across restarts. Bounds it once to the local clock
 * plus the skew and marks the state bounded; `clampedFrom` says what it was.
 */
export function boundTrustedTime(state: TrustState, c: ClockFacts): { state: TrustState; clampedFrom: number | null; changed: boolean } {
  if (state.issuedAtBounded) return { state, clampedFrom: null, changed: false };
  const limit = c.now + (c.maxSkewMs ?? DEFAULT_MAX_CLOCK_SKEW_MS);
  const clamped = state.maxIssuedAt > limit;
  return { state: { ...state, maxIssuedAt: clamped ? limit : state.maxIssuedAt, issuedAtBounded: true }, clampedFrom: clamped ? state.maxIssuedAt : null, changed: true };
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
  // 6. date: never believe a document from the future (it would become trusted time)
  refuseIfAhead(`directive seq ${directive.seq}`, directive.issuedAt, facts);
  // 7. expiry, on trusted time: the clock cannot be set back below what we have seen
  const trustedNow = Math.max(facts.now, rooted.maxIssuedAt);
  if (directive.expiresAt <= trustedNow) {
    const why = trustedNow > facts.now ? ` (the newest directive accepted was issued then, ${span(trustedNow - facts.now)} ahead of this host's clock: was the clock set back?)` : '';
    throw new FerryError('FERRY_E_DIRECTIVE_EXPIRED', `expired ${iso(directive.expiresAt)}, trusted time ${iso(trustedNow)}${why}`);
  }
  // 8. seq
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
    // 9. version floor
    const floor = floors[release.stack];
    if (floor && semver.lt(release.version, floor)) throw new FerryError('FERRY_E_RELEASE_FLOOR', `${release.stack}@${release.version} is below floor ${floor}`);
    if (release.floor && (!floor || semver.gt(release.floor, floor))) floors[release.stack] = release.floor;
    accepted.push({ release, envelope: env, digest: ref.digest, signers: v.signers });
  }
  if (new Set(directive.releases.map((r) => r.stack)).size !== directive.releases.length) {
    throw new FerryError('FERRY_E_PAYLOAD_INVALID', 'directive names one stack twice');
  }
  // the agent's own version: verified as a release is (release role, floor), and bound to this tenant
  const agentBundle = directive.upgrade ? verifyAgentBundle(bundle.bundle, directive.upgrade, root, floors, facts) : null;

  // 10. local policy
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
    issuedAtBounded: true,
    last: { seq: directive.seq, digest },
    floors,
  };
  return { state: next, root, directive, digest, releases: accepted, agentBundle, duplicate };
}

/**
 * An agent bundle statement named by a directive: the digest it names,
 * payload type, the release role's threshold (distinct keys), the tenant
 * binding, the agent version floor (raised when the statement carries one,
 * in `floors[AGENT_STACK]`), and the institution's co-signers when its
 * policy wants them, exactly as for a release.
 */
export function verifyAgentBundle(raw: unknown, ref: { version: string; digest: string }, root: Root, floors: Record<string, string>, facts: Facts): AcceptedAgentBundle {
  if (raw === undefined || raw === null) throw new FerryError('FERRY_E_DIRECTIVE_RELEASE', `ferry-agent ${ref.version} (${ref.digest}): the directive names an agent bundle it does not carry`);
  if (JSON.stringify(raw).length > MAX_ENVELOPE_BYTES) throw new FerryError('FERRY_E_ENVELOPE_INVALID', 'envelope over 1 MiB');
  const env = decodeEnvelope(raw);
  if (payloadDigest(env) !== ref.digest) throw new FerryError('FERRY_E_DIRECTIVE_RELEASE', `ferry-agent ${ref.version}: the statement sent is ${payloadDigest(env)}, the directive names ${ref.digest}`);
  const v = verifyEnvelope(env, PAYLOAD_TYPES.agentBundle, trustedKeys(root, 'release'), 'release');
  const statement = parseAgentBundle(v.payload);
  if (statement.version !== ref.version) throw new FerryError('FERRY_E_DIRECTIVE_RELEASE', `directive says ferry-agent ${ref.version}, the statement is for ${statement.version}`);
  if (!statement.tenants.includes(facts.tenant)) throw new FerryError('FERRY_E_BUNDLE_TENANT', `ferry-agent ${statement.version} is signed for ${statement.tenants.slice(0, 5).join(', ')}${statement.tenants.length > 5 ? ', …' : ''}; this agent is of ${facts.tenant}`);
  const floor = floors[AGENT_STACK];
  if (floor && semver.lt(statement.version, floor)) throw new FerryError('FERRY_E_BUNDLE_FLOOR', `ferry-agent ${statement.version} is below floor ${floor}`);
  if (statement.floor && (!floor || semver.gt(statement.floor, floor))) floors[AGENT_STACK] = statement.floor;
  const co = facts.policy.cosigners;
  if (co) {
    const have = countCosigners(env, co.keys);
    if (have < co.threshold) throw new FerryError('FERRY_E_POLICY_COSIGN', `ferry-agent ${statement.version}: ${have} of ${co.threshold} institution co-signatures`);
  }
  return { statement, envelope: env, digest: ref.digest, signers: v.signers };
}

/** How many distinct institution keys validly signed the release envelope. */
function countCosigners(env: Envelope, keys: ReadonlyMap<string, Uint8Array>): number {
  return validSigners(env, keys).length;
}


const iso = (ms: number) => new Date(ms).toISOString();

/** A span of time for a person: 3652 days, 7 h, 12 min, 40 s, 250 ms. */
export function span(ms: number): string {
  const a = Math.abs(ms);
  if (a >= 2 * 86_400_000) return `${Math.round(a / 86_400_000)} days`;
  if (a >= 2 * 3_600_000) return `${Math.round(a / 3_600_000)} h`;
  if (a >= 2 * 60_000) return `${Math.round(a / 60_000)} min`;
  if (a >= 1000) return `${Math.round(a / 1000)} s`;
  return `${Math.round(a)} ms`;
}

const signedSpan = (ms: number) => `${ms >= 0 ? '+' : '-'}${span(ms)}`;

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

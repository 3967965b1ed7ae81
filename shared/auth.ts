// The statements an agent signs to prove possession of its key. Each is a
// fixed, line-oriented text with a domain-separating first line, so a
// signature made for one purpose can never be replayed for another.
import { createHash, randomBytes } from 'node:crypto';
import { FerryError } from './errors.js';
import { decodeSignature, sign, verify } from './keys.js';

/** Where the agent channel lives, relative to the hub URL. */
export const AGENT_PATH = '/agent/v1';
export const CHALLENGE_PATH = '/agent/v1/challenge';
export const ENROLL_PATH = '/agent/v1/enroll';

/** Upgrade request headers carrying the agent's proof. */
export const AUTH_HEADERS = {
  agent: 'x-ferry-agent',
  nonce: 'x-ferry-nonce',
  time: 'x-ferry-time',
  signature: 'x-ferry-signature',
} as const;

/** How far the agent's clock may be from the hub's. */
export const AUTH_CLOCK_SKEW_MS = 5 * 60_000;

export interface AuthStatement {
  /** The hub host the agent dialled (the Host header: host[:port]). */
  host: string;
  agentId: string;
  nonce: string;
  /** Agent's clock, milliseconds since the epoch. */
  time: number;
}

export function authStatement(s: AuthStatement): Uint8Array {
  return Buffer.from(`ferry-agent-auth/v1\nhost=${s.host.toLowerCase()}\nagent=${s.agentId}\nnonce=${s.nonce}\ntime=${s.time}\n`);
}

export interface EnrollStatement {
  host: string;
  token: string;
  publicKey: string;
}

export function enrollStatement(s: EnrollStatement): Uint8Array {
  const tokenHash = createHash('sha256').update(s.token).digest('hex');
  return Buffer.from(`ferry-agent-enroll/v1\nhost=${s.host.toLowerCase()}\ntoken-sha256=${tokenHash}\nkey=${s.publicKey}\n`);
}

/** host[:port] of a URL as it appears in a Host header (default ports elided). */
export function hostOf(url: string | URL): string {
  return new URL(url).host.toLowerCase();
}

// ---- signed requests to the hub's registry origin ---------------------------
//
// The agent fetches manifests and blobs from `{hub}/agent/v1/registry/v2/...`
// with plain GET/HEAD requests, each carrying its own proof: the agent signs
// method, path (with query), hub host, its id, its clock and a random nonce.
// The hub verifies with the agent's registered key, refuses a time more than
// AUTH_CLOCK_SKEW_MS away and a nonce it has seen within twice that window,
// so a captured request cannot be replayed nor aimed at another path or hub.
// The Range header is not signed: it only picks bytes of content the signed
// path already authorises.

/** Where the agents' read-only registry origin lives on the hub. */
export const REGISTRY_PATH = '/agent/v1/registry';
/** Where agents download agent bundles (by archive digest) for their self-upgrade, with the same signed requests. */
export const BUNDLE_PATH = '/agent/v1/bundles';

export interface RequestStatement {
  /** GET or HEAD. */
  method: string;
  /** Path and query exactly as sent on the request line (percent-encoded as sent). */
  path: string;
  /** The hub host the agent dialled (host[:port] as in the Host header). */
  host: string;
  agentId: string;
  /** At least 16 random bytes, base64url. */
  nonce: string;
  /** Agent's clock, milliseconds since the epoch. */
  time: number;
}

export function requestStatement(s: RequestStatement): Uint8Array {
  return Buffer.from(`ferry-agent-request/v1\nmethod=${s.method.toUpperCase()}\npath=${s.path}\nhost=${s.host.toLowerCase()}\nagent=${s.agentId}\nnonce=${s.nonce}\ntime=${s.time}\n`);
}

/** The headers that authenticate one request to the registry origin (AUTH_HEADERS names). */
export function signRequest(s: Omit<RequestStatement, 'nonce'> & { nonce?: string }, secretKey: Uint8Array): Record<string, string> {
  const nonce = s.nonce ?? randomBytes(16).toString('base64url');
  const sig = sign(requestStatement({ ...s, nonce }), secretKey);
  return {
    [AUTH_HEADERS.agent]: s.agentId,
    [AUTH_HEADERS.nonce]: nonce,
    [AUTH_HEADERS.time]: String(s.time),
    [AUTH_HEADERS.signature]: Buffer.from(sig).toString('base64'),
  };
}

export interface RequestCheck {
  method: string;
  /** Path and query of the request line. */
  path: string;
  /** The hub's public host (host[:port]). */
  host: string;
  now: number;
  /** The agent's registered public key (raw 32 bytes), or null when unknown. */
  publicKey: (agentId: string) => Uint8Array | null;
  /** Records the nonce; false if this agent already used it within the window. */
  firstUse: (agentId: string, nonce: string, time: number) => boolean;
}

/**
 * Hub side: checks a signed registry request; returns the agent id or throws
 * FERRY_E_AGENT_AUTH_MISSING / _UNKNOWN / _CLOCK / _INVALID / _REPLAYED.
 * Revocation is the caller's check (it knows the agent record).
 */
export function checkSignedRequest(headers: Record<string, string | string[] | undefined>, c: RequestCheck): string {
  const h = (name: string) => {
    const v = headers[name];
    return typeof v === 'string' ? v : undefined;
  };
  const agentId = h(AUTH_HEADERS.agent)?.slice(0, 64);
  const nonce = h(AUTH_HEADERS.nonce);
  const timeText = h(AUTH_HEADERS.time);
  const sigText = h(AUTH_HEADERS.signature);
  if (!agentId || !nonce || !timeText || !sigText) throw new FerryError('FERRY_E_AGENT_AUTH_MISSING');
  if (!/^[A-Za-z0-9_-]{22,128}$/.test(nonce)) throw new FerryError('FERRY_E_AGENT_AUTH_INVALID', 'nonce is not 16 to 96 bytes of base64url');
  const pub = c.publicKey(agentId);
  if (!pub) throw new FerryError('FERRY_E_AGENT_UNKNOWN', agentId);
  const time = /^\d{1,15}$/.test(timeText) ? Number(timeText) : NaN;
  if (!Number.isSafeInteger(time) || Math.abs(c.now - time) > AUTH_CLOCK_SKEW_MS) throw new FerryError('FERRY_E_AGENT_AUTH_CLOCK', `agent time ${timeText}, hub time ${c.now}`);
  const sig = decodeSignature(sigText);
  if (!sig) throw new FerryError('FERRY_E_AGENT_AUTH_INVALID', 'signature is not base64 of 64 bytes');
  if (!verify(requestStatement({ method: c.method, path: c.path, host: c.host, agentId, nonce, time }), sig, pub)) {
    throw new FerryError('FERRY_E_AGENT_AUTH_INVALID', `${c.method} ${c.path} for host ${c.host}`);
  }
  if (!c.firstUse(agentId, nonce, time)) throw new FerryError('FERRY_E_AGENT_AUTH_REPLAYED', 'nonce already used');
  return agentId;
}

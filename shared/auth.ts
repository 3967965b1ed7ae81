// The statements an agent signs to prove possession of its key. Each is a
// fixed, line-oriented text with a domain-separating first line, so a
// signature made for one purpose can never be replayed for another.
import { createHash } from 'node:crypto';

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

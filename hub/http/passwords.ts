// Passwords for the console: scrypt (node:crypto) with a per-user salt,
// compared in constant time. Stored as `scrypt$N$r$p$salt$hash` (base64url),
// so the cost can grow later without breaking stored hashes.
import { randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { FerryError } from '../../shared/errors.js';

const N = 1 << 15;
const R = 8;
const P = 1;
const KEYLEN = 32;
/** scrypt needs 128 * N * r bytes; Node's default cap (32 MiB) is just too small for N = 2^15, r = 8. */
const MAXMEM = 64 * 1024 * 1024;

export const MIN_PASSWORD = 12;
export const MAX_PASSWORD = 256;

function scrypt(password: string, salt: Buffer, keylen: number, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => scryptCb(password, salt, keylen, opts, (err, key) => (err ? reject(err) : resolve(key))));
}

export function checkPasswordRules(password: string): void {
  if (password.length < MIN_PASSWORD) throw new FerryError('FERRY_E_PASSWORD_WEAK', `${password.length} characters; at least ${MIN_PASSWORD}`);
  if (password.length > MAX_PASSWORD) throw new FerryError('FERRY_E_PASSWORD_WEAK', `at most ${MAX_PASSWORD} characters`);
}

export async function hashPassword(password: string): Promise<string> {
  checkPasswordRules(password);
  const salt = randomBytes(16);
  const key = await scrypt(password, salt, KEYLEN, { N, r: R, p: P, maxmem: MAXMEM });
  return ['scrypt', Math.log2(N), R, P, salt.toString('base64url'), key.toString('base64url')].join('$');
}

/** A hash nobody's password matches, to spend the same time on unknown users. */
let dummy: Promise<string> | undefined;

/** Whether `password` matches `stored` (null: check against a dummy, and fail, in about the same time). */
export async function verifyPassword(password: string, stored: string | null): Promise<boolean> {
  const text = stored ?? (await (dummy ??= hashPassword(randomBytes(24).toString('base64url'))));
  const parts = text.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [, logN, r, p, saltText, keyText] = parts as [string, string, string, string, string, string];
  const want = Buffer.from(keyText, 'base64url');
  const got = await scrypt(password.slice(0, MAX_PASSWORD), Buffer.from(saltText, 'base64url'), want.length, { N: 2 ** Number(logN), r: Number(r), p: Number(p), maxmem: MAXMEM });
  return timingSafeEqual(got, want) && stored !== null;
}

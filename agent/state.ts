// The agent's state directory: its identity (which hub, which agent id) and
// its private key. Files are written atomically (temp file, fsync, rename,
// fsync of the directory) so a crash never leaves half an identity. The key is
// mode 0600 and the agent refuses one that others can read.
import { mkdirSync, readFileSync, statSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { FerryError } from '../shared/errors.js';
import { privateKeyFromPem, type KeyPair } from '../shared/keys.js';
export { writeFileAtomic } from '../shared/files.js';

export const IDENTITY_FILE = 'identity.json';
export const KEY_FILE = 'agent.key';

export const Identity = z.strictObject({
  hubUrl: z.url(),
  agentId: z.string().min(1),
  tenant: z.string().min(1),
  name: z.string().min(1),
  labels: z.record(z.string(), z.string()),
  fingerprint: z.string(),
  enrolledAt: z.string(),
});
export type Identity = z.infer<typeof Identity>;

export function ensureStateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
}

export function isEnrolled(dir: string): boolean {
  return existsSync(join(dir, IDENTITY_FILE));
}

export function loadIdentity(dir: string): Identity {
  const file = join(dir, IDENTITY_FILE);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new FerryError('FERRY_E_NOT_ENROLLED', dir);
    throw new FerryError('FERRY_E_STATE_CORRUPT', `${file}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new FerryError('FERRY_E_STATE_CORRUPT', `${file} is not JSON`);
  }
  const r = Identity.safeParse(parsed);
  if (!r.success) throw new FerryError('FERRY_E_STATE_CORRUPT', `${file}: ${r.error.issues[0]?.path.join('.')}: ${r.error.issues[0]?.message}`);
  return r.data;
}

export function loadKey(dir: string): KeyPair {
  const file = join(dir, KEY_FILE);
  let st;
  try {
    st = statSync(file);
  } catch {
    throw new FerryError('FERRY_E_STATE_CORRUPT', `${file} is missing`);
  }
  if ((st.mode & 0o077) !== 0) throw new FerryError('FERRY_E_KEY_PERMISSIONS', `${file} has mode ${(st.mode & 0o777).toString(8)}`);
  return privateKeyFromPem(readFileSync(file, 'utf8'));
}

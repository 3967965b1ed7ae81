// The hub's online signing key (the `hub` role of every tenant's trust root):
// it signs directives and audit checkpoints. It lives beside the database,
// mode 0600, and is made once; losing it means rotating every tenant's root.
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { FerryError } from '../shared/errors.js';
import { generateKeyPair, privateKeyFromPem, privateKeyToPem, type KeyPair } from '../shared/keys.js';
import { writeFileAtomic } from '../shared/files.js';

export const HUB_KEY_FILE = 'hub-signing.key';

export function loadOrCreateHubKey(dataDir: string): KeyPair {
  const file = join(dataDir, HUB_KEY_FILE);
  if (!existsSync(file)) {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const kp = generateKeyPair();
    writeFileAtomic(file, privateKeyToPem(kp), 0o600);
    return kp;
  }
  if ((statSync(file).mode & 0o077) !== 0) throw new FerryError('FERRY_E_KEY_PERMISSIONS', `${file} must be mode 0600`);
  return privateKeyFromPem(readFileSync(file, 'utf8'));
}

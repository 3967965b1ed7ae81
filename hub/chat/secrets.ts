// Chat platforms' secrets (signing secrets, tokens, AES keys, robot webhook
// URLs that carry a key) at rest: AES-256-GCM under a key derived (HKDF) from
// the hub's signing key in the data dir, so every replica (they share that
// key) can read them and the database alone cannot. Or a file the secret is
// read from when used (`{"file": "/etc/ferry/slack.secret"}`). Secrets are
// never printed, logged or answered by the API: views say how each is kept.
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { FerryError } from '../../shared/errors.js';

/** A secret as stored: encrypted, or the file it is read from. */
export type StoredSecret = { enc: string } | { file: string };

/** A secret as given: a value, or a file to read it from when needed. */
export type SecretInput = { value: string } | { file: string };

export class SecretBox {
  private readonly key: Buffer;

  constructor(hubSecretKey: Uint8Array) {
    this.key = Buffer.from(hkdfSync('sha256', Buffer.from(hubSecretKey.subarray(0, 32)), Buffer.from('ferry-chat-secrets'), Buffer.from('v1'), 32));
  }

  seal(input: SecretInput): StoredSecret {
    if ('file' in input) {
      // Read once now, so a wrong path is found when it is configured (a bad input), not at the first message.
      let value: string;
      try {
        value = readSecretFile(input.file);
      } catch (err) {
        throw new FerryError('FERRY_E_VALIDATION', `secret file ${(err as FerryError).detail ?? input.file}: give a file on the hub's host that the hub's user can read`);
      }
      if (!value) throw new FerryError('FERRY_E_VALIDATION', `secret file ${input.file} is empty`);
      return { file: input.file };
    }
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.key, iv);
    const ct = Buffer.concat([c.update(input.value, 'utf8'), c.final()]);
    return { enc: `v1:${iv.toString('base64')}:${Buffer.concat([ct, c.getAuthTag()]).toString('base64')}` };
  }

  open(s: StoredSecret): string {
    if ('file' in s) return readSecretFile(s.file);
    const [v, iv, body] = s.enc.split(':');
    if (v !== 'v1' || !iv || !body) throw new FerryError('FERRY_E_CHAT_SECRET', 'not a sealed secret');
    const raw = Buffer.from(body, 'base64');
    try {
      const d = createDecipheriv('aes-256-gcm', this.key, Buffer.from(iv, 'base64'));
      d.setAuthTag(raw.subarray(raw.length - 16));
      return Buffer.concat([d.update(raw.subarray(0, raw.length - 16)), d.final()]).toString('utf8');
    } catch {
      throw new FerryError('FERRY_E_CHAT_SECRET', 'sealed under another hub key');
    }
  }
}

function readSecretFile(path: string): string {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch (err) {
    throw new FerryError('FERRY_E_CHAT_SECRET', `${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

export function isStoredSecret(x: unknown): x is StoredSecret {
  return typeof x === 'object' && x !== null && (typeof (x as { enc?: unknown }).enc === 'string' || typeof (x as { file?: unknown }).file === 'string');
}

/** How a stored secret is kept, for views: never its value. */
export function secretView(s: unknown): string {
  if (!isStoredSecret(s)) return 'unset';
  return 'file' in s ? `file ${s.file}` : 'set (encrypted)';
}

// Enrollment: the key pair is generated here and the private key never leaves
// this host. The hub gets the public key, a single-use token, and a signature
// over both (bound to the hub host) that proves we hold the private key.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { ENROLL_PATH, enrollStatement, hostOf } from '../shared/auth.js';
import { FerryError } from '../shared/errors.js';
import { encodePublicKey, fingerprint, generateKeyPair, privateKeyToPem, sign } from '../shared/keys.js';
import { refusal, transportError } from './connection.js';
import { proxyRefusal, type Transport } from './proxy.js';
import { rootFingerprint } from '../shared/trust.js';
import { TRUST_FILE, saveTrust } from './trust-store.js';
import { EMPTY_STATE, acceptRoots } from './verify.js';
import { IDENTITY_FILE, KEY_FILE, ensureStateDir, isEnrolled, writeFileAtomic, type Identity } from './state.js';

export interface EnrollOptions {
  hubUrl: string;
  token: string;
  stateDir: string;
  name: string;
  labels: Record<string, string>;
  transport: Transport;
  /** Fingerprint of root v1 the institution got from the vendor out of band. */
  rootFingerprint?: string;
}

export interface Enrolled {
  identity: Identity;
  /** The tenant's current root, when it has one. */
  root: { version: number; fingerprint: string } | null;
}

export async function enroll(opts: EnrollOptions): Promise<Enrolled> {
  const hub = new URL(opts.hubUrl);
  if (hub.protocol !== 'http:' && hub.protocol !== 'https:') {
    throw new FerryError('FERRY_E_CONFIG_INVALID', `hub URL must be http:// or https://, got ${hub.protocol}`);
  }
  if (isEnrolled(opts.stateDir)) throw new FerryError('FERRY_E_ALREADY_ENROLLED', opts.stateDir);
  ensureStateDir(opts.stateDir);
  const kp = generateKeyPair();
  const keyFile = join(opts.stateDir, KEY_FILE);
  writeFileAtomic(keyFile, privateKeyToPem(kp), 0o600);
  const publicKey = encodePublicKey(kp.publicKey);
  const proof = Buffer.from(sign(enrollStatement({ host: hostOf(hub), token: opts.token, publicKey }), kp.secretKey)).toString('base64');
  try {
    let res;
    try {
      res = await opts.transport.request(new URL(ENROLL_PATH, hub), {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ token: opts.token, publicKey, name: opts.name, labels: opts.labels, proof }),
        timeoutMs: 30_000,
      });
    } catch (err) {
      throw transportError(err as Error, opts.transport.proxy);
    }
    const text = res.text;
    if (res.status !== 201) throw proxyRefusal(res.status, opts.transport.proxy) ?? refusal(res.status, text);
    const body = JSON.parse(text) as { agentId: string; tenant: string; name: string; labels: Record<string, string>; roots?: unknown[] };
    // Accept the tenant's root chain now (pinned to the expected fingerprint if given) so a mismatch fails enrollment.
    const pinned = { ...EMPTY_STATE, pinnedRootFingerprint: opts.rootFingerprint ?? null };
    const { state, root } = acceptRoots(pinned, body.roots ?? [], body.tenant);
    const first = state.roots[0];
    const identity: Identity = {
      hubUrl: hub.origin,
      agentId: body.agentId,
      tenant: body.tenant,
      name: body.name,
      labels: body.labels,
      fingerprint: fingerprint(kp.publicKey),
      enrolledAt: new Date().toISOString(),
    };
    saveTrust(opts.stateDir, { format: 1, state, desired: null });
    writeFileAtomic(join(opts.stateDir, IDENTITY_FILE), JSON.stringify(identity, null, 2) + '\n', 0o600);
    return { identity, root: root && first ? { version: root.version, fingerprint: rootFingerprint(first) } : null };
  } catch (err) {
    rmSync(keyFile, { force: true });
    rmSync(join(opts.stateDir, TRUST_FILE), { force: true });
    throw err;
  }
}

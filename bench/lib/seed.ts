// Registers N agents straight into a new hub database, as enrollment would
// have left them (same INSERT as Store.enroll), and writes their keys to a
// file the client workers read. Enrolling 10,000 agents over HTTP would
// measure enrollment, not connections; the handshakes stay real.
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { newId } from '../../hub/store/fleet.js';
import { SqliteDb } from '../../hub/store/sqlite.js';
import { Store, openStore } from '../../hub/store/store.js';

export interface BenchAgentKey {
  id: string;
  tenant: string;
  name: string;
  /** base64 raw 32-byte public key, as the hub stores it. */
  publicKey: string;
  /** base64 32-byte Ed25519 seed (private key). */
  seed: string;
}

/**
 * Ed25519 key pair made with OpenSSL (fast), in the raw forms Ferry uses: the
 * last 32 bytes of the SPKI and PKCS#8 DER encodings. (Not JWK: on Node
 * 20.20 exporting an Ed25519 private key as JWK in a loop deadlocks now and
 * then.)
 */
export function rawKeyPair(): { publicKey: Buffer; seed: Buffer } {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const spki = publicKey.export({ format: 'der', type: 'spki' });
  const pkcs8 = privateKey.export({ format: 'der', type: 'pkcs8' });
  return { publicKey: spki.subarray(spki.length - 32), seed: pkcs8.subarray(pkcs8.length - 32) };
}

/** tweetnacl's 64-byte secret key (seed || public key) for a bench key. */
export function secretKeyOf(k: BenchAgentKey): Uint8Array {
  return new Uint8Array(Buffer.concat([Buffer.from(k.seed, 'base64'), Buffer.from(k.publicKey, 'base64')]));
}

/**
 * Seeds agents and returns their keys and an admin API token: into the sqlite
 * file in `dataDir`, or into the PostgreSQL database `database` (the hub key
 * stays in `dataDir` either way).
 */
export async function seedHub(dataDir: string, keysFile: string, agents: number, tenants: number, database?: string): Promise<{ keys: BenchAgentKey[]; token: string }> {
  const store = database ? await openStore({ dataDir, database }, { create: true }) : new Store(SqliteDb.open(dataDir, { create: true }));
  try {
    const now = Date.now();
    const token = await store.tx(async () => {
      const u = await store.people.createUser({ name: 'bench-admin', kind: 'person', vendorRole: 'admin', passwordHash: null }, null, now);
      return (await store.people.createToken({ userId: u.id, name: 'bench-admin', role: 'admin', tenants: null, expiresAt: null }, null, now)).token;
    });
    const tenantRows: { id: string; name: string }[] = [];
    for (let i = 0; i < tenants; i++) tenantRows.push(await store.tx(() => store.fleet.createTenant(`bench-${String(i).padStart(3, '0')}`, now)));
    const keys: BenchAgentKey[] = [];
    for (let i = 0; i < agents; i++) {
      const t = tenantRows[i % tenants]!;
      const { publicKey, seed } = rawKeyPair();
      keys.push({ id: newId('agt'), tenant: t.name, name: `bench-${String(i).padStart(5, '0')}`, publicKey: publicKey.toString('base64'), seed: seed.toString('base64') });
    }
    const tenantId = new Map(tenantRows.map((t) => [t.name, t.id]));
    // The same INSERT as Fleet.enroll, 500 rows a statement, through the store's own driver (either backend).
    for (let i = 0; i < keys.length; i += 500) {
      const part = keys.slice(i, i + 500);
      await store.tx(() =>
        store.db.run(
          `INSERT INTO agents (id, tenant_id, name, public_key, labels, enrolled_at) VALUES ${part.map(() => '(?, ?, ?, ?, ?, ?)').join(', ')}`,
          part.flatMap((k) => [k.id, tenantId.get(k.tenant)!, k.name, k.publicKey, '{}', now]),
        ),
      );
    }
    writeFileSync(keysFile, JSON.stringify(keys), { mode: 0o600 });
    return { keys, token };
  } finally {
    await store.close();
  }
}

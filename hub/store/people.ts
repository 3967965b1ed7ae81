// People, their grants, their API tokens and their console sessions. Token
// and session secrets are stored only as SHA-256 hashes (random, high
// entropy); passwords as scrypt hashes (hub/http/passwords.ts).
import { FerryError } from '../../shared/errors.js';
import type { Role, TenantRole, VendorRole } from '../../shared/roles.js';
import { inList, type Db } from './db.js';
import { hashSecret, newId, newSecret } from './fleet.js';

export const USER_NAME = /^[a-z0-9][a-z0-9._@-]{0,62}$/;

export interface UserRecord {
  id: string;
  name: string;
  kind: 'person' | 'service';
  vendorRole: VendorRole | null;
  /** tenant name -> role */
  grants: Record<string, TenantRole>;
  hasPassword: boolean;
  disabledAt: number | null;
  lockedUntil: number | null;
  createdAt: number;
}

interface UserRow {
  id: string;
  name: string;
  kind: 'person' | 'service';
  vendor_role: VendorRole | null;
  password_hash: string | null;
  disabled_at: number | null;
  locked_until: number | null;
  created_at: number;
}

export interface TokenRecord {
  id: string;
  userId: string;
  userName: string;
  name: string;
  role: Role;
  /** Tenant names the token is limited to; null: all its person may see. */
  tenants: string[] | null;
  createdAt: number;
  expiresAt: number | null;
  revokedAt: number | null;
  lastUsedAt: number | null;
}

interface TokenRow {
  id: string;
  user_id: string;
  user_name: string;
  name: string;
  role: Role;
  tenants: string | null;
  created_at: number;
  expires_at: number | null;
  revoked_at: number | null;
  last_used_at: number | null;
}

const toToken = (r: TokenRow): TokenRecord => ({
  id: r.id,
  userId: r.user_id,
  userName: r.user_name,
  name: r.name,
  role: r.role,
  tenants: r.tenants ? (JSON.parse(r.tenants) as string[]) : null,
  createdAt: r.created_at,
  expiresAt: r.expires_at,
  revokedAt: r.revoked_at,
  lastUsedAt: r.last_used_at,
});

const TOKEN_SELECT = `SELECT k.id, k.user_id, u.name AS user_name, k.name, k.role, k.tenants, k.created_at, k.expires_at, k.revoked_at, k.last_used_at
  FROM api_tokens k JOIN users u ON u.id = k.user_id`;

export interface SessionRecord {
  userId: string;
  csrf: string;
  createdAt: number;
  lastSeenAt: number;
  expiresAt: number;
}

export class People {
  constructor(private readonly db: Db) {}

  // ---- users ------------------------------------------------------------------

  async createUser(input: { name: string; kind: 'person' | 'service'; vendorRole: VendorRole | null; passwordHash: string | null }, by: string | null, now: number): Promise<UserRecord> {
    if (!USER_NAME.test(input.name)) throw new FerryError('FERRY_E_VALIDATION', `user name ${JSON.stringify(input.name)}: lowercase letters, digits and . _ @ -, up to 63`);
    if (await this.findUser(input.name)) throw new FerryError('FERRY_E_CONFLICT', `user ${input.name}`);
    const id = newId('usr');
    await this.db.run('INSERT INTO users (id, name, kind, vendor_role, password_hash, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?)', [
      id,
      input.name,
      input.kind,
      input.vendorRole,
      input.passwordHash,
      now,
      by,
    ]);
    return this.user(input.name);
  }

  private async withGrants(r: UserRow | undefined): Promise<UserRecord | undefined> {
    if (!r) return undefined;
    const grants = await this.db.all<{ tenant: string; role: TenantRole }>(
      'SELECT t.name AS tenant, g.role FROM user_grants g JOIN tenants t ON t.id = g.tenant_id WHERE g.user_id = ? ORDER BY t.name',
      [r.id],
    );
    return {
      id: r.id,
      name: r.name,
      kind: r.kind,
      vendorRole: r.vendor_role,
      grants: Object.fromEntries(grants.map((g) => [g.tenant, g.role])),
      hasPassword: r.password_hash !== null,
      disabledAt: r.disabled_at,
      lockedUntil: r.locked_until,
      createdAt: r.created_at,
    };
  }

  async findUser(name: string): Promise<UserRecord | undefined> {
    return this.withGrants(await this.db.get<UserRow>('SELECT * FROM users WHERE name = ?', [name]));
  }

  async userById(id: string): Promise<UserRecord | undefined> {
    return this.withGrants(await this.db.get<UserRow>('SELECT * FROM users WHERE id = ?', [id]));
  }

  async user(name: string): Promise<UserRecord> {
    const u = await this.findUser(name);
    if (!u) throw new FerryError('FERRY_E_NOT_FOUND', `user ${name}`);
    return u;
  }

  /** Users, optionally only those with a grant on one of `tenants`. */
  async listUsers(tenants: readonly string[] | null = null): Promise<UserRecord[]> {
    const rows =
      tenants === null
        ? await this.db.all<UserRow>('SELECT * FROM users ORDER BY name')
        : await this.db.all<UserRow>(
            `SELECT DISTINCT u.* FROM users u JOIN user_grants g ON g.user_id = u.id JOIN tenants t ON t.id = g.tenant_id WHERE t.name IN ${inList(tenants.length)} ORDER BY u.name`,
            [...tenants],
          );
    const out: UserRecord[] = [];
    for (const r of rows) out.push((await this.withGrants(r))!);
    return out;
  }

  async passwordHash(userId: string): Promise<string | null> {
    return (await this.db.get<{ password_hash: string | null }>('SELECT password_hash FROM users WHERE id = ?', [userId]))?.password_hash ?? null;
  }

  async setPassword(userId: string, hash: string | null): Promise<void> {
    await this.db.run('UPDATE users SET password_hash = ?, locked_until = NULL WHERE id = ?', [hash, userId]);
  }

  async setVendorRole(userId: string, role: VendorRole | null): Promise<void> {
    await this.db.run('UPDATE users SET vendor_role = ? WHERE id = ?', [role, userId]);
  }

  async setDisabled(userId: string, at: number | null): Promise<void> {
    await this.db.run('UPDATE users SET disabled_at = ? WHERE id = ?', [at, userId]);
  }

  async lockUntil(userId: string, until: number | null): Promise<void> {
    await this.db.run('UPDATE users SET locked_until = ? WHERE id = ?', [until, userId]);
  }

  async grant(userId: string, tenantId: string, role: TenantRole, by: string | null, now: number): Promise<void> {
    await this.db.run(
      'INSERT INTO user_grants (user_id, tenant_id, role, created_at, created_by) VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, tenant_id) DO UPDATE SET role = excluded.role, created_at = excluded.created_at, created_by = excluded.created_by',
      [userId, tenantId, role, now, by],
    );
  }

  async ungrant(userId: string, tenantId: string): Promise<boolean> {
    return (await this.db.run('DELETE FROM user_grants WHERE user_id = ? AND tenant_id = ?', [userId, tenantId])) > 0;
  }

  // ---- API tokens -----------------------------------------------------------------

  async createToken(input: { userId: string; name: string; role: Role; tenants: string[] | null; expiresAt: number | null }, by: string | null, now: number): Promise<{ id: string; token: string }> {
    const token = newSecret('ferry_api');
    const id = newId('tok');
    await this.db.run('INSERT INTO api_tokens (id, user_id, name, role, tenants, token_hash, created_at, created_by, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)', [
      id,
      input.userId,
      input.name,
      input.role,
      input.tenants ? JSON.stringify(input.tenants) : null,
      hashSecret(token),
      now,
      by,
      input.expiresAt,
    ]);
    return { id, token };
  }

  /** The token behind a secret, if it exists (revoked and expired ones too: the caller decides). */
  async tokenBySecret(secret: string): Promise<TokenRecord | undefined> {
    const r = await this.db.get<TokenRow>(`${TOKEN_SELECT} WHERE k.token_hash = ?`, [hashSecret(secret)]);
    return r ? toToken(r) : undefined;
  }

  async token(id: string): Promise<TokenRecord | undefined> {
    const r = await this.db.get<TokenRow>(`${TOKEN_SELECT} WHERE k.id = ?`, [id]);
    return r ? toToken(r) : undefined;
  }

  async listTokens(userId: string | null = null): Promise<TokenRecord[]> {
    const rows = userId ? await this.db.all<TokenRow>(`${TOKEN_SELECT} WHERE k.user_id = ? ORDER BY k.created_at, k.id`, [userId]) : await this.db.all<TokenRow>(`${TOKEN_SELECT} ORDER BY k.created_at, k.id`);
    return rows.map(toToken);
  }

  async revokeToken(id: string, now: number): Promise<boolean> {
    return (await this.db.run('UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL', [now, id])) === 1;
  }

  async revokeTokensOf(userId: string, now: number): Promise<number> {
    return this.db.run('UPDATE api_tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL', [now, userId]);
  }

  /** Last use, written in batches (hub/http/auth.ts). */
  async touchTokens(uses: ReadonlyMap<string, number>): Promise<void> {
    if (!uses.size) return;
    await this.db.tx(async () => {
      for (const [id, at] of uses) await this.db.run('UPDATE api_tokens SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)', [at, id, at]);
    });
  }

  // ---- sessions ------------------------------------------------------------------

  async createSession(userId: string, csrf: string, now: number, expiresAt: number): Promise<string> {
    const secret = newSecret('ferry_ses');
    await this.db.run('INSERT INTO sessions (id_hash, user_id, csrf, created_at, last_seen_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)', [hashSecret(secret), userId, csrf, now, now, expiresAt]);
    return secret;
  }

  async session(secret: string): Promise<SessionRecord | undefined> {
    const r = await this.db.get<{ user_id: string; csrf: string; created_at: number; last_seen_at: number; expires_at: number }>(
      'SELECT user_id, csrf, created_at, last_seen_at, expires_at FROM sessions WHERE id_hash = ?',
      [hashSecret(secret)],
    );
    return r ? { userId: r.user_id, csrf: r.csrf, createdAt: r.created_at, lastSeenAt: r.last_seen_at, expiresAt: r.expires_at } : undefined;
  }

  async touchSession(secret: string, now: number): Promise<void> {
    await this.db.run('UPDATE sessions SET last_seen_at = ? WHERE id_hash = ? AND last_seen_at < ?', [now, hashSecret(secret), now]);
  }

  async deleteSession(secret: string): Promise<boolean> {
    return (await this.db.run('DELETE FROM sessions WHERE id_hash = ?', [hashSecret(secret)])) > 0;
  }

  async deleteSessionsOf(userId: string): Promise<number> {
    return this.db.run('DELETE FROM sessions WHERE user_id = ?', [userId]);
  }

  /** Drops sessions past their absolute expiry or idle too long. */
  async pruneSessions(now: number, idleMs: number): Promise<number> {
    return this.db.run('DELETE FROM sessions WHERE expires_at <= ? OR last_seen_at <= ?', [now, now - idleMs]);
  }
}

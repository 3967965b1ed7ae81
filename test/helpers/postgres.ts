// A real PostgreSQL server for the store's tests (scripts/test-env.sh starts
// Debian's on 127.0.0.1:55432). Each test gets a database of its own,
// dropped afterwards. FERRY_TEST_POSTGRES_URL names another server (a
// superuser's URL: tests create and drop databases).
import { randomBytes } from 'node:crypto';
import type { TestContext } from 'node:test';
import postgres from 'postgres';

export const PG_ADMIN_URL = process.env.FERRY_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:55432/postgres';

export type Backend = 'sqlite' | 'postgres';

let available: Promise<boolean> | undefined;

export function postgresAvailable(): Promise<boolean> {
  available ??= (async () => {
    const sql = postgres(PG_ADMIN_URL, { max: 1, connect_timeout: 5, onnotice: () => {} });
    try {
      await sql`SELECT 1`;
      return true;
    } catch {
      return false;
    } finally {
      await sql.end({ timeout: 1 }).catch(() => {});
    }
  })();
  return available;
}

/**
 * The backends a store test runs on: both when PostgreSQL answers. In CI a
 * missing server is a failure, not a skip; elsewhere it says so loudly.
 */
export async function backends(): Promise<Backend[]> {
  if (await postgresAvailable()) return ['sqlite', 'postgres'];
  const why = `PostgreSQL does not answer at ${PG_ADMIN_URL.replace(/:[^:@/]*@/, ':***@')} (run scripts/test-env.sh, or set FERRY_TEST_POSTGRES_URL)`;
  if (process.env.CI) throw new Error(`${why}: CI runs every store test on PostgreSQL too`);
  process.stderr.write(`\n*** ${why}: running the store tests on sqlite only ***\n\n`);
  return ['sqlite'];
}

/**
 * What still uses a database (hubs started on it), closed before it is
 * dropped. By the database's name: a hub may reach it by another address (a
 * proxy in front of the server), and dropping it under a hub still running
 * leaves that hub retrying a database that is gone.
 */
const users = new Map<string, Set<() => Promise<void>>>();
const nameOf = (url: string) => new URL(url).pathname.slice(1);

export function usesDatabase(url: string, close: () => Promise<void>): void {
  let set = users.get(nameOf(url));
  if (!set) users.set(nameOf(url), (set = new Set()));
  set.add(close);
}

/** Closes every hub started on the database `url` names. */
export async function closeUsers(url: string): Promise<void> {
  for (const close of users.get(nameOf(url)) ?? []) await close();
  users.delete(nameOf(url));
}

/**
 * A new, empty database; with `t`, dropped after the test, once every hub
 * started on it (see `usesDatabase`) has closed.
 */
export async function freshDatabase(t: TestContext | null, prefix = 'ferry_t'): Promise<string> {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  const admin = postgres(PG_ADMIN_URL, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end({ timeout: 1 });
  }
  const u = new URL(PG_ADMIN_URL);
  u.pathname = `/${name}`;
  const url = u.toString();
  t?.after(async () => {
    await closeUsers(url);
    await dropDatabase(name);
  });
  return url;
}

export async function dropDatabase(name: string): Promise<void> {
  const admin = postgres(PG_ADMIN_URL, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  } finally {
    await admin.end({ timeout: 1 });
  }
}

// `ferry-hub migrate`: copies a (stopped) sqlite hub into an empty PostgreSQL
// database, table by table in one transaction, then checks every audit log
// arrived intact: each leaf hash matches its entry, and the Merkle root of
// each log is the same on both sides (and matches its newest checkpoint).
import { FerryError } from '../../shared/errors.js';
import { MerkleTree, leafHash } from '../../shared/merkle.js';
import type { Param } from './db.js';
import { openStore, type Store, type StoreLocation } from './store.js';

/** In an order that satisfies every foreign key. Agents' answers, nonces and figures are transient and not copied. */
const TABLES = [
  'tenants',
  'users',
  'user_grants',
  'sessions',
  'api_tokens',
  'enrollment_tokens',
  'agents',
  'trust_roots',
  'releases',
  'release_signatures',
  'release_tenants',
  'directives',
  'audit_entries',
  'audit_personal',
  'audit_checkpoints',
  'audit_cosignatures',
  'rollouts',
  'rollout_targets',
  'rollout_events',
  'chat_transports',
  'chat_rooms',
  'chat_accounts',
  'chat_policies',
  'chat_locks',
  'chat_messages',
  'checks',
  'check_events',
  'alerts',
  'alert_outbox',
  'operations',
  'agent_bundles',
  'agent_bundle_tenants',
  'agent_bundle_signatures',
  'agent_bundle_chunks',
  'agent_versions',
] as const;

const BATCH = 500;

export interface MigrateResult {
  tables: Record<string, number>;
  audit: { log: string; size: number; root: string }[];
}

export async function migrateStore(from: StoreLocation, to: StoreLocation, progress: (msg: string) => void = () => {}): Promise<MigrateResult> {
  if (!to.database) throw new FerryError('FERRY_E_CONFIG_INVALID', '--to takes a postgres:// URL');
  const src = await openStore(from);
  if (src.backend !== 'sqlite') {
    await src.close();
    throw new FerryError('FERRY_E_CONFIG_INVALID', 'migrate copies from the sqlite hub in --data-dir');
  }
  let dst: Store;
  try {
    dst = await openStore(to, { create: true });
  } catch (err) {
    await src.close();
    throw err;
  }
  try {
    const tables: Record<string, number> = {};
    await dst.tx(async () => {
      for (const t of TABLES) {
        tables[t] = await copyTable(src, dst, t);
        progress(`copied ${t}: ${tables[t]}`);
      }
      // Identity columns carry on after the copied ids.
      await dst.db.run("SELECT setval(pg_get_serial_sequence('rollouts', 'num'), coalesce((SELECT max(num) FROM rollouts), 0) + 1, false)");
      await dst.db.run("SELECT setval(pg_get_serial_sequence('rollout_events', 'id'), coalesce((SELECT max(id) FROM rollout_events), 0) + 1, false)");
      await dst.db.run("SELECT setval(pg_get_serial_sequence('chat_locks', 'num'), coalesce((SELECT max(num) FROM chat_locks), 0) + 1, false)");
      await dst.db.run("SELECT setval(pg_get_serial_sequence('chat_messages', 'id'), coalesce((SELECT max(id) FROM chat_messages), 0) + 1, false)");
      await dst.db.run("SELECT setval(pg_get_serial_sequence('alert_outbox', 'id'), coalesce((SELECT max(id) FROM alert_outbox), 0) + 1, false)");
    });
    const audit = [];
    for (const log of await src.audit.logs()) {
      const a = await treeOf(src, log);
      const b = await treeOf(dst, log);
      if (a.size !== b.size || !a.root.equals(b.root)) throw new FerryError('FERRY_E_AUDIT_INCONSISTENT', `log ${log}: ${a.size} entries here, ${b.size} there, roots differ`);
      const cp = await dst.audit.latestCheckpoint(log);
      if (cp && cp.size <= b.size && !b.tree.root(cp.size).equals(cp.root)) throw new FerryError('FERRY_E_AUDIT_INCONSISTENT', `log ${log}: checkpoint at ${cp.size} does not match the copied entries`);
      audit.push({ log, size: b.size, root: b.root.toString('hex') });
      progress(`verified audit log ${log}: ${b.size} entries`);
    }
    return { tables, audit };
  } finally {
    await dst.close();
    await src.close();
  }
}

async function copyTable(src: Store, dst: Store, table: string): Promise<number> {
  const cols = (await src.db.all<{ name: string }>(`SELECT name FROM pragma_table_info('${table}')`)).map((c) => c.name);
  if (!cols.length) return 0;
  let n = 0;
  const batch = table === 'agent_bundle_chunks' ? 4 : BATCH; // rows of 1 MiB
  for (let offset = 0; ; offset += batch) {
    const rows = await src.db.values<Param[]>(`SELECT ${cols.join(', ')} FROM ${table} ORDER BY rowid LIMIT ? OFFSET ?`, [batch, offset]);
    if (!rows.length) return n;
    const one = `(${cols.map(() => '?').join(', ')})`;
    await dst.db.run(`INSERT INTO ${table} (${cols.join(', ')}) VALUES ${rows.map(() => one).join(', ')}`, rows.flat());
    n += rows.length;
    if (rows.length < batch) return n;
  }
}

/** A log's tree from its stored rows, checking each leaf hash against its entry. */
async function treeOf(store: Store, log: string): Promise<{ size: number; root: Buffer; tree: MerkleTree }> {
  const tree = new MerkleTree();
  for (let from = 0; ; ) {
    const rows = await store.audit.entries(log, { from, since: 0, limit: 5000 });
    for (const r of rows) {
      if (r.idx !== tree.size) throw new FerryError('FERRY_E_AUDIT_INCONSISTENT', `log ${log}: entry ${tree.size} is missing`);
      if (!leafHash(r.data).equals(r.leaf_hash)) throw new FerryError('FERRY_E_AUDIT_INCONSISTENT', `log ${log}: entry ${r.idx} does not match its leaf hash`);
      tree.append(r.leaf_hash);
    }
    if (rows.length < 5000) break;
    from = rows[rows.length - 1]!.idx + 1;
  }
  return { size: tree.size, root: tree.root(), tree };
}

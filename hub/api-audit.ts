// API routes for the audit logs: listing entries, exporting a log for
// `ferry audit verify`, proofs, and forcing a checkpoint.
import { LOG_NAME } from '../shared/audit.js';
import { FerryError } from '../shared/errors.js';
import { encodePublicKey } from '../shared/keys.js';
import { iso, type ApiContext, type RouteFn } from './api.js';

function logName(raw: string | undefined): string {
  if (!raw || !LOG_NAME.test(raw)) throw new FerryError('FERRY_E_VALIDATION', `log ${JSON.stringify(raw)}: a tenant name or _hub`);
  return raw;
}

const intParam = (v: string | null, what: string, dflt: number) => {
  if (v === null || v === '') return dflt;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new FerryError('FERRY_E_VALIDATION', `${what} must be a whole number`);
  return n;
};

export function auditRoutes(route: RouteFn, ctx: ApiContext): void {
  route('GET', '/v1/audit', 'viewer', () => ({
    hubKey: encodePublicKey(ctx.audit.hubPublicKey),
    logs: ctx.audit.logs().map((log) => ({ log, size: ctx.audit.size(log), checkpoint: ctx.audit.latestCheckpoint(log)?.size ?? null })),
  }));

  route('GET', '/v1/audit/:log/entries', 'viewer', ({ params, query }) => {
    const log = logName(params.log);
    const since = query.get('since');
    const sinceMs = since ? Date.parse(since) : 0;
    if (Number.isNaN(sinceMs)) throw new FerryError('FERRY_E_VALIDATION', 'since: an ISO time');
    const rows = ctx.audit.entries(log, { since: sinceMs, from: intParam(query.get('from'), 'from', 0), limit: Math.min(intParam(query.get('limit'), 'limit', 500), 5000) });
    return {
      log,
      size: ctx.audit.size(log),
      entries: rows.map((r) => ({ ...r.entry, at: iso(r.at), personalValues: ctx.audit.personalValues(log, r.index) })),
    };
  });

  // NDJSON: one line per checkpoint (with cosignatures and agents' public keys), then one per entry, as stored.
  route('GET', '/v1/audit/:log/export', 'viewer', ({ params, res }) => {
    const log = logName(params.log);
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
    const keys = new Map(ctx.store.listAgents().map((a) => [a.id, a.publicKey]));
    for (const cp of ctx.audit.checkpoints(log)) {
      res.write(JSON.stringify({ kind: 'checkpoint', envelope: cp.envelope, cosignatures: cp.cosignatures.map((c) => ({ agentId: c.agentId, publicKey: keys.get(c.agentId) ?? null, sig: c.sig })) }) + '\n');
    }
    let buf = '';
    for (const e of ctx.audit.scan(log)) {
      buf += JSON.stringify({ kind: 'entry', index: e.index, data: e.data.toString('base64'), leafHash: e.leafHash.toString('hex') }) + '\n';
      if (buf.length > 256 * 1024) {
        res.write(buf);
        buf = '';
      }
    }
    res.end(buf);
  });

  route('GET', '/v1/audit/:log/proof', 'viewer', ({ params, query }) => {
    const log = logName(params.log);
    const tree = ctx.audit.tree(log);
    const size = intParam(query.get('size'), 'size', tree.size);
    if (size > tree.size || size < 1) throw new FerryError('FERRY_E_VALIDATION', `size must be 1..${tree.size}`);
    const index = query.get('index');
    const from = query.get('from');
    if (index !== null) {
      const i = intParam(index, 'index', 0);
      if (i >= size) throw new FerryError('FERRY_E_VALIDATION', `index must be below ${size}`);
      return { log, index: i, size, root: tree.root(size).toString('hex'), proof: tree.inclusionProof(i, size).map((h) => h.toString('hex')) };
    }
    const m = intParam(from, 'from', 1);
    if (m < 1 || m > size) throw new FerryError('FERRY_E_VALIDATION', `from must be 1..${size}`);
    return { log, from: m, size, root: tree.root(size).toString('hex'), proof: tree.consistencyProof(m, size).map((h) => h.toString('hex')) };
  });

  route('POST', '/v1/audit/:log/checkpoint', 'admin', ({ params }) => {
    const cp = ctx.witness.checkpoint(logName(params.log));
    return cp ? { log: cp.log, size: cp.size, root: cp.root.toString('hex'), at: iso(cp.at) } : { log: params.log, size: 0 };
  });
}

// The audit logs: which the person may read, and one log's entries (newest
// first, filtered) with the badge the browser computes (browser/audit-check.ts)
// and the evidence pack (the API's export).
import { z } from 'zod';
import { HUB_LOG } from '../../../shared/audit.js';
import { encodePublicKey } from '../../../shared/keys.js';
import { listScope } from '../../http/access.js';
import { can } from '../../http/principal.js';
import { logOf } from '../../http/routes/audit.js';
import type { ConsoleRoute } from '../console.js';
import { shellFor, type ConsoleContext } from '../context.js';
import { auditRow, type AuditRow } from '../models.js';
import { auditIndexPage, auditLogPage } from '../views/audit.js';

const PAGE = 50;
/** A filtered page reads at most this many entries back before it stops looking. */
const SCAN = 5000;
const text = (max: number) => z.preprocess((v) => (v === '' ? undefined : v), z.string().max(max).optional());
const AuditQuery = z.strictObject({
  action: text(64),
  outcome: z.preprocess((v) => (v === '' ? undefined : v), z.enum(['ok', 'refused', 'failed']).optional()),
  q: text(100),
  before: z.preprocess((v) => (v === '' ? undefined : v), z.string().regex(/^\d{1,15}$/, 'an entry index').transform(Number).optional()),
});

export function auditPages(route: ConsoleRoute, c: ConsoleContext): void {
  route({
    method: 'GET',
    url: '/audit',
    access: { list: 'read' },
    handler: async ({ principal }) => {
      const scope = await listScope(c.store, principal, 'read');
      const vendor = can(principal, 'hub.read', 'vendor');
      const logs = [];
      for (const log of await c.audit.logs()) {
        if (log === HUB_LOG ? !vendor : scope !== null && !scope.includes(log)) continue;
        logs.push({ log, size: await c.audit.size(log), checkpoint: (await c.audit.latestCheckpoint(log))?.size ?? null });
      }
      return auditIndexPage(shellFor(c, principal, 'Audit', 'audit'), { logs });
    },
  });

  route({
    method: 'GET',
    url: '/audit/:log',
    access: { tenant: 'read', vendor: 'hub.read', of: logOf(c) },
    query: AuditQuery,
    handler: async ({ params, query, principal }) => {
      const log = params.log!;
      const size = await c.audit.size(log);
      const needle = query.q?.toLowerCase();
      const rows: AuditRow[] = [];
      let cursor = Math.min(query.before ?? size, size);
      let scanned = 0;
      while (cursor > 0 && rows.length < PAGE && scanned < SCAN) {
        const from = Math.max(0, cursor - 500);
        const chunk = await c.audit.entries(log, { from, limit: cursor - from });
        const personal = await c.store.audit.personalRange(log, from, cursor);
        scanned += chunk.length;
        for (let i = chunk.length - 1; i >= 0 && rows.length < PAGE; i--) {
          const e = chunk[i]!;
          const row = auditRow({ ...e.entry, index: e.index }, personal.get(e.index));
          if (query.action && !row.action.startsWith(query.action)) continue;
          if (query.outcome && row.outcome !== query.outcome) continue;
          if (needle && !`${row.action} ${row.actor} ${row.target ?? ''} ${row.details} ${e.entry.agents.join(' ')}`.toLowerCase().includes(needle)) continue;
          rows.push(row);
          cursor = e.index;
        }
        if (rows.length < PAGE) cursor = from;
      }
      const cp = await c.audit.latestCheckpoint(log);
      const qs = new URLSearchParams();
      for (const k of ['action', 'outcome', 'q'] as const) if (query[k]) qs.set(k, query[k]!);
      return auditLogPage(shellFor(c, principal, `Audit ${log}`, 'audit', { assets: { ...shellFor(c, null, '', null).assets, audit: c.assets.url('audit-check.js') } }), {
        now: c.now(),
        log,
        size,
        checkpoint: cp ? { size: cp.size, at: new Date(Number(cp.at)).toISOString(), cosigners: cp.cosignatures.length } : null,
        filter: { action: query.action ?? '', outcome: query.outcome ?? '', q: query.q ?? '' },
        query: qs.toString(),
        rows,
        older: cursor > 0 ? cursor : null,
        hubKey: encodePublicKey(c.audit.hubPublicKey),
        canCheckpoint: log === HUB_LOG ? can(principal, 'audit.checkpoint', 'vendor') : can(principal, 'trust.manage', log),
      });
    },
  });
}

import type { AuditRow } from '../models.js';
import { Empty, Pill, Time } from './bits.js';
import { page, type Shell } from './layout.js';

export function auditIndexPage(shell: Shell, m: { logs: { log: string; size: number; checkpoint: number | null }[] }): string {
  return page(
    shell,
    <>
      <h1>Audit</h1>
      <p>Every operation is appended to its tenant's tamper-evident log; the hub signs checkpoints and the tenant's agents cosign them.</p>
      {m.logs.length ? (
        <table>
          <caption class="sr-only">Audit logs</caption>
          <thead>
            <tr>
              <th scope="col">Log</th>
              <th scope="col">Entries</th>
              <th scope="col">Latest checkpoint</th>
            </tr>
          </thead>
          <tbody>
            {m.logs.map((l) => (
              <tr>
                <th scope="row">
                  <a href={`/audit/${encodeURIComponent(l.log)}`}>{l.log === '_hub' ? '_hub (the vendor\'s own)' : l.log}</a>
                </th>
                <td>{l.size}</td>
                <td>{l.checkpoint ?? <span class="muted">none yet</span>}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <Empty>No audit log to show.</Empty>
      )}
    </>,
  );
}

export interface AuditLogModel {
  now: number;
  log: string;
  size: number;
  checkpoint: { size: number; at: string; cosigners: number } | null;
  filter: { action: string; outcome: string; q: string };
  query: string;
  rows: AuditRow[];
  /** The `before` of the next (older) page, if any. */
  older: number | null;
  canCheckpoint: boolean;
  /** The hub's public key (base64), for the auditor's command line. */
  hubKey: string;
}

export function auditLogPage(shell: Shell, m: AuditLogModel): string {
  const exportName = `ferry-audit-${m.log}-${m.size}.ndjson`;
  return page(
    shell,
    <>
      <nav aria-label="Breadcrumb" class="crumbs">
        <a href="/audit">Audit</a> / <span>{m.log}</span>
      </nav>
      <h1>Audit log {m.log}</h1>
      <section class="card" aria-labelledby="verify-title">
        <h2 id="verify-title">Verification</h2>
        <p id="audit-badge" class="badge busy" data-log={m.log} data-result="pending" role="status" aria-live="polite">
          Checking the log in this browser needs JavaScript.
        </p>
        <ul id="audit-badge-details" class="small" hidden></ul>
        <p class="small">
          {m.size} entries;{' '}
          {m.checkpoint ? (
            <>
              latest checkpoint at size {m.checkpoint.size}, signed <Time iso={m.checkpoint.at} now={m.now} />, cosigned by {m.checkpoint.cosigners} agent{m.checkpoint.cosigners === 1 ? '' : 's'}
            </>
          ) : (
            'no checkpoint yet'
          )}
          .
        </p>
        <p>
          <a class="button" href={`/v1/audit/${encodeURIComponent(m.log)}/export`} download={exportName}>
            Download the evidence pack
          </a>{' '}
          <span class="muted small">
            entries, checkpoints and agents' cosignatures as NDJSON; an auditor checks it, asking nothing of the hub, with{' '}
            <code class="command">
              ferry audit verify --tenant {m.log} --file {exportName} --hub-key {m.hubKey}
            </code>{' '}
            (compare the key with the one the tenant's trust root names)
          </span>
        </p>
      </section>
      <form class="filters" method="get" action={`/audit/${encodeURIComponent(m.log)}`} role="search" aria-label="Filter entries">
        <div class="field">
          <label for="a-action">Action</label>
          <input id="a-action" name="action" value={m.filter.action} placeholder="rollout." maxLength={64} />
        </div>
        <div class="field">
          <label for="a-outcome">Outcome</label>
          <select id="a-outcome" name="outcome">
            {['', 'ok', 'refused', 'failed'].map((o) => (
              <option value={o} selected={m.filter.outcome === o}>
                {o || 'any'}
              </option>
            ))}
          </select>
        </div>
        <div class="field grow">
          <label for="a-q">Contains</label>
          <input id="a-q" name="q" type="search" value={m.filter.q} placeholder="agent id, person, release…" maxLength={100} />
        </div>
        <button type="submit">Filter</button>
      </form>
      {m.rows.length ? (
        <AuditTable rows={m.rows} now={m.now} log={null} />
      ) : (
        <Empty>No entry matches.</Empty>
      )}
      {m.older !== null ? (
        <nav class="pager" aria-label="Pages">
          <a href={`/audit/${encodeURIComponent(m.log)}?${m.query ? `${m.query}&` : ''}before=${m.older}`} rel="next">
            Older entries
          </a>
        </nav>
      ) : null}
    </>,
  );
}

/** Entries newest first; `log`: link each index to its place in that log (from another page). */
export function AuditTable({ rows, now, log }: { rows: AuditRow[]; now: number; log: string | null }) {
  return (
    <div class="table-wrap">
      <table class="audit">
        <caption class="sr-only">Entries, newest first</caption>
        <thead>
          <tr>
            <th scope="col">#</th>
            <th scope="col">When</th>
            <th scope="col">Action</th>
            <th scope="col">Who</th>
            <th scope="col">From</th>
            <th scope="col">On</th>
            <th scope="col">Details</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((e) => (
            <tr data-index={e.index}>
              <th scope="row">{log ? <a href={`/audit/${encodeURIComponent(log)}?before=${e.index + 1}`}>{e.index}</a> : e.index}</th>
              <td>
                <Time iso={e.at} now={now} />
              </td>
              <td>
                <code>{e.action}</code> {e.outcome !== 'ok' ? <Pill state={e.outcome} /> : null}
              </td>
              <td>{e.actor}</td>
              <td>{e.surface}</td>
              <td>{e.target ?? ''}</td>
              <td class="small details">{e.details}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

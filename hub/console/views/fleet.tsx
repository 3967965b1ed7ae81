import type { AgentRow } from '../models.js';
import { Empty, Labels, Pager, Pill, Since, Time } from './bits.js';
import { page, type Shell } from './layout.js';

export interface FleetModel {
  now: number;
  filter: { tenant: string; state: string; label: string; stack: string; version: string; q: string };
  /** The query string of the filters (no page), for links and live refresh. */
  query: string;
  tenants: string[];
  versions: string[];
  counts: { all: number; connected: number; offline: number; revoked: number };
  total: number;
  page: number;
  pages: number;
  rows: AgentRow[];
  canEnroll: boolean;
}

const withState = (m: FleetModel, state: string) => {
  const q = new URLSearchParams(m.query);
  if (state) q.set('state', state);
  else q.delete('state');
  const s = q.toString();
  return s ? `/fleet?${s}` : '/fleet';
};

export function FleetResults({ m }: { m: FleetModel }) {
  const self = `/fleet${m.query ? `?${m.query}` : ''}${m.page > 1 ? `${m.query ? '&' : '?'}page=${m.page}` : ''}`;
  return (
    <section
      id="fleet-results"
      aria-labelledby="fleet-count"
      hx-get={self}
      hx-trigger="sse:transition, sse:gap, every 15s"
      hx-select="#fleet-results > *"
      hx-target="this"
      hx-swap="innerHTML"
      hx-sync="this:queue last"
      hx-push-url="false"
    >
      <ul class="counts" aria-label="Agents by state">
        {(['', 'connected', 'offline', 'revoked'] as const).map((s) => (
          <li>
            <a href={withState(m, s)} aria-current={m.filter.state === s ? 'true' : undefined} class={`count ${s || 'all'}`}>
              <strong>{s ? m.counts[s] : m.counts.all}</strong> {s || 'all'}
            </a>
          </li>
        ))}
      </ul>
      <p id="fleet-count" class="muted">
        {m.total === 0 ? 'No agent matches.' : `${m.total} agent${m.total === 1 ? '' : 's'} match; showing ${m.rows.length}.`}
      </p>
      {m.rows.length === 0 ? (
        <Empty>{m.counts.all === 0 && !m.query ? 'No agents yet. Enroll one to see it here.' : 'Nothing matches these filters.'}</Empty>
      ) : (
        <div class="table-wrap">
          <table class="fleet">
            <caption class="sr-only">Agents</caption>
            <thead>
              <tr>
                <th scope="col">Agent</th>
                <th scope="col">Tenant</th>
                <th scope="col">Connection</th>
                <th scope="col">Version</th>
                <th scope="col">Host</th>
                <th scope="col">Labels</th>
                <th scope="col">Runs</th>
                <th scope="col">Health</th>
              </tr>
            </thead>
            <tbody>
              {m.rows.map((a) => (
                <tr data-agent={a.id}>
                  <th scope="row">
                    <a href={`/agents/${encodeURIComponent(a.id)}`}>{a.name}</a>
                    <div class="muted small">
                      <code>{a.id}</code>
                    </div>
                  </th>
                  <td>{a.tenant}</td>
                  <td>
                    <Pill state={a.state} />
                    <div class="small">{a.state === 'offline' ? a.since ? <>since <Time iso={a.since} now={m.now} /></> : <span class="muted">never connected</span> : a.state === 'connected' ? <>for <Since iso={a.since} now={m.now} /></> : <Time iso={a.since} now={m.now} />}</div>
                  </td>
                  <td>{a.version ?? <span class="muted">—</span>}</td>
                  <td>
                    {a.host ?? <span class="muted">—</span>}
                    <div class="muted small">{[a.os, a.docker].filter(Boolean).join(' · ')}</div>
                  </td>
                  <td>
                    <Labels labels={a.labels} />
                  </td>
                  <td>
                    {a.runs.length ? (
                      <ul class="runs">
                        {a.runs.map((r) => (
                          <li>
                            <code>
                              {r.stack}@{r.version}
                            </code>{' '}
                            {r.state !== 'applied' ? <Pill state={r.state} /> : null}
                          </li>
                        ))}
                      </ul>
                    ) : (
                      <span class="muted">nothing reported</span>
                    )}
                  </td>
                  <td>
                    <Pill state={a.health} />
                    {a.alarms ? <div class="small bad-text">{a.alarms} alarm{a.alarms === 1 ? '' : 's'}</div> : null}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <Pager path="/fleet" base={m.query} page={m.page} pages={m.pages} />
    </section>
  );
}

export function fleetPage(shell: Shell, m: FleetModel): string {
  return page(
    shell,
    <>
      <div class="title-row">
        <h1>Fleet</h1>
        {m.canEnroll ? (
          <a class="button" href="/enroll">
            Enroll an agent
          </a>
        ) : null}
      </div>
      <form class="filters" method="get" action="/fleet" role="search" aria-label="Filter agents" hx-get="/fleet" hx-trigger="submit, change" hx-target="#fleet-results" hx-select="#fleet-results" hx-swap="outerHTML" hx-push-url="true">
        {m.tenants.length > 1 ? (
          <div class="field">
            <label for="f-tenant">Tenant</label>
            <select id="f-tenant" name="tenant">
              <option value="">all</option>
              {m.tenants.map((t) => (
                <option value={t} selected={m.filter.tenant === t}>
                  {t}
                </option>
              ))}
            </select>
          </div>
        ) : null}
        <div class="field">
          <label for="f-state">Connection</label>
          <select id="f-state" name="state">
            {['', 'connected', 'offline', 'revoked'].map((s) => (
              <option value={s} selected={m.filter.state === s}>
                {s || 'any'}
              </option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for="f-label">Label</label>
          <input id="f-label" name="label" value={m.filter.label} placeholder="env=prod" maxLength={130} />
        </div>
        <div class="field">
          <label for="f-stack">Stack</label>
          <input id="f-stack" name="stack" value={m.filter.stack} placeholder="stack name" maxLength={64} />
        </div>
        <div class="field">
          <label for="f-version">Agent version</label>
          <select id="f-version" name="version">
            <option value="">any</option>
            {m.versions.map((v) => (
              <option value={v} selected={m.filter.version === v}>
                {v}
              </option>
            ))}
          </select>
        </div>
        <div class="field grow">
          <label for="f-q">Search</label>
          <input id="f-q" name="q" type="search" value={m.filter.q} placeholder="name, id or host" maxLength={100} hx-get="/fleet" hx-trigger="input changed delay:300ms, search" hx-include="closest form" />
        </div>
        <button type="submit">Filter</button>
      </form>
      <FleetResults m={m} />
    </>,
  );
}

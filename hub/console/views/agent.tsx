import type { AgentRow, AuditRow, Running } from '../models.js';
import { AuditTable } from './audit.js';
import { ContainerCells, ContainerHeads, Digest, Empty, Labels, Pill, Since, Time } from './bits.js';
import { fragment, page, type Shell } from './layout.js';

export interface AgentModel {
  now: number;
  row: AgentRow;
  fingerprint: string;
  enrolledAt: string | null;
  remote: string | null;
  facts: { label: string; value: string }[];
  running: Running | null;
  accepted: { seq: number; acceptedAt: string | null; releases: { stack: string; version: string; digest: string; signers: string[]; threshold: string | null }[] } | null;
  directives: { seq: number; status: string; code: string | null; message: string | null; issuedAt: string | null; releases: string }[];
  alarms: { at: string; code: string; message: string }[];
  /** Drift the agent put back, newest first (from its audit entries: the hub keeps no other record of it). */
  drift: { at: string; steps: string }[];
  audit: AuditRow[];
  witness: { log: string; witnessed: number | null; latest: number | null };
  canManage: boolean;
}

export function LabelsSection({ m }: { m: Pick<AgentModel, 'row' | 'canManage'> }) {
  return (
    <section id="agent-labels" aria-labelledby="labels-title" class="card">
      <h2 id="labels-title">Labels</h2>
      <Labels labels={m.row.labels} />
      {m.canManage && m.row.state !== 'revoked' ? (
        <form class="inline-form" hx-post={`/agents/${encodeURIComponent(m.row.id)}/labels`} hx-target="#agent-labels" hx-swap="outerHTML">
          <div class="field">
            <label for="l-set">Set</label>
            <input id="l-set" name="set" placeholder="env=prod zone=dmz" maxLength={2000} />
          </div>
          <div class="field">
            <label for="l-remove">Remove</label>
            <input id="l-remove" name="remove" placeholder="old-key" maxLength={2000} />
          </div>
          <button type="submit">Save labels</button>
        </form>
      ) : null}
    </section>
  );
}

export function labelsFragment(m: Pick<AgentModel, 'row' | 'canManage'>): string {
  return fragment(<LabelsSection m={m} />);
}

function Stacks({ m }: { m: AgentModel }) {
  const r = m.running;
  if (!r || (!r.releases.length && !r.services.length)) return <Empty>The agent has reported nothing running yet.</Empty>;
  const stacks = [...new Set([...r.releases.map((x) => x.stack), ...r.services.map((s) => s.stack)])].sort();
  return (
    <>
      {stacks.map((stack) => {
        const rel = r.releases.find((x) => x.stack === stack);
        const services = r.services.filter((s) => s.stack === stack);
        return (
          <section class="card" aria-label={`Stack ${stack}`}>
            <h3>
              {stack} {rel ? <code>@{rel.runningVersion ?? rel.version}</code> : null} {rel ? <Pill state={rel.state} /> : null}
            </h3>
            {rel && rel.version !== rel.runningVersion ? (
              <p class="small">
                Wanted {rel.version}
                {rel.code ? (
                  <>
                    {' '}
                    — <code>{rel.code}</code> {rel.message}
                  </>
                ) : null}
              </p>
            ) : null}
            <table>
              <thead>
                <tr>
                  <th scope="col">Service</th>
                  <th scope="col">Replica</th>
                  <ContainerHeads />
                </tr>
              </thead>
              <tbody>
                {services.map((s) => (
                  <tr>
                    <th scope="row">{s.service}</th>
                    <td>{s.replica}</td>
                    <ContainerCells c={s} />
                  </tr>
                ))}
              </tbody>
            </table>
          </section>
        );
      })}
    </>
  );
}

export function agentPage(shell: Shell, m: AgentModel): string {
  const a = m.row;
  return page(
    shell,
    <>
      <nav aria-label="Breadcrumb" class="crumbs">
        <a href="/fleet">Fleet</a> / <span>{a.tenant}</span>
      </nav>
      <div class="title-row">
        <h1>{a.name}</h1>
        {m.canManage && a.state !== 'revoked' ? (
          <button
            type="button"
            class="danger"
            hx-post={`/agents/${encodeURIComponent(a.id)}/revoke`}
            hx-swap="none"
            hx-confirm={`Revoke agent ${a.name} (${a.id})? Its connection is cut at once and it can never reconnect; the host must be enrolled again to return.`}
          >
            Revoke agent
          </button>
        ) : null}
      </div>
      <div id="agent-live" hx-get={`/agents/${encodeURIComponent(a.id)}`} hx-trigger="sse:transition, sse:gap, every 15s" hx-select="#agent-live > *" hx-target="this" hx-swap="innerHTML" hx-sync="this:queue last">
        <section class="card facts" aria-label="Agent">
          <dl>
            <dt>Id</dt>
            <dd>
              <code>{a.id}</code>
            </dd>
            <dt>Connection</dt>
            <dd>
              <Pill state={a.state} /> {a.state === 'connected' ? <>for <Since iso={a.since} now={m.now} /></> : <>{a.state === 'offline' ? 'since ' : ''}<Time iso={a.since} now={m.now} /></>}
              {m.remote ? <span class="muted"> from {m.remote}</span> : null}
            </dd>
            <dt>Health</dt>
            <dd>
              <Pill state={a.health} />
            </dd>
            <dt>Agent version</dt>
            <dd>{a.version ?? '—'}</dd>
            <dt>Key</dt>
            <dd>
              <code>{m.fingerprint}</code>
            </dd>
            <dt>Enrolled</dt>
            <dd>
              <Time iso={m.enrolledAt} now={m.now} />
            </dd>
            {m.facts.map((f) => (
              <>
                <dt>{f.label}</dt>
                <dd>{f.value}</dd>
              </>
            ))}
            <dt>Witness</dt>
            <dd>
              {m.witness.witnessed === null ? 'has not cosigned a checkpoint yet' : `cosigned checkpoint ${m.witness.witnessed} of ${m.witness.log}`}
              {m.witness.latest !== null && m.witness.witnessed !== m.witness.latest ? <span class="muted"> (latest is {m.witness.latest})</span> : null}
            </dd>
          </dl>
        </section>
        {m.alarms.length ? (
          <section class="card alarm" aria-labelledby="alarms-title">
            <h2 id="alarms-title">Alarms on the host</h2>
            <ul>
              {m.alarms.map((x) => (
                <li>
                  <code>{x.code}</code> {x.message} <span class="muted">({x.at})</span>
                </li>
              ))}
            </ul>
          </section>
        ) : null}
        <h2>Stacks</h2>
        <Stacks m={m} />
        {m.drift.length ? (
          <section class="card" aria-labelledby="drift-title">
            <h2 id="drift-title">Drift put back</h2>
            <ul>
              {m.drift.map((d) => (
                <li>
                  <Time iso={d.at} now={m.now} />: {d.steps}
                </li>
              ))}
            </ul>
          </section>
        ) : null}
        <section class="card" aria-labelledby="accepted-title">
          <h2 id="accepted-title">Accepted releases</h2>
          {m.accepted ? (
            <>
              <p class="small">
                Directive {m.accepted.seq}, accepted <Time iso={m.accepted.acceptedAt} now={m.now} />
              </p>
              <table>
                <thead>
                  <tr>
                    <th scope="col">Release</th>
                    <th scope="col">Digest</th>
                    <th scope="col">Signed by</th>
                  </tr>
                </thead>
                <tbody>
                  {m.accepted.releases.map((r) => (
                    <tr>
                      <th scope="row">
                        <a href={`/releases/${encodeURIComponent(r.stack)}/${encodeURIComponent(r.version)}`}>
                          {r.stack}@{r.version}
                        </a>
                      </th>
                      <td>
                        <Digest value={r.digest} />
                      </td>
                      <td>
                        {r.signers.join(', ') || '—'}
                        {r.threshold ? <span class="muted"> ({r.threshold})</span> : null}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </>
          ) : (
            <Empty>No directive accepted yet.</Empty>
          )}
        </section>
        <section class="card" aria-labelledby="directives-title">
          <h2 id="directives-title">Last directives</h2>
          {m.directives.length ? (
            <table>
              <thead>
                <tr>
                  <th scope="col">Seq</th>
                  <th scope="col">Releases</th>
                  <th scope="col">Answer</th>
                  <th scope="col">Issued</th>
                </tr>
              </thead>
              <tbody>
                {m.directives.map((d) => (
                  <tr>
                    <th scope="row">{d.seq}</th>
                    <td>{d.releases}</td>
                    <td>
                      <Pill state={d.status} />
                      {d.code ? (
                        <div class="small">
                          <code>{d.code}</code> {d.message}
                        </div>
                      ) : null}
                    </td>
                    <td>
                      <Time iso={d.issuedAt} now={m.now} />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          ) : (
            <Empty>No directive issued yet.</Empty>
          )}
        </section>
        <section class="card" aria-labelledby="agent-audit-title">
          <h2 id="agent-audit-title">Audit entries about it</h2>
          {m.audit.length ? (
            <AuditTable rows={m.audit} now={m.now} log={m.witness.log} />
          ) : (
            <Empty>No recent entry names this agent.</Empty>
          )}
        </section>
      </div>
      <LabelsSection m={m} />
    </>,
  );
}

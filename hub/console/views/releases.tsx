import { ContainerCells, ContainerHeads, Digest, Empty, Pill, Time } from './bits.js';
import { page, type Shell } from './layout.js';

export interface ReleaseItem {
  stack: string;
  version: string;
  digest: string;
  floor: string | null;
  createdAt: string | null;
  images: [string, string][];
  signers: { name: string; signedAt: string | null }[];
  tenants: { tenant: string; met: boolean; have: number; threshold: number }[];
  delivered: string[];
}

export function releasesPage(shell: Shell, m: { now: number; stack: string; stacks: string[]; releases: ReleaseItem[] }): string {
  return page(
    shell,
    <>
      <h1>Releases</h1>
      <form class="filters" method="get" action="/releases" role="search" aria-label="Filter releases">
        <div class="field">
          <label for="r-stack">Stack</label>
          <select id="r-stack" name="stack">
            <option value="">all</option>
            {m.stacks.map((s) => (
              <option value={s} selected={m.stack === s}>
                {s}
              </option>
            ))}
          </select>
        </div>
        <button type="submit">Filter</button>
      </form>
      {m.releases.length === 0 ? (
        <Empty>No releases to show.</Empty>
      ) : (
        <div class="table-wrap">
          <table>
            <caption class="sr-only">Releases</caption>
            <thead>
              <tr>
                <th scope="col">Release</th>
                <th scope="col">Signed by</th>
                <th scope="col">Threshold per tenant</th>
                <th scope="col">Floor</th>
                <th scope="col">Delivered to</th>
                <th scope="col">Created</th>
              </tr>
            </thead>
            <tbody>
              {m.releases.map((r) => (
                <tr>
                  <th scope="row">
                    <a href={`/releases/${encodeURIComponent(r.stack)}/${encodeURIComponent(r.version)}`}>
                      {r.stack}@{r.version}
                    </a>
                    <div>
                      <Digest value={r.digest} />
                    </div>
                  </th>
                  <td>{r.signers.length ? r.signers.map((s) => s.name).join(', ') : <span class="muted">unsigned</span>}</td>
                  <td>
                    <Thresholds tenants={r.tenants} />
                  </td>
                  <td>{r.floor ?? <span class="muted">—</span>}</td>
                  <td>{r.delivered.join(', ') || <span class="muted">nowhere yet</span>}</td>
                  <td>
                    <Time iso={r.createdAt} now={m.now} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </>,
  );
}

function Thresholds({ tenants }: { tenants: ReleaseItem['tenants'] }) {
  if (!tenants.length) return <span class="muted">no tenant root</span>;
  return (
    <ul class="runs">
      {tenants.map((t) => (
        <li>
          {t.tenant} <Pill state={t.met ? 'done' : 'pending'} label={t.met ? `met ${t.have}/${t.threshold}` : `not met ${t.have}/${t.threshold}`} />
        </li>
      ))}
    </ul>
  );
}

export interface ReleaseDetail extends ReleaseItem {
  runsOn: { tenant: string; agents: { id: string; name: string; state: string }[] }[];
}

export function releasePage(shell: Shell, m: { now: number; r: ReleaseDetail }): string {
  const r = m.r;
  return page(
    shell,
    <>
      <nav aria-label="Breadcrumb" class="crumbs">
        <a href="/releases">Releases</a> / <span>{r.stack}</span>
      </nav>
      <h1>
        {r.stack}@{r.version}
      </h1>
      <section class="card facts" aria-label="Release">
        <dl>
          <dt>Digest</dt>
          <dd>
            <code class="wrap">{r.digest}</code>
          </dd>
          <dt>Floor</dt>
          <dd>{r.floor ?? 'none'}</dd>
          <dt>Created</dt>
          <dd>
            <Time iso={r.createdAt} now={m.now} />
          </dd>
          <dt>Signed by</dt>
          <dd>{r.signers.length ? r.signers.map((s) => `${s.name}${s.signedAt ? ` (${s.signedAt})` : ''}`).join(', ') : 'nobody yet'}</dd>
          <dt>Threshold</dt>
          <dd>
            <Thresholds tenants={r.tenants} />
          </dd>
        </dl>
      </section>
      <section class="card" aria-labelledby="images-title">
        <h2 id="images-title">Images</h2>
        <table>
          <thead>
            <tr>
              <th scope="col">Service</th>
              <th scope="col">Image (pinned by digest)</th>
            </tr>
          </thead>
          <tbody>
            {r.images.map(([s, img]) => (
              <tr>
                <th scope="row">{s}</th>
                <td>
                  <code class="wrap">{img}</code>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>
      <section class="card" aria-labelledby="where-title">
        <h2 id="where-title">Where it runs</h2>
        {r.runsOn.every((t) => !t.agents.length) ? (
          <Empty>No agent reports running it.</Empty>
        ) : (
          r.runsOn
            .filter((t) => t.agents.length)
            .map((t) => (
              <p>
                <strong>{t.tenant}</strong>:{' '}
                {t.agents.map((a, i) => (
                  <>
                    {i ? ', ' : ''}
                    <a href={`/agents/${encodeURIComponent(a.id)}`}>{a.name}</a> <Pill state={a.state} />
                  </>
                ))}
              </p>
            ))
        )}
      </section>
    </>,
  );
}

export interface StackModel {
  now: number;
  tenant: string;
  tenants: string[];
  stacks: {
    name: string;
    versions: { version: string; agents: number }[];
    services: { name: string; containers: { agentId: string; agent: string; replica: number; version: string; status: string; health: string; restarts: number; image: string }[] }[];
  }[];
}

export function stacksPage(shell: Shell, m: StackModel): string {
  return page(
    shell,
    <>
      <h1>Stacks</h1>
      <form class="filters" method="get" action="/stacks" aria-label="Choose a tenant">
        <div class="field">
          <label for="s-tenant">Tenant</label>
          <select id="s-tenant" name="tenant">
            {m.tenants.map((t) => (
              <option value={t} selected={m.tenant === t}>
                {t}
              </option>
            ))}
          </select>
        </div>
        <button type="submit">Show</button>
      </form>
      {m.stacks.length === 0 ? (
        <Empty>{m.tenant ? `No agent of ${m.tenant} reports a stack.` : 'No tenant to show.'}</Empty>
      ) : (
        m.stacks.map((s) => (
          <section class="card" aria-labelledby={`stack-${s.name}`}>
            <h2 id={`stack-${s.name}`}>{s.name}</h2>
            <p>
              Versions:{' '}
              {s.versions.map((v, i) => (
                <>
                  {i ? ', ' : ''}
                  <a href={`/releases/${encodeURIComponent(s.name)}/${encodeURIComponent(v.version)}`}>{v.version}</a> on {v.agents} agent{v.agents === 1 ? '' : 's'}
                </>
              ))}
            </p>
            {s.services.map((svc) => (
              <details open={s.services.length <= 3}>
                <summary>
                  {svc.name} — {svc.containers.length} container{svc.containers.length === 1 ? '' : 's'}
                </summary>
                <table>
                  <thead>
                    <tr>
                      <th scope="col">Agent</th>
                      <th scope="col">Replica</th>
                      <th scope="col">Version</th>
                      <ContainerHeads />
                    </tr>
                  </thead>
                  <tbody>
                    {svc.containers.map((x) => (
                      <tr>
                        <th scope="row">
                          <a href={`/agents/${encodeURIComponent(x.agentId)}`}>{x.agent}</a>
                        </th>
                        <td>{x.replica}</td>
                        <td>{x.version}</td>
                        <ContainerCells c={x} />
                      </tr>
                    ))}
                  </tbody>
                </table>
              </details>
            ))}
          </section>
        ))
      )}
    </>,
  );
}

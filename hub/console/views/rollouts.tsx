import type { rolloutSummary, rolloutView } from '../../http/views.js';
import { Empty, Pill, Time } from './bits.js';
import { fragment, page, type Shell } from './layout.js';

type Summary = ReturnType<typeof rolloutSummary>;
type Detail = ReturnType<typeof rolloutView>;

export function RolloutTable({ rollouts, now }: { rollouts: Summary[]; now: number }) {
  return (
    <table>
      <caption class="sr-only">Rollouts</caption>
      <thead>
        <tr>
          <th scope="col">Rollout</th>
          <th scope="col">Release</th>
          <th scope="col">State</th>
          <th scope="col">Wave</th>
          <th scope="col">Agents done</th>
          <th scope="col">Failed</th>
          <th scope="col">Created</th>
        </tr>
      </thead>
      <tbody>
        {rollouts.map((r) => (
          <tr>
            <th scope="row">
              <a href={`/rollouts/${r.id}`}>{r.id}</a>
            </th>
            <td>
              <code>
                {r.stack}@{r.version}
              </code>
            </td>
            <td>
              <Pill state={r.state} />
            </td>
            <td>
              {r.wave} of {r.waves}
            </td>
            <td>
              <Progress done={r.done} total={r.agents} />
            </td>
            <td>{r.failed ? <span class="bad-text">{r.failed}</span> : 0}</td>
            <td>
              <Time iso={r.createdAt} now={now} />
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function Progress({ done, total, label }: { done: number; total: number; label?: string }) {
  return (
    <span class="progress-line">
      <progress max={Math.max(total, 1)} value={done} aria-label={label ?? 'agents done'}></progress> {done} / {total}
    </span>
  );
}

export function rolloutsPage(shell: Shell, m: { now: number; rollouts: Summary[]; canCreate: boolean }): string {
  return page(
    shell,
    <>
      <div class="title-row">
        <h1>Rollouts</h1>
        {m.canCreate ? (
          <a class="button" href="/rollouts/new">
            New rollout
          </a>
        ) : null}
      </div>
      <section id="rollouts-live" hx-get="/rollouts" hx-trigger="sse:transition, sse:gap" hx-select="#rollouts-live > *" hx-target="this" hx-swap="innerHTML" hx-sync="this:queue last" aria-label="Rollouts">
        {m.rollouts.length ? <RolloutTable rollouts={m.rollouts} now={m.now} /> : <Empty>No rollouts yet.</Empty>}
      </section>
    </>,
  );
}

export interface CommandButton {
  cmd: 'pause' | 'resume' | 'promote' | 'abort' | 'rollback';
  label: string;
  confirm: string;
  danger: boolean;
}

export interface RolloutModel {
  now: number;
  r: Detail;
  /** Commands the person may give and the rollout's state allows. */
  commands: CommandButton[];
  /** Targets shown (the rest are counted). */
  shownTargets: Detail['targets'];
  hiddenTargets: number;
}

export function RolloutLive({ m }: { m: RolloutModel }) {
  const r = m.r;
  return (
    <div id="rollout-live" hx-get={`/rollouts/${r.id}`} hx-trigger="sse:transition, sse:gap" hx-select="#rollout-live > *" hx-target="this" hx-swap="innerHTML" hx-sync="this:queue last">
      <section class="card facts" aria-label="Rollout state">
        <dl>
          <dt>State</dt>
          <dd>
            <Pill state={r.state} /> <span data-testid="rollout-state">{r.state}</span> since <Time iso={r.since} now={m.now} />
            {r.reason ? <div class="small">{r.reason}</div> : null}
          </dd>
          <dt>Agents</dt>
          <dd>
            <Progress done={r.done} total={r.agents} /> {r.failed ? <span class="bad-text">, {r.failed} failed</span> : null}
            {r.skipped ? `, ${r.skipped} skipped` : null}
            {r.reverted ? `, ${r.reverted} reverted` : null}
          </dd>
          {r.selector !== null ? (
            <>
              <dt>Selector</dt>
              <dd>
                <code>{r.selector}</code>
              </dd>
            </>
          ) : null}
          <dt>Waves</dt>
          <dd>
            <code>{r.waveSpec}</code>, bake {Math.round(r.bakeMs / 1000)} s, at most {r.maxFailures} failure{r.maxFailures === 1 ? '' : 's'} then {r.onFailure}
          </dd>
        </dl>
      </section>
      {m.commands.length ? (
        <div class="actions" role="group" aria-label="Rollout commands">
          {m.commands.map((b) => (
            <button type="button" class={b.danger ? 'danger' : ''} hx-post={`/rollouts/${r.id}/${b.cmd}`} hx-confirm={b.confirm} hx-target="#rollout-live" hx-select="#rollout-live > *" hx-swap="innerHTML">
              {b.label}
            </button>
          ))}
        </div>
      ) : null}
      <h2>Waves</h2>
      <ol class="waves">
        {r.waveList.map((w) => (
          <li class={`wave ${w.state}`} data-wave={w.wave} data-state={w.state}>
            <span class="wave-name">Wave {w.wave}</span> <Pill state={w.state} />
            <Progress done={w.done} total={w.agents} label={`wave ${w.wave} agents done`} />
            {w.failed ? <span class="bad-text"> {w.failed} failed</span> : null}
          </li>
        ))}
      </ol>
      <h2>Agents</h2>
      {m.shownTargets.length ? (
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Agent</th>
                <th scope="col">Tenant</th>
                <th scope="col">Wave</th>
                <th scope="col">State</th>
                <th scope="col">Updated</th>
              </tr>
            </thead>
            <tbody>
              {m.shownTargets.map((t) => (
                <tr data-target={t.agent} data-state={t.state}>
                  <th scope="row">
                    <a href={`/agents/${encodeURIComponent(t.agent)}`}>
                      <code>{t.agent}</code>
                    </a>
                  </th>
                  <td>{t.tenant}</td>
                  <td>{t.wave}</td>
                  <td>
                    <Pill state={t.state} />
                    {t.code ? (
                      <span class="small">
                        {' '}
                        <code>{t.code}</code>
                      </span>
                    ) : null}
                  </td>
                  <td>
                    <Time iso={t.updatedAt} now={m.now} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : (
        <Empty>No agent of yours in this rollout.</Empty>
      )}
      {m.hiddenTargets ? <p class="muted">and {m.hiddenTargets} more agents not shown</p> : null}
    </div>
  );
}

export function rolloutPage(shell: Shell, m: RolloutModel): string {
  return page(
    shell,
    <>
      <nav aria-label="Breadcrumb" class="crumbs">
        <a href="/rollouts">Rollouts</a> / <span>{m.r.id}</span>
      </nav>
      <h1>
        {m.r.id}: {m.r.stack}@{m.r.version}
      </h1>
      <RolloutLive m={m} />
    </>,
  );
}

export function rolloutFragment(m: RolloutModel): string {
  return fragment(<RolloutLive m={m} />);
}

export interface NewRolloutModel {
  releases: string[];
  defaults: { release: string; selector: string; waves: string; bake: string; maxFailures: string; onFailure: string };
}

export function newRolloutPage(shell: Shell, m: NewRolloutModel): string {
  const d = m.defaults;
  return page(
    shell,
    <>
      <nav aria-label="Breadcrumb" class="crumbs">
        <a href="/rollouts">Rollouts</a> / <span>new</span>
      </nav>
      <h1>New rollout</h1>
      {m.releases.length === 0 ? (
        <Empty>There is no release you may roll out.</Empty>
      ) : (
        <form id="new-rollout" class="stack-form wide" hx-post="/rollouts/preview" hx-target="#preview" hx-swap="innerHTML">
          <label for="n-release">Release</label>
          <select id="n-release" name="release" required>
            {m.releases.map((r) => (
              <option value={r} selected={r === d.release}>
                {r}
              </option>
            ))}
          </select>
          <label for="n-selector">Agents</label>
          <input id="n-selector" name="selector" required value={d.selector} maxLength={2000} aria-describedby="n-selector-help" />
          <p id="n-selector-help" class="muted small">
            A selector: <code>env=prod,zone=dmz</code>, <code>tenant in (t1, t2)</code>, <code>id=agt_…</code>, <code>*</code> for every agent you may deploy to.
          </p>
          <label for="n-waves">Waves</label>
          <input id="n-waves" name="waves" required value={d.waves} maxLength={400} aria-describedby="n-waves-help" />
          <p id="n-waves-help" class="muted small">
            Counts or percentages, e.g. <code>1,10%,100%</code>: a canary, then growing waves.
          </p>
          <label for="n-bake">Bake time per wave</label>
          <input id="n-bake" name="bake" value={d.bake} maxLength={20} />
          <label for="n-max">Failures allowed</label>
          <input id="n-max" name="maxFailures" type="number" min={0} max={100000} value={d.maxFailures} />
          <label for="n-onfail">When more fail</label>
          <select id="n-onfail" name="onFailure">
            <option value="pause" selected={d.onFailure === 'pause'}>
              pause
            </option>
            <option value="rollback" selected={d.onFailure === 'rollback'}>
              roll back
            </option>
          </select>
          <div class="actions">
            <button type="submit">Preview waves</button>
          </div>
        </form>
      )}
      <div id="preview" aria-live="polite"></div>
    </>,
  );
}

export interface PreviewModel {
  release: string;
  selector: string;
  waves: { wave: number; agents: { id: string; name: string; tenant: string }[] }[];
  total: number;
}

/** Which agents in which wave; the start button (for the same form) names what it will do. */
export function previewFragment(m: PreviewModel): string {
  const shown = 20;
  return fragment(
    <section class="card" aria-labelledby="preview-title">
      <h2 id="preview-title">
        {m.total} agent{m.total === 1 ? '' : 's'} in {m.waves.length} wave{m.waves.length === 1 ? '' : 's'}
      </h2>
      <ol class="waves">
        {m.waves.map((w) => (
          <li>
            <strong>Wave {w.wave}</strong>: {w.agents.length} agent{w.agents.length === 1 ? '' : 's'} —{' '}
            {w.agents
              .slice(0, shown)
              .map((a) => `${a.name} (${a.tenant})`)
              .join(', ')}
            {w.agents.length > shown ? `, and ${w.agents.length - shown} more` : ''}
          </li>
        ))}
      </ol>
      <button
        type="button"
        class="primary"
        hx-post="/rollouts"
        hx-include="#new-rollout"
        hx-confirm={`Start rolling out ${m.release} to ${m.total} agent${m.total === 1 ? '' : 's'} in ${m.waves.length} wave${m.waves.length === 1 ? '' : 's'}? Wave 1 starts at once.`}
        hx-swap="none"
      >
        Start rollout
      </button>
    </section>,
  );
}

// Small pieces every page uses: states, times, labels, pagers, errors.
import type { ComponentChildren } from 'preact';

/** "3 min ago", from the server's clock at render time (the page refreshes live). */
export function ago(iso: string | null, now: number): string {
  if (!iso) return 'never';
  const d = Math.round((now - Date.parse(iso)) / 1000);
  const s = Math.abs(d);
  const span = s < 5 ? null : s < 60 ? `${s} s` : s < 3600 ? `${Math.floor(s / 60)} min` : s < 86_400 ? `${Math.floor(s / 3600)} h` : `${Math.floor(s / 86_400)} d`;
  if (span === null) return 'just now';
  return d >= 0 ? `${span} ago` : `in ${span}`;
}

/** How long since `iso`, without "ago" ("connected for 3 min"). */
export function Since({ iso, now }: { iso: string | null; now: number }) {
  if (!iso) return <span class="muted">—</span>;
  return (
    <time datetime={iso} title={iso}>
      {ago(iso, now).replace(/ ago$/, '')}
    </time>
  );
}

export function Time({ iso, now }: { iso: string | null; now: number }) {
  if (!iso) return <span class="muted">never</span>;
  return (
    <time datetime={iso} title={iso}>
      {ago(iso, now)}
    </time>
  );
}

const TONES: Record<string, string> = {
  connected: 'ok',
  healthy: 'ok',
  applied: 'ok',
  done: 'ok',
  accepted: 'ok',
  complete: 'ok',
  completed: 'ok',
  running: 'busy',
  applying: 'busy',
  'in-progress': 'busy',
  waiting: 'busy',
  issued: 'busy',
  pending: 'idle',
  offline: 'warn',
  paused: 'warn',
  skipped: 'idle',
  starting: 'busy',
  revoked: 'bad',
  failed: 'bad',
  unhealthy: 'bad',
  refused: 'bad',
  aborted: 'bad',
  'rolled-back': 'bad',
  reverted: 'warn',
  'revert-failed': 'bad',
  'rolling-back': 'warn',
};

/** A state as a word with a colour (the word carries the meaning; colour only helps). */
export function Pill({ state, label }: { state: string; label?: string }) {
  return <span class={`pill ${TONES[state] ?? 'idle'}`}>{label ?? state}</span>;
}

export function Labels({ labels }: { labels: readonly (readonly [string, string])[] }) {
  if (!labels.length) return <span class="muted">none</span>;
  return (
    <ul class="labels">
      {labels.map(([k, v]) => (
        <li>
          <code>{v === '' ? k : `${k}=${v}`}</code>
        </li>
      ))}
    </ul>
  );
}

export function Empty({ children }: { children: ComponentChildren }) {
  return <p class="empty">{children}</p>;
}

/** Page links that keep the current filters (`base` is the query without page). */
export function Pager({ path, base, page, pages }: { path: string; base: string; page: number; pages: number }) {
  if (pages <= 1) return null;
  const href = (n: number) => `${path}?${base ? `${base}&` : ''}page=${n}`;
  return (
    <nav class="pager" aria-label="Pages">
      {page > 1 ? <a href={href(page - 1)} rel="prev">Previous</a> : <span class="muted">Previous</span>}
      <span>
        Page {page} of {pages}
      </span>
      {page < pages ? <a href={href(page + 1)} rel="next">Next</a> : <span class="muted">Next</span>}
    </nav>
  );
}

export function ErrorNote({ code, message, hint }: { code: string; message: string; hint?: string }) {
  return (
    <div class="error-note" data-code={code}>
      <p>
        <strong>{message}</strong>
      </p>
      {hint ? <p class="muted">{hint}</p> : null}
      <p class="muted">
        <code>{code}</code>
      </p>
    </div>
  );
}

/** Short digest for tables: sha256:abcdef123456… (the whole value in the title). */
export function Digest({ value }: { value: string | null | undefined }) {
  if (!value) return <span class="muted">—</span>;
  const at = value.indexOf('@');
  const d = at >= 0 ? value.slice(at + 1) : value;
  return (
    <code class="digest" title={value}>
      {d.startsWith('sha256:') ? `${d.slice(0, 19)}…` : d}
    </code>
  );
}

/** A container's state, health, restarts and image: the same four cells wherever containers are listed. */
export function ContainerCells({ c }: { c: { status: string; health: string; restarts: number; image: string } }) {
  return (
    <>
      <td>
        <Pill state={c.status} />
      </td>
      <td>
        <Pill state={c.health} />
      </td>
      <td>{c.restarts}</td>
      <td>
        <Digest value={c.image} />
      </td>
    </>
  );
}

export function ContainerHeads() {
  return (
    <>
      <th scope="col">State</th>
      <th scope="col">Health</th>
      <th scope="col">Restarts</th>
      <th scope="col">Image</th>
    </>
  );
}

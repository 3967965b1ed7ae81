// The page every console screen shares: header with what the person may
// open, their name and roles, the main area, the chat slot and the alert
// region. Pages are rendered to strings on the server (preact's JSX escapes
// every text and attribute value); the only scripts are the hub's own files.
import type { ComponentChildren } from 'preact';
import { render } from 'preact-render-to-string';

export interface Shell {
  title: string;
  /** The navigation entry to mark current. */
  current: NavKey | null;
  user: { name: string; roles: string; csrf: string | null; nav: NavKey[] } | null;
  assets: { css: string; htmx: string; sse: string; console: string; audit?: string };
  /** The event stream this page listens to (one per tab), or none. */
  events?: string | null;
}

export type NavKey = 'fleet' | 'stacks' | 'releases' | 'rollouts' | 'audit' | 'people' | 'tokens';
const NAV: Record<NavKey, string> = { fleet: 'Fleet', stacks: 'Stacks', releases: 'Releases', rollouts: 'Rollouts', audit: 'Audit', people: 'People', tokens: 'API tokens' };

/**
 * htmx without eval, without the style tag it would inject (the CSP allows
 * none), without copies of pages in localStorage, and swapping error answers
 * too (the hub sends them as fragments for the alert region).
 */
const HTMX_CONFIG = JSON.stringify({
  allowEval: false,
  allowScriptTags: false,
  includeIndicatorStyles: false,
  selfRequestsOnly: true,
  historyCacheSize: 0,
  refreshOnHistoryMiss: true,
  defaultSwapStyle: 'outerHTML',
  responseHandling: [
    { code: '204', swap: false },
    { code: '[23]..', swap: true },
    { code: '[45]..', swap: true, error: true },
  ],
});

/** The chat panel's place (issue 15 fills it: see hub/console/README.md). */
function ChatSlot() {
  return (
    <aside id="chat" class="chat-slot" aria-labelledby="chat-title">
      <details>
        <summary id="chat-title">Chat</summary>
        <p class="muted">The console's own chat arrives with ChatOps.</p>
      </details>
    </aside>
  );
}

export function page(shell: Shell, body: ComponentChildren): string {
  const u = shell.user;
  return (
    '<!doctype html>' +
    render(
      <html lang="en">
        <head>
          <meta charset="utf-8" />
          <meta name="viewport" content="width=device-width, initial-scale=1" />
          <meta name="color-scheme" content="light dark" />
          <meta name="htmx-config" content={HTMX_CONFIG} />
          <title>{`${shell.title} · Ferry`}</title>
          <link rel="icon" href="data:," />
          <link rel="stylesheet" href={shell.assets.css} />
          <script src={shell.assets.htmx} defer></script>
          <script src={shell.assets.sse} defer></script>
          <script src={shell.assets.console} defer></script>
          {shell.assets.audit ? <script type="module" src={shell.assets.audit}></script> : null}
        </head>
        <body hx-ext="sse" sse-connect={shell.events ?? undefined} hx-headers={u?.csrf ? JSON.stringify({ 'x-ferry-csrf': u.csrf }) : undefined}>
          <a class="skip" href="#main">
            Skip to content
          </a>
          <header class="top">
            <a class="brand" href="/fleet">
              Ferry
            </a>
            {u ? (
              <nav aria-label="Console">
                <ul>
                  {u.nav.map((k) => (
                    <li>
                      <a href={`/${k}`} aria-current={shell.current === k ? 'page' : undefined}>
                        {NAV[k]}
                      </a>
                    </li>
                  ))}
                </ul>
              </nav>
            ) : null}
            {u ? (
              <div class="who">
                <span class="name">{u.name}</span> <span class="muted">{u.roles}</span>{' '}
                {u.csrf ? (
                  <button type="button" class="link" hx-post="/logout" hx-swap="none">
                    Log out
                  </button>
                ) : null}
              </div>
            ) : null}
          </header>
          <div class="frame">
            <main id="main" tabindex={-1}>
              {body}
            </main>
            {u ? <ChatSlot /> : null}
          </div>
          <div id="alerts" class="alerts" role="alert" aria-live="assertive"></div>
        </body>
      </html>,
    )
  );
}

/** A fragment (an htmx swap), rendered the same way. */
export function fragment(body: ComponentChildren): string {
  return render(<>{body}</>);
}

import type { tokenView, userView } from '../../http/routes/people.js';
import { Empty, Pill, Time } from './bits.js';
import { fragment, page, type Shell } from './layout.js';

type User = ReturnType<typeof userView>;
type Token = ReturnType<typeof tokenView>;

export interface PeopleModel {
  now: number;
  me: string;
  users: User[];
  tenants: string[];
  vendorRoles: readonly string[];
  tenantRoles: readonly string[];
}

export function peoplePage(shell: Shell, m: PeopleModel): string {
  return page(
    shell,
    <>
      <h1>People</h1>
      <div class="table-wrap">
        <table>
          <caption class="sr-only">People and service accounts</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Vendor-wide</th>
              <th scope="col">Per tenant</th>
              <th scope="col">Status</th>
              <th scope="col">Change</th>
            </tr>
          </thead>
          <tbody>
            {m.users.map((u) => {
              const base = `/people/${encodeURIComponent(u.name)}`;
              return (
                <tr data-user={u.name}>
                  <th scope="row">
                    {u.name}
                    <div class="muted small">{u.kind === 'service' ? 'service account' : u.hasPassword ? 'person' : 'person, no password'}</div>
                  </th>
                  <td>
                    {u.vendorRole ?? <span class="muted">—</span>}
                    {u.vendorRole && !(u.name === m.me && u.vendorRole === 'admin') ? (
                      <button type="button" class="link small" hx-post={`${base}/revoke`} hx-vals={JSON.stringify({ scope: 'vendor' })} hx-swap="none" hx-confirm={`Take the vendor-wide role ${u.vendorRole} from ${u.name}?`}>
                        remove
                      </button>
                    ) : null}
                  </td>
                  <td>
                    {Object.keys(u.tenants).length ? (
                      <ul class="runs">
                        {Object.entries(u.tenants).map(([t, r]) => (
                          <li>
                            {r} on {t}{' '}
                            <button type="button" class="link small" hx-post={`${base}/revoke`} hx-vals={JSON.stringify({ scope: t })} hx-swap="none" hx-confirm={`Take ${u.name}'s role ${r} on ${t}?`} aria-label={`Remove ${r} on ${t} from ${u.name}`}>
                              remove
                            </button>
                          </li>
                        ))}
                      </ul>
                    ) : (
                      <span class="muted">—</span>
                    )}
                  </td>
                  <td>
                    {u.disabledAt ? <Pill state="revoked" label="disabled" /> : u.lockedUntil && Date.parse(u.lockedUntil) > m.now ? <Pill state="paused" label="locked" /> : <Pill state="done" label="active" />}
                  </td>
                  <td>
                    <form class="inline-form" hx-post={`${base}/grants`} hx-swap="none">
                      <label class="sr-only" for={`g-${u.id}`}>
                        Grant a role to {u.name}
                      </label>
                      <select id={`g-${u.id}`} name="grant">
                        {m.vendorRoles.map((r) => (
                          <option value={`vendor:${r}`}>{r} (vendor-wide)</option>
                        ))}
                        {m.tenants.flatMap((t) => m.tenantRoles.map((r) => <option value={`${t}:${r}`}>{`${r} on ${t}`}</option>))}
                      </select>
                      <button type="submit">Grant</button>
                    </form>
                    {u.name !== m.me ? (
                      u.disabledAt ? (
                        <button type="button" hx-post={`${base}/enable`} hx-swap="none">
                          Enable
                        </button>
                      ) : (
                        <button type="button" class="danger" hx-post={`${base}/disable`} hx-swap="none" hx-confirm={`Disable ${u.name}? Their sessions end at once and their tokens stop working.`}>
                          Disable
                        </button>
                      )
                    ) : null}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
      <section class="card" aria-labelledby="new-user-title">
        <h2 id="new-user-title">Add a person or service account</h2>
        <form class="stack-form" hx-post="/people" hx-swap="none">
          <label for="u-name">Name</label>
          <input id="u-name" name="name" required maxLength={63} autocomplete="off" />
          <label for="u-kind">Kind</label>
          <select id="u-kind" name="kind">
            <option value="person">person (logs in with a password)</option>
            <option value="service">service account (API tokens only)</option>
          </select>
          <label for="u-role">Vendor-wide role</label>
          <select id="u-role" name="vendorRole">
            <option value="">none (grant tenant roles after)</option>
            {m.vendorRoles.map((r) => (
              <option value={r}>{r}</option>
            ))}
          </select>
          <label for="u-password">Password (people)</label>
          <input id="u-password" name="password" type="password" autocomplete="new-password" maxLength={256} />
          <button type="submit" class="primary">
            Add
          </button>
        </form>
      </section>
    </>,
  );
}

export interface TokensModel {
  now: number;
  all: boolean;
  tokens: Token[];
  roles: readonly string[];
  tenants: string[];
}

export function tokensPage(shell: Shell, m: TokensModel): string {
  return page(
    shell,
    <>
      <h1>API tokens</h1>
      <p>{m.all ? 'Every token of every account.' : 'Your tokens. A token allows no more than you may do, and may be narrowed to some tenants.'}</p>
      {m.tokens.length ? (
        <div class="table-wrap">
          <table>
            <caption class="sr-only">API tokens</caption>
            <thead>
              <tr>
                <th scope="col">Token</th>
                {m.all ? <th scope="col">Of</th> : null}
                <th scope="col">Role</th>
                <th scope="col">Tenants</th>
                <th scope="col">Last used</th>
                <th scope="col">Expires</th>
                <th scope="col"></th>
              </tr>
            </thead>
            <tbody>
              {m.tokens.map((t) => (
                <tr data-token={t.id}>
                  <th scope="row">
                    {t.name}
                    <div class="muted small">
                      <code>{t.id}</code>
                    </div>
                  </th>
                  {m.all ? <td>{t.user}</td> : null}
                  <td>{t.role}</td>
                  <td>{t.tenants ? t.tenants.join(', ') : 'all it may see'}</td>
                  <td>
                    <Time iso={t.lastUsedAt} now={m.now} />
                  </td>
                  <td>{t.expiresAt ? <Time iso={t.expiresAt} now={m.now} /> : 'never'}</td>
                  <td>
                    {t.revokedAt ? (
                      <Pill state="revoked" />
                    ) : (
                      <button type="button" class="danger" hx-post={`/tokens/${encodeURIComponent(t.id)}/revoke`} hx-swap="none" hx-confirm={`Revoke token ${t.name} (${t.id})? Anything using it stops working at once.`}>
                        Revoke
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : (
        <Empty>No tokens.</Empty>
      )}
      <section class="card" aria-labelledby="new-token-title">
        <h2 id="new-token-title">New token for yourself</h2>
        <form class="stack-form" hx-post="/tokens" hx-target="#token-result" hx-swap="innerHTML">
          <label for="t-name">Name</label>
          <input id="t-name" name="name" required maxLength={64} placeholder="ci" />
          <label for="t-role">Role</label>
          <select id="t-role" name="role">
            {m.roles.map((r) => (
              <option value={r}>{r}</option>
            ))}
          </select>
          <label for="t-tenants">Tenants (empty: all you may see)</label>
          <input id="t-tenants" name="tenants" maxLength={2000} placeholder={m.tenants.slice(0, 2).join(', ')} />
          <label for="t-ttl">Expires after</label>
          <select id="t-ttl" name="ttl">
            <option value="86400">1 day</option>
            <option value="2592000" selected>
              30 days
            </option>
            <option value="7776000">90 days</option>
            <option value="">never</option>
          </select>
          <button type="submit" class="primary">
            Create token
          </button>
        </form>
        <div id="token-result" aria-live="polite"></div>
      </section>
    </>,
  );
}

export function tokenCreated(t: { id: string; name: string; token: string }): string {
  return fragment(
    <div class="result ok-box">
      <h3>Token {t.name}</h3>
      <p>Shown once; copy it now.</p>
      <pre class="command" tabindex={0} aria-label="The new token">
        <code>{t.token}</code>
      </pre>
      <p class="muted small">
        <code>ferry login --hub URL --token …</code> uses it. Reload the page to see it listed.
      </p>
    </div>,
  );
}

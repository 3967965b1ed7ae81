import { Empty, Time } from './bits.js';
import { fragment, page, type Shell } from './layout.js';

export function enrollPage(shell: Shell, m: { tenants: string[] }): string {
  return page(
    shell,
    <section aria-labelledby="enroll-title">
      <h1 id="enroll-title">Enroll an agent</h1>
      <p>
        An enrollment token lets one Docker host join a tenant, once. The host generates its own key; the token is shown here once and is stored only as a
        hash.
      </p>
      {m.tenants.length === 0 ? (
        <Empty>You may enroll agents in no tenant.</Empty>
      ) : (
        <form class="stack-form" hx-post="/enroll" hx-target="#enroll-result" hx-swap="innerHTML">
          <label for="e-tenant">Tenant</label>
          <select id="e-tenant" name="tenant" required>
            {m.tenants.map((t) => (
              <option value={t}>{t}</option>
            ))}
          </select>
          <label for="e-ttl">Valid for</label>
          <select id="e-ttl" name="ttl">
            <option value="600">10 minutes</option>
            <option value="3600" selected>
              1 hour
            </option>
            <option value="86400">1 day</option>
            <option value="604800">7 days</option>
          </select>
          <button type="submit" class="primary">
            Create enrollment token
          </button>
        </form>
      )}
      <div id="enroll-result" aria-live="polite"></div>
    </section>,
  );
}

export function enrolledFragment(m: { tenant: string; token: string; expiresAt: string; hub: string; now: number }): string {
  const command = `ferry-agent enroll --hub ${m.hub} --token ${m.token} --state-dir /var/lib/ferry-agent --name "$(hostname)"`;
  return fragment(
    <div class="result ok-box">
      <h2>Token for {m.tenant}</h2>
      <p>
        Shown once. It expires <Time iso={m.expiresAt} now={m.now} /> ({m.expiresAt}). On the Docker host, as root:
      </p>
      <pre class="command" tabindex={0} aria-label="Enrollment command">
        <code>{command}</code>
      </pre>
      <p class="muted">Then `ferry-agent service install` runs it as a hardened systemd service.</p>
    </div>,
  );
}

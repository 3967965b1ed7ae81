// The web console in a real headless Chromium against a real hub (real
// sqlite file, real sockets) and simulated agents speaking the real protocol:
// logging in and out, a session that ends, what a bank's person can see, a
// rollout's waves advancing on the page as agents report, pause from the page,
// enroll / label / revoke, names that try to be markup, CSRF, the audit badge
// the browser computes turning red on a row edited in the sqlite file, and
// axe-core on every page. Screenshots are saved as artefacts (the README's
// with FERRY_UPDATE_SCREENSHOTS=1).
import { join } from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPair } from '../../shared/keys.js';
import { enrollBody, postEnroll } from '../helpers/agents.js';
import { checkAxe, launchBrowser, login, openPage, screenshot, type ConsolePage } from '../helpers/browser.js';
import { startHub, type TestHub } from '../helpers/hub.js';
import { apiClient, simAgents, simRelease, type SimAgent } from '../helpers/sim-agents.js';
import { tempDir, waitFor } from '../helpers/tmp.js';
import { run } from '../helpers/proc.js';

const PASSWORD = 'correct horse battery staple';

async function withPassword(th: TestHub, grants: Parameters<TestHub['person']>[0]): Promise<string> {
  const p = await th.person(grants);
  const r = await th.api('POST', `/v1/users/${p.name}/password`, { password: PASSWORD });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return p.name;
}

/** The page's current text of an element. */
const text = (p: ConsolePage, sel: string) => p.page.locator(sel).first().innerText();

test('the web console in Chromium: sessions, tenants, live rollouts, writes, escaping, CSRF, the audit badge, accessibility', async (t) => {
  const browser = await launchBrowser(t);
  if (!browser) return;
  const th = await startHub(t, { checkpointMs: 3_600_000, rolloutTickMs: 100, rateLimitPerMinute: 0 });
  const api = apiClient(() => th.url, th.adminToken);
  assert.equal((await th.api('POST', '/v1/users/admin/password', { password: PASSWORD })).status, 200);
  const a = await simAgents(api, () => th.url, 'bank-a', 5, { labels: (i) => ({ env: i < 2 ? 'prod' : 'test', zone: 'dmz' }), applyMs: 300 });
  const b = await simAgents(api, () => th.url, 'bank-b', 2, { namePrefix: 'b' });
  const all: SimAgent[] = [...a, ...b];
  t.after(() => all.forEach((x) => x.stop()));
  // Offered to the tenants as the vendor does, so their own people see them (and may roll them out).
  for (const [s, v, tenant] of [['payments', '1.0.0', 'bank-a'], ['payments', '1.1.0', 'bank-a'], ['ledger', '3.2.0', 'bank-b']] as const) {
    await simRelease(api, s, v);
    assert.equal((await api('POST', `/v1/releases/${s}/${v}/tenants`, { tenants: [tenant] })).status, 200);
  }
  const operator = await withPassword(th, { tenants: { 'bank-a': 'operator' } });
  const bViewer = await withPassword(th, { tenants: { 'bank-b': 'viewer' } });
  await waitFor('every simulated agent connected', async () => (await th.api('GET', '/v1/agents')).body.agents.every((x: { status: string }) => x.status === 'connected'));

  await t.test('a wrong password is refused; login, logout; an ended session sends the browser back to the login form', async () => {
    const p = await openPage(browser);
    await p.page.goto(`${th.url}/fleet`);
    assert.match(p.page.url(), /\/login\?why=required&next=%2Ffleet$/);
    await p.page.fill('#login-user', operator);
    await p.page.fill('#login-password', 'not the password at all');
    await p.page.click('form.stack-form button[type=submit]');
    await p.page.waitForSelector('.error-note[data-code="FERRY_E_LOGIN_FAILED"]');
    assert.match(p.page.url(), /\/login$/);
    await checkAxe(p, 'login page with an error');
    await screenshot(p, 'login-failed');

    await login(p, th.url, operator, PASSWORD);
    assert.equal(await text(p, '.who .name'), operator);
    assert.match(await text(p, '.who'), /operator on bank-a/);
    // no People entry for someone who may not manage people
    assert.equal(await p.page.locator('nav a[href="/people"]').count(), 0);
    await Promise.all([p.page.waitForURL(/\/login\?why=out$/), p.page.click('.who button')]);
    assert.match(await text(p, '.notice'), /logged out/);
    await p.page.goto(`${th.url}/fleet`);
    assert.match(p.page.url(), /\/login\?why=required/);

    // The session ends after 30 minutes unused: make it that old, and the next page asks to log in again.
    await login(p, th.url, operator, PASSWORD);
    const uid = (await th.api('GET', `/v1/users/${operator}`)).body.id as string;
    await th.rawSql('UPDATE sessions SET last_seen_at = last_seen_at - 3600000 WHERE user_id = ?', [uid]);
    await p.page.goto(`${th.url}/rollouts`);
    assert.match(p.page.url(), /\/login\?why=expired&next=%2Frollouts$/);
    assert.match(await text(p, '.notice'), /session has ended/);
    await login(p, th.url, operator, PASSWORD);
    assert.deepEqual(p.problems, []);
    await p.page.context().close();
  });

  let firstRollout = '';
  await t.test('a rollout started from the page shows its waves advancing and its end without a reload; pause from the page stops the next wave', async () => {
    const p = await openPage(browser);
    await login(p, th.url, operator, PASSWORD);
    await p.page.goto(`${th.url}/rollouts/new`);
    await checkAxe(p, 'new rollout');
    await p.page.selectOption('#n-release', 'payments@1.0.0');
    await p.page.fill('#n-selector', 'tenant=bank-a');
    await p.page.fill('#n-waves', '1,2,100%');
    await p.page.fill('#n-bake', '1s');
    await p.page.click('#new-rollout button[type=submit]');
    await p.page.waitForSelector('#preview-title');
    assert.equal(await text(p, '#preview-title'), '5 agents in 3 waves');
    assert.match(await text(p, '#preview ol'), /Wave 1: 1 agent — sim-00000 \(bank-a\)\s+Wave 2: 1 agent — sim-00001 \(bank-a\)\s+Wave 3: 3 agents — sim-00002 \(bank-a\), sim-00003 \(bank-a\), sim-00004 \(bank-a\)/);
    await checkAxe(p, 'new rollout with its preview');
    await screenshot(p, 'rollout-preview');
    await Promise.all([p.page.waitForURL(/\/rollouts\/R-\d+$/), p.page.click('#preview button.primary')]);
    assert.match(p.dialogs.at(-1) ?? '', /^Start rolling out payments@1\.0\.0 to 5 agents in 3 waves\?/);
    firstRollout = p.page.url().split('/').pop()!;
    // From here on the page must change by itself: a reload would lose this mark and the recorder.
    await p.page.evaluate(() => {
      const w = window as unknown as { ferryMark: boolean; ferrySeen: string[] };
      w.ferryMark = true;
      w.ferrySeen = [];
      const record = () => {
        const s = Array.from(document.querySelectorAll("li.wave")).map((li) => (li as HTMLElement).dataset.state).join(',');
        if (w.ferrySeen.at(-1) !== s) w.ferrySeen.push(s);
      };
      record();
      new MutationObserver(record).observe(document.body, { subtree: true, childList: true, attributes: true });
    });
    await p.page.waitForSelector('[data-testid="rollout-state"]:text("succeeded")', { timeout: 30_000 });
    const seen = await p.page.evaluate(() => (window as unknown as { ferryMark?: boolean; ferrySeen: string[] }).ferryMark === true && (window as unknown as { ferrySeen: string[] }).ferrySeen);
    assert.ok(seen, 'the page was not reloaded');
    assert.ok(seen.includes('complete,in-progress,pending') || seen.includes('complete,complete,pending'), `waves seen advancing one after the other: ${JSON.stringify(seen)}`);
    assert.equal(seen.at(-1), 'complete,complete,complete');
    await checkAxe(p, 'rollout, succeeded');
    await screenshot(p, 'rollout', 'rollout');

    // Pause while wave 1 bakes: its agent finishes (baking goes on), but wave 2 must not start.
    const r = await api('POST', '/v1/rollouts', { stack: 'payments', version: '1.1.0', selector: 'tenant=bank-a', waves: '1,100%', bakeMs: 4000 });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    await p.page.goto(`${th.url}/rollouts/${r.body.id}`);
    await p.page.waitForSelector('li.wave[data-wave="1"][data-state="in-progress"]');
    await p.page.click('button:text("Pause")');
    await p.page.waitForSelector('[data-testid="rollout-state"]:text("paused")');
    assert.match(p.dialogs.at(-1) ?? '', new RegExp(`^Pause ${r.body.id}\\? No further wave starts and no more agents get payments@1\\.1\\.0`));
    await waitFor('wave 1 applied while paused', async () => (await api('GET', `/v1/rollouts/${r.body.id}`)).body.targets.find((x: { agent: string }) => x.agent === a[0]!.id).state === 'done', 20_000);
    await th.hub.rollouts.tick();
    const after = (await api('GET', `/v1/rollouts/${r.body.id}`)).body;
    assert.equal(after.state, 'paused');
    assert.deepEqual(after.waveList.map((w: { state: string }) => w.state), ['complete', 'pending'], 'the next wave did not start');
    assert.ok(after.targets.filter((x: { wave: number }) => x.wave === 2).every((x: { state: string }) => x.state === 'pending'));
    await p.page.waitForSelector('li.wave[data-wave="1"][data-state="complete"]');
    assert.equal(await p.page.getAttribute('li.wave[data-wave="2"]', 'data-state'), 'pending');
    await p.page.click('button:text("Resume")');
    await p.page.waitForSelector('[data-testid="rollout-state"]:text("succeeded")', { timeout: 30_000 });
    assert.deepEqual(p.problems, []);
    await p.page.context().close();
  });

  await t.test('fleet: counts, filters, an agent going offline without a reload; an agent\'s page: containers, drift, accepted releases with signers, directives, audit', async () => {
    const p = await openPage(browser);
    await login(p, th.url, operator, PASSWORD);
    const rowIds = () => p.page.$$eval('table.fleet tbody tr', (trs) => trs.map((tr) => (tr as HTMLElement).dataset.agent));
    const waitRows = (n: number) => p.page.waitForFunction((k) => document.querySelectorAll('table.fleet tbody tr').length === k, n);
    assert.equal(await text(p, '.counts .count.all strong'), '5');
    assert.equal(await text(p, '.counts .count.connected strong'), '5');
    assert.deepEqual((await rowIds()).sort(), a.map((x) => x.id).sort(), 'only bank-a\'s five agents');
    await checkAxe(p, 'fleet');

    await p.page.fill('#f-label', 'env=prod');
    await p.page.click('form.filters button[type=submit]');
    await p.page.waitForURL(/[?&]label=env%3Dprod/);
    await waitRows(2);
    assert.deepEqual((await rowIds()).sort(), [a[0]!.id, a[1]!.id].sort());
    await p.page.fill('#f-label', '');
    await p.page.fill('#f-q', 'sim-00004');
    await waitRows(1);
    assert.deepEqual(await rowIds(), [a[4]!.id]);
    await p.page.fill('#f-q', 'no-such-agent');
    await p.page.waitForSelector('#fleet-results :text("Nothing matches these filters.")');

    // An agent drops its connection: the open page shows it offline by itself (the fleet refreshes on its own).
    await p.page.goto(`${th.url}/fleet`);
    await p.page.evaluate(() => ((window as unknown as { ferryMark: boolean }).ferryMark = true));
    a[4]!.stop();
    await p.page.waitForSelector(`tr[data-agent="${a[4]!.id}"] .pill:text("offline")`, { timeout: 40_000 });
    assert.equal(await p.page.evaluate(() => (window as unknown as { ferryMark?: boolean }).ferryMark), true, 'the page was not reloaded');
    assert.equal(await text(p, '.counts .count.connected strong'), '4');
    assert.equal(await text(p, '.counts .count.offline strong'), '1');
    assert.match(await text(p, `tr[data-agent="${a[4]!.id}"]`), /offline\s+since /);
    await Promise.all([p.page.waitForURL(/[?&]state=offline/), p.page.click('.counts a.count.offline')]);
    assert.deepEqual(await rowIds(), [a[4]!.id]);
    await screenshot(p, 'fleet-offline');
    a[4]!.start();
    await waitFor('sim-00004 back', async () => (await api('GET', `/v1/agents/${a[4]!.id}`)).body.status === 'connected');

    // What an agent runs, as it reports it.
    const agent = a[0]!;
    agent.services = [
      { stack: 'payments', service: 'web', replica: 1, release: '1.1.0', status: 'running', health: 'unhealthy', restarts: 3, image: `127.0.0.1:5000/sim/web@sha256:${'b'.repeat(64)}` },
      { stack: 'payments', service: 'worker', replica: 1, release: '1.1.0', status: 'restarting', health: 'none', restarts: 7, image: `127.0.0.1:5000/sim/worker@sha256:${'c'.repeat(64)}` },
    ];
    agent.drift = ['payments/web: a container stopped by hand was started again'];
    agent.reportNow();
    await waitFor('the containers reported', async () => JSON.stringify((await api('GET', `/v1/agents/${agent.id}`)).body).includes('"restarts":7'));
    await p.page.goto(`${th.url}/agents/${agent.id}`);
    const stack = p.page.locator('section[aria-label="Stack payments"]');
    assert.match(await stack.locator('h3').innerText(), /payments @1\.1\.0 applied/);
    const cells = await stack.locator('tbody tr').evaluateAll((trs) => trs.map((tr) => Array.from(tr.children).map((c) => (c as HTMLElement).innerText.trim())));
    assert.deepEqual(cells, [
      ['web', '1', 'running', 'unhealthy', '3', `sha256:${'b'.repeat(12)}…`],
      ['worker', '1', 'restarting', 'none', '7', `sha256:${'c'.repeat(12)}…`],
    ]);
    assert.equal(await stack.locator('code.digest').first().getAttribute('title'), `127.0.0.1:5000/sim/web@sha256:${'b'.repeat(64)}`);
    assert.match(await text(p, 'section[aria-labelledby="drift-title"]'), /a container stopped by hand was started again/);
    const accepted = await text(p, 'section[aria-labelledby="accepted-title"]');
    assert.match(accepted, /payments@1\.1\.0\s+sha256:\S+\s+rm/, 'the release it accepted and who signed it');
    assert.match(await text(p, 'section[aria-labelledby="directives-title"] tbody'), /payments@1\.1\.0/);
    assert.match(await text(p, 'section[aria-labelledby="agent-audit-title"]'), /agent\.enroll/);
    await checkAxe(p, 'agent');
    await screenshot(p, 'agent', 'agent');
    assert.deepEqual(p.problems, []);
    await p.page.context().close();
  });

  await t.test('promote a baking wave and abort from the page: each asks first, naming what it will do', async () => {
    await simRelease(api, 'payments', '1.2.0');
    assert.equal((await api('POST', '/v1/releases/payments/1.2.0/tenants', { tenants: ['bank-a'] })).status, 200);
    const r = await api('POST', '/v1/rollouts', { stack: 'payments', version: '1.2.0', selector: 'tenant=bank-a', waves: '1,2,100%', bakeMs: 600_000 });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const id = r.body.id as string;
    const p = await openPage(browser);
    await login(p, th.url, operator, PASSWORD);
    await p.page.goto(`${th.url}/rollouts/${id}`);
    // wave 1's agent applies, then bakes for ten minutes: only a promotion starts wave 2 within this test
    const targetsOf = async () => (await api('GET', `/v1/rollouts/${id}`)).body.targets as { wave: number; state: string; seq: number | null }[];
    await waitFor('wave 1 baking', async () => (await targetsOf()).find((x) => x.wave === 1)?.state === 'baking', 30_000);
    await p.page.waitForSelector('li.wave[data-wave="1"][data-state="in-progress"]');
    assert.equal(await p.page.getAttribute('li.wave[data-wave="2"]', 'data-state'), 'pending');
    await p.page.click('button:text("Promote next wave")');
    assert.equal(p.dialogs.at(-1), `Start wave 2 of ${id} now, without waiting for wave 1 to finish its bake time? It sends payments@1.2.0 to 1 more agent.`);
    await p.page.waitForSelector('li.wave[data-wave="2"][data-state="in-progress"]', { timeout: 30_000 });
    await waitFor('wave 2 directed', async () => (await targetsOf()).find((x) => x.wave === 2)?.seq !== null, 30_000);
    await p.page.reload(); // the confirmation names the count as of the page's render
    await p.page.click('button:text("Abort")');
    assert.equal(p.dialogs.at(-1), `Abort ${id}? No further agent gets payments@1.2.0; the 2 already directed keep what they run (nothing is rolled back).`);
    await p.page.waitForSelector('[data-testid="rollout-state"]:text("aborted")', { timeout: 30_000 });
    const after = (await api('GET', `/v1/rollouts/${id}`)).body;
    assert.equal(after.state, 'aborted');
    assert.ok(after.targets.filter((x: { wave: number }) => x.wave <= 2).every((x: { seq: number | null }) => x.seq !== null), 'waves 1 and 2 were directed');
    assert.ok(after.targets.filter((x: { wave: number }) => x.wave === 3).every((x: { seq: number | null }) => x.seq === null), 'wave 3 got no directive');
    assert.equal(await p.page.locator('.actions button:text("Abort")').count(), 0, 'no abort for an aborted rollout');
    assert.deepEqual(p.problems, []);
    await p.page.context().close();
  });

  await t.test('a bank\'s person sees only its tenant: pages, filters, event stream', async () => {
    const ledger = await api('POST', '/v1/rollouts', { stack: 'ledger', version: '3.2.0', selector: 'tenant=bank-b', waves: '100%' });
    assert.equal(ledger.status, 201);
    await waitFor('bank-b rollout done', async () => (await api('GET', `/v1/rollouts/${ledger.body.id}`)).body.state === 'succeeded', 20_000);
    const p = await openPage(browser);
    await login(p, th.url, bViewer, PASSWORD);
    const rows = await p.page.locator('table.fleet tbody tr').count();
    assert.equal(rows, 2);
    for (const path of ['/fleet', '/stacks', '/releases', '/rollouts', '/audit']) {
      await p.page.goto(th.url + path);
      const body = await p.page.content();
      for (const secret of ['bank-a', a[0]!.id, firstRollout + '<', 'payments']) assert.ok(!body.includes(secret), `${path} shows ${secret}`);
    }
    // Controls this viewer may not use are not there.
    await p.page.goto(`${th.url}/fleet`);
    assert.equal(await p.page.locator('a[href="/enroll"]').count(), 0);
    await p.page.goto(`${th.url}/rollouts/${ledger.body.id}`);
    assert.equal(await p.page.locator('.actions button').count(), 0);
    for (const path of ['/fleet?tenant=bank-a', `/agents/${a[1]!.id}`, `/rollouts/${firstRollout}`, '/audit/bank-a', '/releases/payments/1.0.0', '/stacks?tenant=bank-a']) {
      const res = await p.page.goto(th.url + path);
      assert.equal(res?.status(), 404, path);
      assert.equal(await p.page.getAttribute('.error-note', 'data-code'), 'FERRY_E_NOT_FOUND', path);
    }
    await checkAxe(p, 'not found page');
    // The event stream from the beginning: only bank-b's.
    const events = await p.page.evaluate(
      (last) =>
        new Promise<{ rollout: string; tenant?: string; kind: string }[]>((resolve) => {
          const got: { rollout: string; tenant?: string; kind: string; to?: string }[] = [];
          const es = new EventSource('/v1/events?since=0');
          es.addEventListener('transition', (e) => {
            const d = JSON.parse((e as MessageEvent).data);
            got.push(d);
            if (d.rollout === last && d.kind === 'rollout' && d.to === 'succeeded') {
              es.close();
              resolve(got);
            }
          });
        }),
      ledger.body.id as string,
    );
    assert.ok(events.length > 2);
    for (const e of events) {
      assert.equal(e.rollout, ledger.body.id, `an event of another tenant's rollout: ${JSON.stringify(e)}`);
      if (e.tenant) assert.equal(e.tenant, 'bank-b');
    }
    assert.deepEqual(p.problems, []);
    await p.page.context().close();
  });

  await t.test('people, tokens, releases and stacks: a person added and granted on the page logs in to their tenant only, disabling them ends their session; a token made on the page works until revoked there; releases name signers, digests and where they run', async () => {
    const p = await openPage(browser);
    await login(p, th.url, 'admin', PASSWORD);
    await p.page.goto(`${th.url}/people`);
    await p.page.fill('#u-name', 'carol');
    await p.page.fill('#u-password', PASSWORD);
    await p.page.click('section[aria-labelledby="new-user-title"] button[type=submit]');
    await p.page.waitForSelector('table tbody th:text("carol"), table tbody td:text("carol")');
    const carol = (await th.api('GET', '/v1/users/carol')).body as { id: string };
    await p.page.selectOption(`#g-${carol.id}`, 'bank-b:viewer');
    await p.page.click(`form:has(#g-${carol.id}) button[type=submit]`);
    await waitFor('the grant is made', async () => (await th.api('GET', '/v1/users/carol')).body.tenants?.['bank-b'] === 'viewer');
    const c = await openPage(browser);
    await login(c, th.url, 'carol', PASSWORD);
    assert.match(await text(c, '.who'), /viewer on bank-b/);
    assert.equal(await c.page.locator('table.fleet tbody tr').count(), 2, "carol sees bank-b's two agents");
    assert.ok(!(await c.page.content()).includes('bank-a'));
    await p.page.click(`tr:has(#g-${carol.id}) button:text("Disable")`);
    assert.match(p.dialogs.at(-1) ?? '', /^Disable carol\? Their sessions end at once/);
    await waitFor('carol disabled', async () => (await th.api('GET', '/v1/users/carol')).body.disabledAt !== null);
    await c.page.goto(`${th.url}/fleet`);
    assert.match(c.page.url(), /\/login/, 'a disabled person is sent back to the login form');
    await c.page.context().close();

    // A token made on the page: shown once, works against the API with what it was given, revoked from the page.
    await p.page.goto(`${th.url}/tokens`);
    await p.page.fill('#t-name', 'wallboard');
    await p.page.selectOption('#t-role', 'viewer');
    await p.page.fill('#t-tenants', 'bank-b');
    await p.page.click('form[hx-post="/tokens"] button[type=submit]');
    await p.page.waitForSelector('#token-result pre.command, #alerts .error-note');
    assert.equal(await p.page.locator('#alerts .error-note').count(), 0, await p.page.locator('#alerts').innerText());
    const token = (await p.page.locator('#token-result pre.command').innerText()).trim();
    assert.match(token, /^ferry_\S+$/);
    const viaToken = apiClient(() => th.url, token);
    const seen = (await viaToken('GET', '/v1/agents')).body.agents as { tenant: string }[];
    assert.deepEqual([...new Set(seen.map((x) => x.tenant))], ['bank-b']);
    await p.page.goto(`${th.url}/tokens`);
    await p.page.click('tr:has-text("wallboard") button:text("Revoke")');
    await waitFor('the token stops working', async () => (await viaToken('GET', '/v1/agents')).status === 401);

    // Releases: the list names who signed and where each was delivered; a release's page its images by digest and where it runs.
    await p.page.goto(`${th.url}/releases`);
    const row = p.page.locator('tbody tr', { hasText: 'ledger' }).first();
    assert.match(await row.innerText(), /3\.2\.0/);
    assert.match(await row.innerText(), /\brm\b/, 'the signer is named');
    assert.match(await row.innerText(), /bank-b/, 'delivered to bank-b');
    await p.page.goto(`${th.url}/releases/ledger/3.2.0`);
    assert.match(await text(p, 'section[aria-labelledby="images-title"]'), /@sha256:[0-9a-f]{64}/);
    const where = await text(p, 'section[aria-labelledby="where-title"]');
    assert.match(where, /bank-b/);
    for (const name of ['b-00000', 'b-00001']) assert.ok(where.includes(name), `${name} runs ledger 3.2.0: ${where}`);
    await p.page.goto(`${th.url}/stacks?tenant=bank-b`);
    assert.match(await text(p, 'section[aria-labelledby="stack-ledger"]'), /3\.2\.0 on 2 agents/);
    await checkAxe(p, 'stacks');
    assert.deepEqual(p.problems, []);
    await p.page.context().close();
  });

  await t.test('enroll, label and revoke from the console; a write without the CSRF token is refused', async () => {
    const p = await openPage(browser);
    await login(p, th.url, 'admin', PASSWORD);
    await p.page.goto(`${th.url}/enroll`);
    await p.page.selectOption('#e-tenant', 'bank-a');
    await p.page.click('#enroll-result ~ *, form.stack-form button[type=submit]');
    const command = await p.page.locator('#enroll-result pre.command').innerText();
    const m = new RegExp(`^ferry-agent enroll --hub ${th.url.replace(/\./g, '\\.')} --token (ferry_enr_\\S+) --state-dir /var/lib/ferry-agent --name "\\$\\(hostname\\)"$`).exec(command.trim());
    assert.ok(m, command);
    await checkAxe(p, 'enroll with its token');
    await screenshot(p, 'enroll');
    const enrolled = await postEnroll(th.url, enrollBody(th.url, m[1]!, generateKeyPair(), 'from-console'));
    assert.equal(enrolled.status, 201, 'the token shown enrolls an agent');

    const target = a[3]!;
    await p.page.goto(`${th.url}/agents/${target.id}`);
    await p.page.fill('#l-set', 'zone=core tier=web');
    await p.page.fill('#l-remove', 'env');
    await p.page.click('#agent-labels button[type=submit]');
    await p.page.waitForSelector('#agent-labels code:text("tier=web")');
    assert.deepEqual((await api('GET', `/v1/agents/${target.id}`)).body.labels, { tier: 'web', zone: 'core' });

    // CSRF: the same writes from a script that leaves the token out.
    const refused = await p.page.evaluate(async (id) => {
      const page = await fetch(`/agents/${id}/revoke`, { method: 'POST' });
      const apiCall = await fetch(`/v1/agents/${id}/revoke`, { method: 'POST' });
      return { page: page.status, pageText: await page.text(), api: apiCall.status, apiBody: await apiCall.json() };
    }, target.id);
    assert.equal(refused.page, 403);
    assert.match(refused.pageText, /FERRY_E_CSRF/);
    assert.equal(refused.api, 403);
    assert.equal(refused.apiBody.error.code, 'FERRY_E_CSRF');
    assert.equal((await api('GET', `/v1/agents/${target.id}`)).body.status, 'connected', 'nothing was revoked');

    await p.page.click('button:text("Revoke agent")');
    await p.page.waitForSelector('.facts .pill:text("revoked")');
    assert.ok((p.dialogs.at(-1) ?? '').startsWith(`Revoke agent sim-00003 (${target.id})? Its connection is cut at once`), p.dialogs.at(-1));
    await waitFor('the revoked agent is cut off', () => !target.connected);
    assert.equal((await api('GET', `/v1/agents/${target.id}`)).body.status, 'revoked');
    assert.equal(await p.page.locator('button:text("Revoke agent")').count(), 0);
    assert.deepEqual(p.problems, []);
    await p.page.context().close();
  });

  await t.test('an agent name, labels and host facts holding markup render as text', async () => {
    // The API refuses such names and labels; a hostile agent's hello or an edited database is where they would come from.
    const victim = b[1]!;
    const name = `<script>window.ferryPwned=1</script>"'&`;
    const labels = JSON.stringify({ 'x"><img src=x onerror="window.ferryPwned=2">': '<b>bold</b>' });
    const facts = JSON.stringify({ host: { hostname: '<svg onload="window.ferryPwned=3">', platform: 'linux', release: '"quoted"', arch: 'x64', cpus: 1, memoryBytes: 1 } });
    const [before] = await th.rawSql<{ name: string; labels: string; facts: string }>('SELECT name, labels, facts FROM agents WHERE id = ?', [victim.id]);
    await th.rawSql('UPDATE agents SET name = ?, labels = ?, facts = ? WHERE id = ?', [name, labels, facts, victim.id]);
    const p = await openPage(browser);
    await login(p, th.url, 'admin', PASSWORD);
    for (const path of ['/fleet?tenant=bank-b', `/agents/${victim.id}`]) {
      await p.page.goto(th.url + path);
      assert.equal(await p.page.locator(`text=${name}`).count() > 0, true, `${path} shows the name as text`);
      assert.deepEqual(await p.page.locator(`[data-agent="${victim.id}"] ul.labels code, #agent-labels ul.labels code`).allInnerTexts(), ['x"><img src=x onerror="window.ferryPwned=2">=<b>bold</b>'], `${path} shows the label as text`);
      assert.ok((await p.page.getByText('<svg onload="window.ferryPwned=3">').count()) > 0, `${path} shows the host name as text`);
      assert.equal(await p.page.evaluate(() => (window as unknown as { ferryPwned?: number }).ferryPwned), undefined, `${path} ran none of it`);
      assert.equal(await p.page.locator('img[src=x], svg, b').count(), 0, `${path} made no element of it`);
      assert.equal(await p.page.locator('script').count(), 3, `${path}: only the console's own scripts`);
    }
    await screenshot(p, 'markup-as-text');
    await th.rawSql('UPDATE agents SET name = ?, labels = ?, facts = ? WHERE id = ?', [before!.name, before!.labels, before!.facts, victim.id]);
    assert.deepEqual(p.problems, []);
    await p.page.context().close();
  });

  await t.test('every page passes axe-core (light and dark); the README\'s screenshots', async () => {
    for (const scheme of ['light', 'dark'] as const) {
      const p = await openPage(browser, { colorScheme: scheme });
      await login(p, th.url, 'admin', PASSWORD);
      const pages: [string, string, string?][] = [
        ['/fleet', 'fleet', 'fleet'],
        [`/agents/${a[0]!.id}`, 'agent'],
        ['/stacks?tenant=bank-a', 'stacks'],
        ['/releases', 'releases'],
        ['/releases/payments/1.0.0', 'release'],
        ['/rollouts', 'rollouts'],
        [`/rollouts/${firstRollout}`, 'rollout-detail'],
        ['/audit', 'audit-logs'],
        ['/people', 'people'],
        ['/tokens', 'tokens'],
      ];
      for (const [path, name, readme] of pages) {
        await p.page.goto(th.url + path);
        await checkAxe(p, `${path} (${scheme})`);
        await screenshot(p, `${name}-${scheme}`, scheme === 'light' ? readme : undefined);
      }
      // a token made on the page is shown once
      await p.page.goto(`${th.url}/tokens`);
      await p.page.fill('#t-name', `wall-${scheme}`);
      await p.page.selectOption('#t-role', 'viewer');
      await p.page.click('#token-result ~ *, section.card form button[type=submit]');
      assert.match(await p.page.locator('#token-result pre').innerText(), /^ferry_api_/);
      await checkAxe(p, `tokens with a new token (${scheme})`);
      assert.deepEqual(p.problems, []);
      await p.page.context().close();
    }
  });

  await t.test('the audit badge is computed in the browser and turns red when a row is edited in the sqlite file', async () => {
    const cp = await api('POST', '/v1/audit/bank-a/checkpoint');
    assert.equal(cp.status, 200);
    const p = await openPage(browser);
    await login(p, th.url, operator, PASSWORD);
    await p.page.goto(`${th.url}/audit/bank-a`);
    await p.page.waitForSelector('#audit-badge[data-result="ok"]', { timeout: 30_000 });
    assert.match(await text(p, '#audit-badge'), new RegExp(`^Verified in this browser: ${cp.body.size} entries match 1 signed checkpoint`));
    await checkAxe(p, 'audit log, verified');
    await screenshot(p, 'audit', 'audit');
    // The evidence pack, downloaded from the page, checked offline with the command the page shows.
    const dir = tempDir(t, 'ferry-console-pack-');
    const verifyPack = async (name: string) => {
      const [download] = await Promise.all([p.page.waitForEvent('download'), p.page.click('a:text("Download the evidence pack")')]);
      const file = join(dir, name);
      await download.saveAs(file);
      const shown = (await text(p, 'code.command')).trim().split(/\s+/);
      assert.deepEqual(shown.slice(0, 7), ['ferry', 'audit', 'verify', '--tenant', 'bank-a', '--file', download.suggestedFilename()]);
      assert.equal(shown[7], '--hub-key');
      return run('ferry', [...shown.slice(1, 6), file, ...shown.slice(7)], { env: { FERRY_HUB: '', FERRY_TOKEN: '', XDG_CONFIG_HOME: dir } });
    };
    const good = await verifyPack('before.ndjson');
    assert.equal(good.code, 0, good.stderr);
    assert.match(good.stdout, new RegExp(`^ok {3}bank-a: ${cp.body.size} entries, 1 checkpoints`));

    // An intruder with the database file: the append-only triggers dropped, one entry's bytes changed.
    await th.rawSql('DROP TRIGGER IF EXISTS audit_entries_no_update');
    await th.rawSql(`UPDATE audit_entries SET data = CAST(replace(CAST(data AS TEXT), '"outcome":"ok"', '"outcome":"refused"') AS BLOB) WHERE log = 'bank-a' AND idx = 3`);
    await p.page.reload();
    await p.page.waitForSelector('#audit-badge[data-result="bad"]', { timeout: 30_000 });
    assert.match(await text(p, '#audit-badge'), /^Tampered: /);
    assert.match(await text(p, '#audit-badge-details'), /entry 3 was edited: its bytes no longer hash to its leaf/);
    await checkAxe(p, 'audit log, tampered');
    const bad = await verifyPack('after.ndjson');
    assert.equal(bad.code, 5, bad.stdout + bad.stderr);
    assert.match(bad.stdout, /^FAIL bank-a: [\s\S]*edited at entry 3: /m);
    await screenshot(p, 'audit-tampered');
    assert.deepEqual(p.problems, []);
    await p.page.context().close();
  });
});

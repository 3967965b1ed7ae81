// The console's live update: from an agent's report to the change on open
// pages. A hub, simulated agents speaking the real protocol
// (test/helpers/sim-agents.ts, each reporting its release applied at a
// different moment), and TABS console tabs in Debian's Chromium on the
// rollouts page, spread over several viewers, 4 tabs each (each tab's event
// stream holds one of the 6 connections Chromium opens to a host over
// HTTP/1.1). A rollout to every agent; each agent's 'applied' report is
// timed as it leaves the agent, and each tab records when its "agents done"
// count first reaches k (a MutationObserver, the page never reloads). Latency
// is the DOM time minus the k-th report's send time, for every tab and k.
// Peer: the same pages with one tab, in the same run.
//   node dist/bench/console-live.js [tabs=50] [agents=20]
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Page } from 'playwright-core';
import { createHub } from '../hub/server.js';
import { silentLogger } from '../shared/logger.js';
import { retryNetworkChanged } from '../test/helpers/browser.js';
import { apiClient, simAgents, simRelease, type SimAgent } from '../test/helpers/sim-agents.js';
import { fmt, quantile, table } from './lib/report.js';
import { seedHub } from './lib/seed.js';

const TABS = Math.max(1, Number(process.argv[2] ?? 50) || 50);
const AGENTS = Math.max(2, Number(process.argv[3] ?? 20) || 20);
// Tabs per browser profile (one person logged in): Chromium opens at most 6 HTTP/1.1
// connections per host and each tab's event stream holds one, so a 6th tab's page load waits.
const PER_PERSON = 4;
const CHROMIUM = process.env.FERRY_CHROMIUM ?? '/usr/bin/chromium';
const PASSWORD = 'bench live console password';

const root = mkdtempSync(join(tmpdir(), 'ferry-bench-live-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));
const { token } = await seedHub(root, join(root, 'keys.json'), 0, 1);
const hub = await createHub({ dataDir: root, host: '127.0.0.1', port: 0, heartbeatMs: 60_000, checkpointMs: 3_600_000, rateLimitPerMinute: 0, rolloutTickMs: 50, log: silentLogger() });
const api = apiClient(() => hub.url, token);
const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
const agents: SimAgent[] = [];

async function must(r: Promise<{ status: number; body: unknown }>, ok: number, what: string) {
  const x = await r;
  if (x.status !== ok) throw new Error(`${what}: ${x.status} ${JSON.stringify(x.body)}`);
  return x.body as Record<string, unknown>;
}

/** Of the latest round: report sent -> the hub's record of the target done; that record -> each tab's DOM. */
let hubLag: number[] = [];
let pageLag: number[] = [];

/** One round: `tabs` tabs on /rollouts, one rollout of `version`; latencies in ms. */
async function round(tabs: number, version: string): Promise<number[]> {
  await simRelease(api, 'payments', version);
  const people = Math.ceil(tabs / PER_PERSON);
  const pages: Page[] = [];
  for (let u = 0; u < people; u++) {
    const name = `viewer-${version.replace(/\./g, '-')}-${u}`;
    await must(api('POST', '/v1/users', { name, kind: 'person', vendorRole: 'viewer', password: PASSWORD }), 201, 'user');
    const ctx = await browser.newContext();
    // set before any page script runs (an init script, which the console's CSP does not govern)
    await ctx.addInitScript(() => document.addEventListener('htmx:sseOpen', () => ((window as unknown as { ferryOpen: boolean }).ferryOpen = true)));
    const login = await ctx.newPage();
    retryNetworkChanged(login);
    await login.goto(`${hub.url}/login`);
    await login.fill('#login-user', name);
    await login.fill('#login-password', PASSWORD);
    await Promise.all([login.waitForURL(/\/fleet/), login.click('form.stack-form button[type=submit]')]);
    await login.close();
    for (let i = 0; i < Math.min(PER_PERSON, tabs - u * PER_PERSON); i++) {
      const p = await ctx.newPage();
      retryNetworkChanged(p);
      await p.goto(`${hub.url}/rollouts`);
      // the tab's event stream is open before anything happens
      await p.waitForFunction(() => (window as unknown as { ferryOpen?: boolean }).ferryOpen === true);
      await p.evaluate((v) => {
        const w = window as unknown as { ferrySeen: number[]; ferryMark: boolean };
        w.ferrySeen = [];
        w.ferryMark = true;
        const look = () => {
          const row = Array.from(document.querySelectorAll('#rollouts-live tbody tr')).find((tr) => tr.textContent?.includes(`payments@${v}`));
          const done = Number(row?.querySelector('progress')?.getAttribute('value') ?? 0);
          while (w.ferrySeen.length < done) w.ferrySeen.push(Date.now());
        };
        new MutationObserver(look).observe(document.body, { subtree: true, childList: true, attributes: true });
      }, version);
      pages.push(p);
    }
  }
  const sent: number[] = [];
  for (const a of agents) a.onSend = (m) => void (m.type === 'status' && (m.releases as { version: string; state: string }[]).some((r) => r.version === version && r.state === 'applied') && sent.length < AGENTS && sent.push(Date.now()));
  const r = await must(api('POST', '/v1/rollouts', { stack: 'payments', version, selector: 'tenant=bank-a', waves: '100%' }), 201, 'rollout');
  const deadline = Date.now() + 120_000;
  for (;;) {
    const seen = await Promise.all(pages.map((p) => p.evaluate(() => (window as unknown as { ferrySeen: number[] }).ferrySeen.length)));
    if (seen.every((n) => n >= AGENTS)) break;
    if (Date.now() > deadline) throw new Error(`rollout ${String(r.id)}: tabs saw ${seen.join(',')} of ${AGENTS}`);
    await new Promise((res) => setTimeout(res, 200));
  }
  sent.sort((a, b) => a - b);
  const detail = await must(api('GET', `/v1/rollouts/${String(r.id)}`), 200, 'rollout');
  const recorded = (detail.targets as { updatedAt: string }[]).map((t) => Date.parse(t.updatedAt)).sort((a, b) => a - b);
  hubLag.push(...recorded.map((t, k) => t - sent[k]!));
  const out: number[] = [];
  for (const p of pages) {
    const w = await p.evaluate(() => ({ seen: (window as unknown as { ferrySeen: number[] }).ferrySeen, mark: (window as unknown as { ferryMark?: boolean }).ferryMark === true }));
    if (!w.mark) throw new Error('a tab reloaded');
    w.seen.slice(0, AGENTS).forEach((t, k) => {
      out.push(t - sent[k]!);
      pageLag.push(t - recorded[k]!);
    });
    await p.close();
  }
  for (const c of browser.contexts()) await c.close();
  return out;
}

try {
  // Agents report 'applied' 400 ms apart, so each report is its own change on the page.
  for (let i = 0; i < AGENTS; i++) agents.push(...(await simAgents(api, () => hub.url, 'bank-a', 1, { applyMs: 300 + i * 400, namePrefix: `live-${i}` })));
  const start = Date.now();
  while (!(await api('GET', '/v1/agents')).body.agents.every((x: { status: string }) => x.status === 'connected')) {
    if (Date.now() - start > 30_000) throw new Error('agents did not connect');
    await new Promise((res) => setTimeout(res, 100));
  }
  const one = await round(1, '1.0.0');
  const split = (): string[] => [fmt(quantile(hubLag, 0.5), 0), fmt(quantile(pageLag, 0.5), 0)];
  const oneSplit = split();
  hubLag = [];
  pageLag = [];
  const many = await round(TABS, '2.0.0');
  const manySplit = split();
  console.log(`bench/console-live: ${AGENTS} simulated agents, reports 400 ms apart, ${cpus()[0]?.model ?? 'cpu'} x${availableParallelism()}, Node ${process.version}\n`);
  console.log(
    table([
      ["agent's 'applied' report to the rollouts page's count", 'samples', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms', 'p50 report->hub record', 'p50 record->page'],
      ['1 tab (peer)', String(one.length), fmt(quantile(one, 0.5), 0), fmt(quantile(one, 0.95), 0), fmt(quantile(one, 0.99), 0), fmt(Math.max(...one), 0), ...oneSplit],
      [`${TABS} tabs`, String(many.length), fmt(quantile(many, 0.5), 0), fmt(quantile(many, 0.95), 0), fmt(quantile(many, 0.99), 0), fmt(Math.max(...many), 0), ...manySplit],
    ]),
  );
  console.log(`\np99 ratio (${TABS} tabs / 1 tab): ${fmt(quantile(many, 0.99) / quantile(one, 0.99), 2)}x (target: p99 under 500 ms with 50 tabs)`);
} finally {
  for (const a of agents) a.stop();
  await browser.close();
  await hub.close();
}

// Headless Chromium for the console tests: Debian's `chromium`, driven by
// playwright-core (no browser download). Each page records what the console
// must never cause — script errors and Content-Security-Policy violations —
// and accepts confirmation dialogs (a test reads what they said). axe-core is
// run inside pages through the DevTools protocol (an injected <script> would be
// refused by the console's own CSP), failing on serious and critical findings.
// Screenshots go to test-artefacts/console/ (FERRY_TEST_ARTEFACTS to change
// it); with FERRY_UPDATE_SCREENSHOTS=1 the README's are rewritten too.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { chromium, type Browser, type Page } from 'playwright-core';
import { skipOrFail } from './skip.js';

export const CHROMIUM = process.env.FERRY_CHROMIUM ?? '/usr/bin/chromium';
const ROOT = new URL('../../../', import.meta.url).pathname;
export const ARTEFACTS = process.env.FERRY_TEST_ARTEFACTS ?? join(ROOT, 'test-artefacts', 'console');
export const README_SHOTS = join(ROOT, 'docs', 'screenshots');
const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

/** A browser for the test (closed after it), or null when there is none (a loud skip; under CI a failure). */
export async function launchBrowser(t: TestContext): Promise<Browser | null> {
  if (!existsSync(CHROMIUM)) {
    skipOrFail(t, `no Chromium at ${CHROMIUM} (bash scripts/test-env.sh installs Debian's chromium)`);
    return null;
  }
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
  t.after(() => browser.close());
  return browser;
}

export interface ConsolePage {
  page: Page;
  /** Script errors, failed resources and CSP violations seen so far. */
  problems: string[];
  /** What each confirmation dialog asked, in order (all were accepted). */
  dialogs: string[];
}

export async function openPage(browser: Browser, opts: { colorScheme?: 'light' | 'dark' } = {}): Promise<ConsolePage> {
  const ctx = await browser.newContext({ viewport: { width: 1366, height: 860 }, colorScheme: opts.colorScheme ?? 'light' });
  const page = await ctx.newPage();
  retryNetworkChanged(page);
  const problems: string[] = [];
  const dialogs: string[] = [];
  page.on('pageerror', (e) => problems.push(`script error: ${e.message}`));
  page.on('console', (m) => {
    // Refusals the test provokes are the answers it checks; htmx's SSE extension logs a bare
    // "[object Event]" when the browser drops a stream as the page goes away.
    if (m.type() === 'error' && !/status of (401|403|404|409)/.test(m.text()) && m.text() !== '[object Event]') problems.push(`console: ${m.text()}`);
  });
  page.on('dialog', (d) => {
    dialogs.push(d.message());
    void d.accept();
  });
  return { page, problems, dialogs };
}

/**
 * Chromium aborts a navigation with ERR_NETWORK_CHANGED when a network
 * interface comes or goes — on a machine where other tests create Docker
 * networks, even for 127.0.0.1. Such a navigation is tried again (twice at
 * most); any other failure is the test's.
 */
export function retryNetworkChanged(page: Page): void {
  const goto = page.goto.bind(page);
  page.goto = async (url, opts) => {
    for (let attempt = 0; ; attempt++) {
      try {
        return await goto(url, opts);
      } catch (err) {
        if (attempt >= 2 || !/ERR_NETWORK_CHANGED/.test((err as Error).message)) throw err;
      }
    }
  };
}

export async function login(p: ConsolePage, hubUrl: string, user: string, password: string): Promise<void> {
  await p.page.goto(`${hubUrl}/login`);
  await p.page.fill('#login-user', user);
  await p.page.fill('#login-password', password);
  await Promise.all([p.page.waitForURL(/\/fleet/), p.page.click('form.stack-form button[type=submit]')]);
}

/** axe-core over the page as it is now: no serious or critical finding. */
export async function checkAxe(p: ConsolePage, what: string): Promise<void> {
  await p.page.evaluate(AXE);
  const found = await p.page.evaluate(async () => {
    const r = await (globalThis as unknown as { axe: { run(ctx: unknown, opts: unknown): Promise<{ violations: { id: string; impact: string | null; help: string; nodes: { target: unknown }[] }[] }> } }).axe.run(document, {
      resultTypes: ['violations'],
    });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => JSON.stringify(n.target)) }));
  });
  const bad = found.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(bad, [], `${what}: accessibility findings (axe-core): ${JSON.stringify(bad, null, 1)}`);
}

/** A full-page screenshot as a test artefact (and, when asked, as the README's picture of `readme`). */
export async function screenshot(p: ConsolePage, name: string, readme?: string): Promise<string> {
  mkdirSync(ARTEFACTS, { recursive: true });
  const file = join(ARTEFACTS, `${name}.png`);
  await p.page.screenshot({ path: file, fullPage: true });
  if (readme && process.env.FERRY_UPDATE_SCREENSHOTS === '1') {
    mkdirSync(README_SHOTS, { recursive: true });
    await p.page.screenshot({ path: join(README_SHOTS, `${readme}.png`), fullPage: false });
  }
  return file;
}

// Watching what runs, end to end on the real engine with real agent
// processes: service checks (HTTP status, HTTP body regex, TCP, a command) against a real
// container flip to failing when the service answers 502, when its body no
// longer matches and when it is stopped, and back to normal when fixed, with
// one signed alert notice each at a real HTTP receiver (which refuses the
// first POST: the notice is retried, not lost); check transitions made while
// the hub is away survive an agent kill -9; verification jobs gate a
// rollout's waves (a failing one rolls the canary back, its output reaches
// the hub, the rollout pauses; a passing one lets the next wave start); and
// /metrics, scraped during the rollout through a token and through
// --metrics-listen, parses as Prometheus text.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { SIGNATURE_HEADER, verifyWebhook } from '../../hub/checks/webhook.js';
import type { Check, Service } from '../../shared/release.js';
import { buildTestImage, dockerOk, requireDocker } from '../helpers/docker.js';
import { fleet, type Fleet, type FleetAgent } from '../helpers/fleet.js';
import { run } from '../helpers/proc.js';
import { service } from '../helpers/signing.js';
import { waitFor } from '../helpers/tmp.js';
import { receiver } from '../helpers/webhook.js';

// A CGI status page: 502 while /tmp/broken exists, "status: degraded" (still 200) while /tmp/degraded does.
const STATUS_CGI = [
  '#!/bin/sh',
  'if [ -f /tmp/broken ]; then printf "Status: 502 Bad Gateway\\r\\nContent-Type: text/plain\\r\\n\\r\\nbroken\\n"',
  'elif [ -f /tmp/degraded ]; then printf "Content-Type: text/plain\\r\\n\\r\\nstatus: degraded\\n"',
  'else printf "Content-Type: text/plain\\r\\n\\r\\nstatus: ok\\n"; fi',
  '',
].join('\n');

async function webImage(): Promise<string> {
  const img = await buildTestImage('ferry-test/checks-web', 'v1', {
    push: true,
    applets: ['chmod'],
    // httpd as the shell's child: the service can stop (touch /tmp/down and kill it) while its container runs on
    cmd: ['sh', '-c', 'trap "exit 0" TERM; chmod 755 /www/cgi-bin/status; while :; do if [ -f /tmp/down ]; then sleep 0.2; else httpd -f -p 8080 -h /www & echo $! > /tmp/httpd.pid; wait $!; fi; done'],
    files: { '/www/cgi-bin/status': STATUS_CGI, '/www/index.html': 'hello from web\n' },
  });
  return img.ref!;
}

const every = { intervalMs: 1000, timeoutMs: 800 } as const;

async function checkOf(f: Fleet, agent: string, name: string): Promise<{ state: string; lastError: string | null; since: string } | undefined> {
  const r = await f.th.api('GET', `/v1/checks?agent=${agent}`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return (r.body.checks as { check: string; state: string; lastError: string | null; since: string }[]).find((c) => c.check === name);
}

function waitCheck(f: Fleet, agent: string, name: string, state: string, timeoutMs = 60_000) {
  return waitFor(`check ${name} ${state}`, async () => {
    const c = await checkOf(f, agent, name);
    return c?.state === state ? c : null;
  }, timeoutMs, 200);
}

function webContainer(a: FleetAgent): Promise<string> {
  return dockerOk(['ps', '-aq', '--filter', `label=ferry.agent=${a.id}`, '--filter', 'label=ferry.service=web']).then((s) => s.trim().split('\n')[0]!);
}

const SECRET = 'a webhook secret of some length';

test('checks against a real container: 502, a body that no longer matches, a command that exits 4 and a stopped service each fail and recover, one signed alert each, retried until received', { timeout: 300_000 }, async (t) => {
  if (!(await requireDocker(t))) return;
  const hook = await receiver(t, 1);
  const f = await fleet(t, { hub: { webhook: { url: hook.url, secret: SECRET }, alerts: { tickMs: 200, scanMs: 1000, flapCount: 100 } } }); // flapping: unit-tested (rules)
  const [a] = f.agents as [FleetAgent];
  const checks: Record<string, Check> = {
    status: { http: { url: 'http://web:8080/cgi-bin/status', method: 'GET', status: [200] }, ...every, failures: 2, successes: 2 },
    body: { http: { url: 'http://web:8080/cgi-bin/status', method: 'GET', status: [200], body: '^status: ok' }, ...every, failures: 1, successes: 1 },
    port: { tcp: { address: 'web:8080' }, ...every, failures: 1, successes: 1 },
    // a command in each of web's containers (docker exec): exit 0 passes
    marker: { command: { service: 'web', run: ['sh', '-c', 'if [ -f /tmp/broken ]; then echo "marker file present"; exit 4; fi'] }, ...every, failures: 1, successes: 1 },
  };
  await f.publish('shop', '1.0.0', { web: service(await webImage(), { stopGracePeriodMs: 1000 }) }, { checks });
  await f.deploy(a, 'shop', '1.0.0');
  await f.waitRelease(a, 'shop', '1.0.0', 'applied');
  for (const name of Object.keys(checks)) await waitCheck(f, a.id, name, 'passing');
  const web = await webContainer(a);
  const env = { FERRY_HUB: f.th.url, FERRY_TOKEN: f.th.adminToken, XDG_CONFIG_HOME: a.stateDir };
  const ok = await run('ferry', ['checks', 'ls', '--tenant', 'bank-r'], { env });
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /shop\/status\s+http\s+passing/);

  // 502: the status check fails (after two probes), the TCP check does not
  await dockerOk(['exec', web, 'touch', '/tmp/broken']);
  const failing = await waitCheck(f, a.id, 'status', 'failing');
  assert.match(failing.lastError!, /^web#0 \(\d+\.\d+\.\d+\.\d+\): got 502, expected 200$/, 'the replica, its address on the stack network, and what was wrong');
  assert.equal((await checkOf(f, a.id, 'port'))!.state, 'passing');
  const ls = await run('ferry', ['checks', 'ls', '--tenant', 'bank-r', '--failing'], { env });
  assert.equal(ls.code, 1, 'ferry checks ls exits 1 while a check fails');
  assert.match(ls.stdout, /shop\/status\s+http\s+failing\s+\S+\s+.*got 502, expected 200/);
  assert.doesNotMatch(ls.stdout, /shop\/port/);
  assert.match((await waitCheck(f, a.id, 'marker', 'failing')).lastError!, /^web#0: sh exited 4: marker file present$/);
  await dockerOk(['exec', web, 'rm', '/tmp/broken']);
  // the body check expects a 200 too: it failed as well (one probe is enough for it)
  for (const name of ['status', 'body', 'marker']) await waitCheck(f, a.id, name, 'passing');

  // a 200 whose body no longer matches
  await dockerOk(['exec', web, 'touch', '/tmp/degraded']);
  assert.match((await waitCheck(f, a.id, 'body', 'failing')).lastError!, /failed to find a match for \/\^status: ok\/ in the response body/);
  await dockerOk(['exec', web, 'rm', '/tmp/degraded']);
  await waitCheck(f, a.id, 'body', 'passing');

  // the service stopped inside its running container (no restart policy sees that): nothing listens
  await dockerOk(['exec', web, 'sh', '-c', 'touch /tmp/down && kill $(cat /tmp/httpd.pid)']);
  assert.match((await waitCheck(f, a.id, 'port', 'failing')).lastError!, /ECONNREFUSED web:8080/);
  for (const name of ['status', 'body']) assert.match((await waitCheck(f, a.id, name, 'failing')).lastError!, /ECONNREFUSED/);
  await dockerOk(['exec', web, 'rm', '/tmp/down']);
  for (const name of Object.keys(checks)) await waitCheck(f, a.id, name, 'passing');

  // one notice per change (status failed twice: 502, then the stop; body three times: 502, no match, the stop), each signed over
  // exactly the bytes received; the first POST was refused and retried
  const want: Record<string, number> = { 'status:check.failing': 2, 'status:check.recovered': 2, 'body:check.failing': 3, 'body:check.recovered': 3, 'port:check.failing': 1, 'port:check.recovered': 1, 'marker:check.failing': 1, 'marker:check.recovered': 1 };
  const tally = (xs: { event: string; detail: { check?: unknown } }[]) => {
    const out: Record<string, number> = {};
    for (const x of xs) out[`${String(x.detail.check)}:${x.event}`] = (out[`${String(x.detail.check)}:${x.event}`] ?? 0) + 1;
    return out;
  };
  await waitFor('every notice at the webhook', () => hook.got.length >= 14 || null, 60_000, 200);
  assert.deepEqual(tally(hook.got.map((n) => n.body)), want, hook.got.map((n) => n.body.summary).join('\n'));
  assert.ok(hook.got.every((n) => !n.body.repeat && n.body.key.startsWith(`check:${a.id}:shop/`)));
  for (const n of hook.got) {
    assert.ok(verifyWebhook(SECRET, n.headers[SIGNATURE_HEADER] as string, n.raw, Date.now(), 600_000), `signature of ${n.body.event}`);
    assert.ok(!verifyWebhook('another secret entirely', n.headers[SIGNATURE_HEADER] as string, n.raw, Date.now(), 600_000));
    assert.equal(n.headers['x-ferry-event'], n.body.event);
  }
  assert.ok(hook.posts() > hook.got.length, 'the refused POST was retried');
  assert.equal(new Set(hook.got.map((n) => n.headers['x-ferry-delivery'])).size, hook.got.length, 'each delivery id once');
  const first = hook.got.find((n) => n.body.event === 'check.failing' && n.body.detail.check === 'status')!;
  assert.match(first.body.summary, /shop\/status on host-0 \(bank-r\) is failing: .*got 502, expected 200/);

  // the same at the hub: alerts resolved, history in order, alerts on the event stream
  const alerts = (await f.th.api('GET', '/v1/alerts?tenant=bank-r')).body.alerts as { key: string; state: string }[];
  assert.deepEqual(alerts.filter((x) => x.key.startsWith('check:')).map((x) => x.state), ['resolved', 'resolved', 'resolved', 'resolved']);
  const hist = (await f.th.api('GET', `/v1/agents/${a.id}/checks?check=status`)).body.history as { from: string; to: string; error: string | null }[];
  assert.deepEqual(hist.map((h) => `${h.from}>${h.to}`).reverse(), ['pending>passing', 'passing>failing', 'failing>passing', 'passing>failing', 'failing>passing']);
  const stream = await run('ferry', ['events', '--since', '0', '--kind', 'alert', '--limit', '14', '--json'], { env });
  assert.equal(stream.code, 0, stream.stderr);
  const streamed = stream.stdout.trim().split('\n').map((l) => JSON.parse(l) as { id: number; kind: string; event: string; detail: { check?: string } });
  assert.deepEqual(tally(streamed), want, 'the same notices on the event stream');
  assert.deepEqual(streamed.map((e) => e.id), hook.got.map((n) => n.body.id).sort((x, y) => x - y), 'each webhook notice names its event on the stream');

  // transitions made while the hub is away survive a kill -9 of the agent
  await f.closeHub();
  await dockerOk(['exec', web, 'touch', '/tmp/broken']);
  await waitFor('the transition recorded by the agent', () => {
    const book = JSON.parse(readFileSync(join(a.stateDir, 'checks.json'), 'utf8')) as { outbox: { check: string; to: string }[] };
    return book.outbox.some((x) => x.check === 'status' && x.to === 'failing') || null;
  }, 30_000, 200);
  await a.daemon.stop('SIGKILL');
  a.start();
  await f.reopenHub();
  await waitFor('agent connected again', async () => (await f.th.api('GET', `/v1/agents/${a.id}`)).body.status === 'connected', 30_000);
  const after = (await f.th.api('GET', `/v1/agents/${a.id}/checks?check=status`)).body.history as { from: string; to: string; error: string | null }[];
  await waitCheck(f, a.id, 'status', 'failing', 30_000);
  const hist2 = (await f.th.api('GET', `/v1/agents/${a.id}/checks?check=status`)).body.history as { from: string; to: string; error: string | null }[];
  assert.ok(hist2.length >= after.length);
  assert.equal(hist2.filter((h) => h.to === 'failing').length, 3, 'the failure made while the hub was away is in the history, once');
  assert.match(hist2[0]!.error ?? '', /got 502/);
});

test('verification jobs gate a rollout: a failing job rolls the canary back with its output at the hub and pauses the rollout; a passing one lets the next wave start; /metrics scraped meanwhile', { timeout: 400_000 }, async (t) => {
  if (!(await requireDocker(t))) return;
  const f = await fleet(t, { agents: 2, bakeMs: 1000, hub: { metricsListen: { host: '127.0.0.1', port: 0 } } });
  const api = f.th.api;
  const web = await webImage();
  const base: Record<string, Service> = { web: service(web, { stopGracePeriodMs: 1000, healthcheck: { test: ['CMD', 'wget', '-q', '-O-', 'http://127.0.0.1:8080/'], intervalMs: 300, timeoutMs: 2000, retries: 3 } }) };
  const job = (script: string): Service => service(web, { command: ['sh', '-c', script], restart: 'no', verify: { timeoutMs: 30_000 }, stopGracePeriodMs: 1000 });
  await f.publish('shop', '1.0.0', base);
  // the job reaches web by name on the stack's network, as an integration test would
  await f.publish('shop', '2.0.0', { ...base, 'integration-test': job('wget -q -O- http://web:8080/ && echo "3 of 12 tests failed: refund rounding" && exit 3') });
  await f.publish('shop', '2.1.0', { ...base, 'integration-test': job('wget -q -O- http://web:8080/ | grep -q "hello from web" && echo "12 of 12 tests passed"') });
  const go = async (version: string) => {
    const r = await api('POST', '/v1/rollouts', { stack: 'shop', version, selector: 'tenant=bank-r', waves: '1,100%', bakeMs: 1000 });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body.id as string;
  };
  const until = (id: string, states: string[]) =>
    waitFor(`${id} ${states.join('|')}`, async () => {
      const v = (await api('GET', `/v1/rollouts/${id}`)).body;
      return states.includes(v.state) ? v : null;
    }, 240_000, 250);
  assert.equal((await until(await go('1.0.0'), ['succeeded', 'paused'])).state, 'succeeded');

  // a failing job: the canary rolls back to 1.0.0, the rollout pauses, the other agent is not touched
  const id2 = await go('2.0.0');
  const scrapes: string[] = [];
  const scrape = async () => {
    const viaApi = await api('GET', '/metrics', undefined, await f.th.tokenFor('viewer'));
    assert.equal(viaApi.status, 200);
    assert.match(String(viaApi.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    const res = await fetch(`http://127.0.0.1:${f.th.hub.metricsPort}/metrics`);
    assert.equal(res.status, 200);
    scrapes.push(viaApi.body as string, await res.text());
  };
  await scrape(); // during the rollout
  const r2 = await until(id2, ['paused', 'succeeded']);
  assert.equal(r2.state, 'paused');
  const [canary, other] = r2.targets as { agent: string; state: string; code: string | null }[];
  assert.equal(canary!.state, 'failed');
  assert.equal(canary!.code, 'FERRY_E_VERIFY_FAILED');
  assert.equal(other!.state, 'pending', 'the second wave did not start');
  const canaryAgent = f.agents.find((x) => x.id === canary!.agent)!;
  const otherAgent = f.agents.find((x) => x.id === other!.agent)!;
  const rolled = await f.waitRelease(canaryAgent, 'shop', '2.0.0', 'rolled-back');
  assert.equal(rolled.runningVersion, '1.0.0');
  const status = (rolled as unknown as { message?: string; verification?: { state: string; jobs: { service: string; exitCode: number; output: string[] }[] } });
  assert.equal(status.verification?.state, 'failed');
  assert.equal(status.verification?.jobs[0]?.exitCode, 3);
  assert.ok(status.verification?.jobs[0]?.output.includes('3 of 12 tests failed: refund rounding'), JSON.stringify(status.verification));
  assert.match(status.message ?? '', /integration-test exited 3: .*3 of 12 tests failed/);
  const otherNow = (await api('GET', `/v1/agents/${otherAgent.id}`)).body.running.releases.find((x: { stack: string }) => x.stack === 'shop');
  assert.equal(otherNow.version, '1.0.0');
  assert.equal((await dockerOk(['ps', '-aq', '--filter', `label=ferry.agent=${canaryAgent.id}`, '--filter', 'label=ferry.service=integration-test'])).trim(), '', 'the job container is gone');
  assert.equal((await api('POST', `/v1/rollouts/${id2}/abort`)).status, 200);

  // a passing job: the canary verifies, then (and only then) the second wave
  const id3 = await go('2.1.0');
  await scrape();
  const r3 = await until(id3, ['succeeded', 'paused']);
  assert.equal(r3.state, 'succeeded', JSON.stringify(r3.targets));
  const [c3, ...rest] = r3.targets as { agent: string; appliedAt: string; seq: number }[];
  for (const a of f.agents) {
    const s = await f.waitRelease(a, 'shop', '2.1.0', 'applied');
    const v = (s as unknown as { verification?: { state: string; jobs: { output: string[] }[] } }).verification;
    assert.equal(v?.state, 'passed');
    assert.ok(v?.jobs[0]?.output.includes('12 of 12 tests passed'));
  }
  for (const x of rest) {
    const d = (await api('GET', `/v1/agents/${x.agent}/directives/${x.seq}`)).body;
    assert.ok(Date.parse(d.issuedAt) >= Date.parse(c3!.appliedAt), 'wave 2 came after the canary verified');
  }

  // /metrics: Prometheus text with the hub's internals and the fleet's figures per tenant
  await f.th.hub.metrics.refresh();
  await scrape();
  for (const text of scrapes) {
    const families = parsePrometheusTextFormat(text);
    assert.ok(families.length > 20, 'parsed');
    const names = families.map((m) => m.name);
    for (const n of ['ferry_hub_agents_connected', 'ferry_hub_handshakes_total', 'ferry_hub_agent_messages_total', 'ferry_hub_http_request_duration_seconds', 'ferry_hub_db_query_duration_seconds', 'ferry_agents', 'process_resident_memory_bytes']) assert.ok(names.includes(n), `${n} in /metrics`);
  }
  const last = parsePrometheusTextFormat(scrapes.at(-1)!);
  const value = (name: string, labels: Record<string, string> = {}) => {
    const m = last.find((x) => x.name === name);
    const s = m?.metrics.find((x) => Object.entries(labels).every(([k, v]) => x.labels?.[k] === v));
    return s?.value === undefined ? undefined : Number(s.value);
  };
  assert.equal(value('ferry_hub_agents_connected'), 2);
  assert.equal(value('ferry_agents', { tenant: 'bank-r', state: 'connected' }), 2);
  assert.equal(value('ferry_hub_rollouts', { state: 'succeeded' }), 2);
  assert.equal(value('ferry_hub_rollouts', { state: 'aborted' }), 1);
  assert.ok((value('ferry_hub_messages_sent_total', { type: 'directive' }) ?? 0) >= 5);
  assert.ok(!scrapes.join('\n').includes(f.agents[0]!.id), 'no agent id as a label');
  const running = scrapes.slice(0, 2).map((s) => parsePrometheusTextFormat(s).find((x) => x.name === 'ferry_hub_rollout_transitions_total'));
  assert.ok(running.every(Boolean), 'rollout transitions counted during the rollout');
  // the Grafana dashboard in the repository asks only for what the hub exports
  const dashboard = JSON.parse(readFileSync(new URL('../../../hub/metrics/grafana-dashboard.json', import.meta.url), 'utf8')) as { panels: { title: string; targets: { expr: string }[] }[] };
  const exported = new Set(last.map((m) => m.name));
  for (const p of dashboard.panels) {
    for (const { expr } of p.targets) {
      const used = [...expr.matchAll(/\b((?:ferry|process|nodejs)_[a-z_]+)/g)].map((m) => m[1]!.replace(/_(bucket|count|sum)$/, ''));
      assert.ok(used.length, `${p.title}: ${expr} names a metric`);
      for (const u of used) assert.ok(exported.has(u), `${p.title}: ${u} is exported`);
    }
  }
  const other404 = await fetch(`http://127.0.0.1:${f.th.hub.metricsPort}/v1/agents`);
  assert.equal(other404.status, 404, 'the metrics listener serves /metrics only');
});

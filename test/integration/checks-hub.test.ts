// The hub's side of watching what runs, on both store backends, with agents
// speaking the real protocol over real sockets (test/helpers/sim-agents.ts):
// check transitions stored once however often they are sent and acknowledged
// only once stored; a snapshot replacing an agent's checks; alerts with
// de-duplication (a flapping check is one alert), reminders and an agent
// offline and back, a rollout stuck and aborted, each at a real webhook
// receiver; another tenant's people see none of it; the fleet gauges on
// /metrics.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { verifyWebhook } from '../../hub/checks/webhook.js';
import { startHub } from '../helpers/hub.js';
import { backends } from '../helpers/postgres.js';
import { apiClient, simAgents, simRelease } from '../helpers/sim-agents.js';
import { freePort } from '../helpers/faults.js';
import { daemon, run } from '../helpers/proc.js';
import { tempDir, waitFor } from '../helpers/tmp.js';
import { receiver } from '../helpers/webhook.js';

const SECRET = 'the secret the receiver shares';

for (const backend of await backends()) {
  test(`[${backend}] check transitions stored once and acknowledged; alerts once per change, flapping as one, reminders, offline and back, a stuck rollout; tenants apart; fleet gauges`, { timeout: 120_000 }, async (t) => {
    const hook = await receiver(t);
    const th = await startHub(t, { backend, checkpointMs: 3_600_000, webhook: { url: hook.url, secret: SECRET }, alerts: { tickMs: 100, scanMs: 200, offlineMs: 1500, stuckMs: 2500, repeatMs: 4000, flapCount: 4 } });
    const api = apiClient(() => th.url, th.adminToken);
    const [a] = await simAgents(api, () => th.url, 'bank-a', 1, { namePrefix: 'a' });
    const [b] = await simAgents(api, () => th.url, 'bank-b', 1, { namePrefix: 'b' });
    t.after(() => [a, b].forEach((x) => x!.stop()));
    await waitFor('agents connected', () => (a!.connected && b!.connected) || null, 10_000);
    // each bank's console room, subscribed to alarms: alerts reach the room of the alert's tenant only
    for (const bank of ['bank-a', 'bank-b']) assert.equal((await th.api('POST', '/v1/chat/rooms', { transport: 'console', room: `${bank}-ops`, tenants: [bank], subscribe: ['alarms'] })).status, 201);
    const roomTexts = async (room: string) => ((await th.api('GET', `/v1/chat/console/rooms/${room}/messages`)).body.messages as { text: string }[]).map((m) => m.text);
    const now = Date.now();
    const info = (check: string, state: string, extra = {}) => ({ stack: 'shop', check, version: '1.0.0', kind: 'http', target: `GET http://web:8080/${check}`, state, since: now, ...extra });
    const tr = (n: number, check: string, from: string, to: string, at: number, error?: string) => ({ n, stack: 'shop', check, from, to, at, ...(error && { error }) });

    // a snapshot and transitions; the same message again (as after a reconnect): stored once, acknowledged
    const first = { type: 'checks', snapshot: [info('web', 'pending'), info('api', 'pending')], transitions: [tr(1, 'web', 'pending', 'passing', now + 10), tr(2, 'web', 'passing', 'failing', now + 20, 'web#0 (172.18.0.3): got 502, expected 200'), tr(3, 'api', 'pending', 'passing', now + 30)] };
    assert.ok(a!.say(first));
    assert.ok(a!.say(first));
    await waitFor('checks-ack', () => a!.checksAcked === 3 || null, 10_000);
    const checks = (await th.api('GET', '/v1/checks?tenant=bank-a')).body.checks as { check: string; state: string; lastError: string | null; agentName: string }[];
    assert.deepEqual(checks.map((c) => `${c.check}:${c.state}`), ['api:passing', 'web:failing'], 'the snapshot, then the newer transitions over it');
    assert.equal(checks.find((c) => c.check === 'web')!.lastError, 'web#0 (172.18.0.3): got 502, expected 200');
    const hist = (await th.api('GET', `/v1/agents/${a!.id}/checks?check=web`)).body.history as { n: number }[];
    assert.deepEqual(hist.map((h) => h.n), [2, 1], 'each transition once, newest first');
    assert.deepEqual((await th.api('GET', '/v1/checks?failing=true')).body.checks.map((c: { check: string }) => c.check), ['web']);

    await waitFor('check.failing at the webhook', () => hook.got.some((n) => n.body.event === 'check.failing') || null, 10_000);
    const failing = hook.got.find((n) => n.body.event === 'check.failing')!;
    assert.ok(verifyWebhook(SECRET, failing.headers['x-ferry-signature'] as string, failing.raw, Date.now()));
    assert.equal(failing.body.tenant, 'bank-a');
    assert.match(failing.body.summary, /^shop\/web on a-00000 \(bank-a\) is failing: web#0 \(172\.18\.0\.3\): got 502, expected 200$/);
    const inRoom = await waitFor('the alert in bank-a\'s room', async () => (await roomTexts('bank-a-ops')).find((x) => x.includes('check.failing')) ?? null, 10_000, 100);
    assert.match(inRoom, /FIRING check\.failing: shop\/web on a-00000 \(bank-a\) is failing: web#0/);

    // another tenant: nothing of bank-a's checks or alerts
    const bViewer = (await th.person({ tenants: { 'bank-b': 'viewer' } })).token;
    assert.deepEqual((await th.api('GET', '/v1/checks', undefined, bViewer)).body.checks, []);
    assert.deepEqual((await th.api('GET', '/v1/alerts', undefined, bViewer)).body.alerts, []);
    assert.equal((await th.api('GET', '/v1/checks?tenant=bank-a', undefined, bViewer)).status, 404);

    // flapping: four more changes within the window are one check.flapping, not four notices
    assert.ok(a!.say({ type: 'checks', transitions: [tr(4, 'web', 'failing', 'passing', now + 40), tr(5, 'web', 'passing', 'failing', now + 50, 'got 502'), tr(6, 'web', 'failing', 'passing', now + 60), tr(7, 'web', 'passing', 'failing', now + 70, 'got 503')] }));
    await waitFor('check.flapping', () => hook.got.some((n) => n.body.event === 'check.flapping') || null, 10_000);
    // a reminder of it while it keeps firing
    const reminder = await waitFor('a reminder', () => hook.got.find((n) => n.body.repeat) ?? null, 20_000, 100);
    assert.equal(reminder.body.key, `check:${a!.id}:shop/web`);
    assert.match(reminder.body.summary, /^still: /);
    const webNotices = hook.got.filter((n) => n.body.key === `check:${a!.id}:shop/web` && !n.body.repeat).map((n) => n.body.event);
    assert.deepEqual(webNotices, ['check.failing', 'check.flapping'], 'one notice per change of the alert');
    assert.equal(hook.got.filter((n) => n.body.key.endsWith('shop/api')).length, 0, 'a check that only ever passed says nothing');

    // an agent gone longer than --alert-offline, then back
    b!.stop();
    const off = await waitFor('agent.offline', () => hook.got.find((n) => n.body.event === 'agent.offline') ?? null, 20_000, 100);
    assert.equal(off.body.agentId, b!.id);
    assert.equal(off.body.tenant, 'bank-b');
    b!.start();
    await waitFor('agent.online', () => hook.got.find((n) => n.body.event === 'agent.online' && n.body.agentId === b!.id) ?? null, 20_000, 100);
    assert.equal(hook.got.filter((n) => n.body.event === 'agent.offline' && !n.body.repeat).length, 1);
    assert.deepEqual((await roomTexts('bank-b-ops')).filter((x) => /check\./.test(x)), [], 'bank-a\'s check alerts never reach bank-b\'s room');
    assert.equal(new Set(hook.got.map((n) => n.headers['x-ferry-delivery'])).size, hook.got.length, 'each notice delivered once');

    // alerts at the API, scoped
    const alerts = (await th.api('GET', '/v1/alerts')).body.alerts as { key: string; state: string; flapping: boolean; notifications: number }[];
    const web = alerts.find((x) => x.key === `check:${a!.id}:shop/web`)!;
    assert.equal(web.state, 'firing');
    assert.equal(web.flapping, true);
    assert.ok(web.notifications >= 3);
    assert.equal(alerts.find((x) => x.key === `agent-offline:${b!.id}`)!.state, 'resolved');
    const bAdmin = (await th.person({ tenants: { 'bank-b': 'tenant-admin' } })).token;
    assert.deepEqual(((await th.api('GET', '/v1/alerts', undefined, bAdmin)).body.alerts as { key: string }[]).map((x) => x.key), [`agent-offline:${b!.id}`]);

    // an alarm the agent raised (in its status report), reported again: one audit.alarm, never reminded
    const alarm = { at: new Date().toISOString(), code: 'FERRY_E_AUDIT_INCONSISTENT', message: 'the hub served a log that does not extend what this agent witnessed', kind: 'checkpoint' };
    for (let i = 0; i < 2; i++) assert.ok(a!.say({ type: 'status', releases: [], services: [], alarms: [alarm] }));
    const raised = await waitFor('audit.alarm', () => hook.got.find((n) => n.body.event === 'audit.alarm') ?? null, 10_000, 100);
    assert.equal(raised.body.tenant, 'bank-a');
    assert.match(raised.body.summary, /raised FERRY_E_AUDIT_INCONSISTENT: the hub served a log/);

    // figures: the fleet gauges per tenant
    assert.ok(a!.say({ type: 'figures', containers: 3, containersRunning: 3, servicesHealthy: 2, servicesUnhealthy: 1, checksPassing: 1, checksFailing: 1, checksPending: 0, rssBytes: 50_000_000, cpuSeconds: 1.5 }));
    const value = async (name: string, labels: Record<string, string>) => {
      await th.hub.metrics.refresh();
      const text = (await th.api('GET', '/metrics', undefined, await th.tokenFor('viewer'))).body as string;
      const s = parsePrometheusTextFormat(text).find((m) => m.name === name)?.metrics.find((x) => Object.entries(labels).every(([k, v]) => x.labels?.[k] === v));
      return s?.value === undefined ? undefined : Number(s.value);
    };
    await waitFor('figures stored', async () => (await value('ferry_services', { tenant: 'bank-a', health: 'unhealthy' })) === 1 || null, 10_000, 200);
    assert.equal(await value('ferry_services', { tenant: 'bank-a', health: 'healthy' }), 2);
    assert.equal(await value('ferry_containers_running', { tenant: 'bank-a' }), 3);
    assert.equal(await value('ferry_checks', { tenant: 'bank-a', state: 'failing' }), 1);
    assert.equal(await value('ferry_checks', { tenant: 'bank-a', state: 'passing' }), 1);
    assert.equal(await value('ferry_agents', { tenant: 'bank-b', state: 'connected' }), 1);
    assert.equal(await value('ferry_hub_alerts_firing', { kind: 'check' }), 1);
    assert.equal(await value('ferry_hub_alerts_firing', { kind: 'audit-alarm' }), 1);

    // a new snapshot without a check: it is gone from the hub
    assert.ok(a!.say({ type: 'checks', snapshot: [info('api', 'passing')], transitions: [] }));
    await waitFor('web dropped', async () => ((await th.api('GET', '/v1/checks?tenant=bank-a')).body.checks as unknown[]).length === 1 || null, 10_000, 100);
    const gone = await waitFor('its alert resolved', () => hook.got.find((n) => n.body.key === `check:${a!.id}:shop/web` && n.body.state === 'resolved') ?? null, 10_000, 100);
    assert.equal(gone.body.event, 'check.recovered');
    assert.match(gone.body.summary, /shop\/web is no longer checked/);

    // a rollout in which nothing moves (baking for an hour) is stuck after --alert-stuck; aborted, it is not
    await simRelease(api, 'shop', '1.0.0');
    const ro = await th.api('POST', '/v1/rollouts', { stack: 'shop', version: '1.0.0', selector: 'tenant=bank-a', waves: '1,100%', bakeMs: 3_600_000 });
    assert.equal(ro.status, 201, JSON.stringify(ro.body));
    const stuck = await waitFor('rollout.stuck', () => hook.got.find((n) => n.body.event === 'rollout.stuck') ?? null, 30_000, 100);
    assert.equal(stuck.body.key, `rollout-stuck:${ro.body.id}`);
    assert.match(stuck.body.summary, new RegExp(`^rollout ${ro.body.id} \\(shop@1\\.0\\.0\\) is running and nothing moved for \\d+ min$`));
    assert.equal((await th.api('POST', `/v1/rollouts/${ro.body.id}/abort`)).status, 200);
    const moved = await waitFor('rollout.moving', () => hook.got.find((n) => n.body.event === 'rollout.moving') ?? null, 30_000, 100);
    assert.match(moved.body.summary, /is no longer running/);
    assert.deepEqual(((await th.api('GET', '/v1/alerts', undefined, bAdmin)).body.alerts as { key: string }[]).map((x) => x.key), [`agent-offline:${b!.id}`], 'a rollout alert is the vendor\'s');

    // the alarm, long past when a reminder would have been due (--alert-repeat 4 s): still one notice
    await waitFor('past the repeat interval', () => Date.now() >= Date.parse(raised.body.at) + 4000 + 1000 || null, 10_000, 100);
    assert.equal(hook.got.filter((n) => n.body.event === 'audit.alarm').length, 1, 'the alarm noticed once, not reminded');
    assert.equal(((await th.api('GET', '/v1/alerts?tenant=bank-a')).body.alerts as { kind: string; notifications: number }[]).find((x) => x.kind === 'audit-alarm')!.notifications, 1);
  });
}

test('ferry-hub serve: the alert and metrics flags are checked before listening; --metrics-listen serves /metrics only, without credentials; the API\'s /metrics needs a token', async (t) => {
  const dir = join(tempDir(t), 'hub');
  const init = await run('hub', ['init', '--data-dir', dir]);
  assert.equal(init.code, 0, init.stderr);
  const secretFile = join(dir, '..', 'webhook-secret');
  writeFileSync(secretFile, 'short\n', { mode: 0o600 });
  const hook = await receiver(t);
  const bad = [
    [['--alert-webhook', hook.url], /FERRY_E_CONFIG_INVALID.*--alert-webhook and --alert-webhook-secret-file go together/],
    [['--alert-webhook', 'ftp://x/', '--alert-webhook-secret-file', secretFile], /--alert-webhook takes an http:\/\/ or https:\/\/ URL/],
    [['--alert-webhook', hook.url, '--alert-webhook-secret-file', secretFile], /the secret is shorter than 16 characters/],
    [['--alert-offline', 'soon'], /--alert-offline/],
    [['--metrics-listen', 'nonsense'], /--metrics-listen takes HOST:PORT/],
  ] as const;
  for (const [args, message] of bad) {
    const r = await run('hub', ['serve', '--data-dir', dir, '--listen', '127.0.0.1:0', ...args]);
    assert.equal(r.code, 7, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
  }
  writeFileSync(secretFile, `${SECRET}\n`);
  const [port, metricsPort] = [await freePort(), await freePort()];
  const hub = daemon(t, 'hub', ['serve', '--data-dir', dir, '--listen', `127.0.0.1:${port}`, '--metrics-listen', `127.0.0.1:${metricsPort}`, '--alert-webhook', hook.url, '--alert-webhook-secret-file', secretFile, '--alert-offline', '10m']);
  await hub.waitFor(/listening on/);
  const m = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
  assert.equal(m.status, 200);
  const families = parsePrometheusTextFormat(await m.text()).map((f) => f.name);
  assert.ok(families.includes('ferry_hub_leader') && families.includes('process_cpu_seconds_total'), families.join(','));
  assert.equal((await fetch(`http://127.0.0.1:${metricsPort}/v1/agents`)).status, 404);
  const viaApi = await fetch(`http://127.0.0.1:${port}/metrics`);
  assert.equal(viaApi.status, 401);
  assert.equal(((await viaApi.json()) as { error: { code: string } }).error.code, 'FERRY_E_AUTH_REQUIRED');
});

// GET /v1/events, the rollout event stream, end to end: a real ferry-hub
// process (real sqlite, real port) driven by simulated agents over the real
// protocol; subscribers are plain HTTP clients reading Server-Sent Events, and
// the real `ferry` binary. Then, on an in-process hub with small limits: the
// heartbeat, retention gaps and a client that stops reading.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { get, type IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { SseDecoder, type RolloutEvent, type SseMessage } from '../../shared/events.js';
import { startHub } from '../helpers/hub.js';
import { backends, freshDatabase } from '../helpers/postgres.js';
import { daemon, run, type Daemon } from '../helpers/proc.js';
import { apiClient, simAgents, simRelease, type Api, type SimAgent } from '../helpers/sim-agents.js';
import { tempDir, waitFor } from '../helpers/tmp.js';

const PORT = 18123;
const URL_ = `http://127.0.0.1:${PORT}`;

interface Sub {
  status: number;
  /** The JSON error body of a refused subscription. */
  body?: any;
  messages: SseMessage[];
  transitions(): RolloutEvent[];
  /** Resolves with the first message (from `from` on) that matches. */
  next(pred: (m: SseMessage) => boolean, timeoutMs?: number, from?: number): Promise<SseMessage>;
  ended: Promise<void>;
  res?: IncomingMessage;
  close(): void;
}

/** A plain HTTP client reading the stream: what a console or a script would do. */
function subscribe(t: TestContext, base: string, token: string | null, opts: { query?: string; lastEventId?: string } = {}): Promise<Sub> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { accept: 'text/event-stream' };
    if (token) headers.authorization = `Bearer ${token}`;
    if (opts.lastEventId !== undefined) headers['last-event-id'] = opts.lastEventId;
    const req = get(`${base}/v1/events${opts.query ? `?${opts.query}` : ''}`, { headers }, (res) => {
      const messages: SseMessage[] = [];
      const waiters = new Set<() => void>();
      let endedResolve!: () => void;
      const ended = new Promise<void>((r) => (endedResolve = r));
      res.on('close', endedResolve);
      const close = () => req.destroy();
      t.after(close);
      if (res.statusCode !== 200) {
        let text = '';
        res.on('data', (d: Buffer) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text), messages, transitions: () => [], next: () => Promise.reject(new Error('refused')), ended, close }));
        return;
      }
      const dec = new SseDecoder();
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        messages.push(...dec.push(chunk));
        for (const w of [...waiters]) w();
      });
      const sub: Sub = {
        status: 200,
        messages,
        transitions: () => messages.filter((m) => m.event === 'transition').map((m) => JSON.parse(m.data) as RolloutEvent),
        next(pred, timeoutMs = 20_000, from = 0) {
          return new Promise((res2, rej) => {
            const check = () => {
              const m = messages.slice(from).find(pred);
              if (!m) return;
              waiters.delete(check);
              clearTimeout(timer);
              res2(m);
            };
            const timer = setTimeout(() => {
              waiters.delete(check);
              rej(new Error(`no matching event within ${timeoutMs} ms; got ${messages.map((m) => `${m.event}:${m.data}`).join('\n')}`));
            }, timeoutMs);
            waiters.add(check);
            check();
          });
        },
        ended,
        res,
        close,
      };
      resolve(sub);
    });
    req.on('error', reject);
  });
}

const isTransition = (pred: (e: RolloutEvent) => boolean) => (m: SseMessage) => m.event === 'transition' && pred(JSON.parse(m.data) as RolloutEvent);
const ended = (id: string, states = ['succeeded', 'paused', 'failed', 'aborted', 'rolled-back']) => isTransition((e) => e.rollout === id && e.kind === 'rollout' && states.includes(e.to));

async function startProcessHub(t: TestContext, dataDir: string, database?: string): Promise<Daemon> {
  const hub = daemon(t, 'hub', ['serve', '--data-dir', dataDir, ...(database ? ['--database', database] : []), '--listen', `127.0.0.1:${PORT}`, '--tick', '50', '--log-level', 'warn']);
  await hub.waitFor(/listening on/);
  return hub;
}

async function createRollout(api: Api, body: Record<string, unknown>): Promise<string> {
  const r = await api('POST', '/v1/rollouts', { stack: 'payments', version: '1.0.0', selector: '*', ...body });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body.id as string;
}

for (const backend of await backends()) {
test(`[${backend}] the event stream of a real hub process: order, resume, auth, filters and the CLI`, async (t) => {
  const base = tempDir(t);
  const dataDir = join(base, 'hub');
  const database = backend === 'postgres' ? await freshDatabase(t) : undefined;
  const init = await run('hub', ['init', '--data-dir', dataDir, ...(database ? ['--database', database] : [])]);
  assert.equal(init.code, 0, init.stderr);
  const admin = init.stdout.trim();

  await t.test('--tick refuses a bad value with the flag named, before listening', async () => {
    for (const bad of ['5', 'fast', '2.5', '100000']) {
      const r = await run('hub', ['serve', '--data-dir', dataDir, '--listen', `127.0.0.1:${PORT}`, '--tick', bad]);
      assert.equal(r.code, 7, r.stderr);
      assert.match(r.stderr, /error FERRY_E_CONFIG_INVALID: .*--tick \(FERRY_HUB_TICK_MS\) takes whole milliseconds from 10 to 60000/);
    }
    const help = await run('hub', ['serve', '--help']);
    assert.match(help.stdout, /--tick <ms>/);
  });

  let hub = await startProcessHub(t, dataDir, database);
  const api = apiClient(() => URL_, admin);
  const agents: SimAgent[] = await simAgents(api, () => URL_, 'bank-a', 3);
  t.after(() => agents.forEach((a) => a.stop()));
  await simRelease(api, 'payments', '1.0.0');
  await simRelease(api, 'payments', '2.0.0');
  await waitFor('agents connected', () => agents.every((a) => a.connected), 20_000);
  const viewer = (await api('POST', '/v1/api-tokens', { name: 'wall-screen', role: 'viewer' })).body.token as string;

  let first: { id: string; all: RolloutEvent[]; ready: number } | undefined;

  await t.test('a subscriber sees every transition of a rollout in order, with increasing ids', async () => {
    const sub = await subscribe(t, URL_, viewer);
    assert.equal(sub.status, 200);
    assert.match(sub.res!.headers['content-type'] ?? '', /^text\/event-stream/);
    const ready = await sub.next((m) => m.event === 'ready');
    assert.equal(sub.messages[0], ready, 'ready comes first');
    const id = await createRollout(api, { waves: '1,100%' });
    await sub.next(ended(id));
    const all = sub.transitions();
    const ids = all.map((e) => e.id);
    assert.ok(ids.every((x, i) => i === 0 || x > ids[i - 1]!), `ids increase: ${ids.join(',')}`);
    assert.ok(ids[0]! > Number(ready.lastEventId), 'after the ready position');
    const mine = all.filter((e) => e.rollout === id);
    assert.deepEqual(mine[0], { id: mine[0]!.id, rollout: id, kind: 'rollout', at: mine[0]!.at, from: null, to: 'running', reason: 'created' });
    assert.ok(!Number.isNaN(Date.parse(mine[0]!.at)));
    const last = mine[mine.length - 1]!;
    assert.equal(last.kind, 'rollout');
    assert.deepEqual([last.kind === 'rollout' && last.from, last.kind === 'rollout' && last.to], ['running', 'succeeded']);
    assert.deepEqual(mine.filter((e) => e.kind === 'wave').map((e) => e.kind === 'wave' && e.wave), [1, 2]);
    // per agent: the directive, then issued -> baking -> done
    const view = (await api('GET', `/v1/rollouts/${id}`)).body;
    for (const target of view.targets as { agent: string; seq: number; tenant: string }[]) {
      const steps = mine.filter((e) => (e.kind === 'target' || e.kind === 'directive') && e.agentId === target.agent);
      assert.deepEqual(
        steps.map((e) => (e.kind === 'target' || e.kind === 'directive') && `${e.kind}:${e.from}->${e.to}`),
        ['directive:waiting->issued', 'target:issued->baking', 'target:baking->done'],
      );
      const d = steps[0]!;
      assert.ok(d.kind === 'directive' && d.seq === target.seq && d.version === '1.0.0' && d.tenant === 'bank-a');
    }
    // the canary's wave is done before wave 2 starts, and wave 2 before its directives
    const canary = view.targets[0].agent as string;
    const pos = (p: (e: RolloutEvent) => boolean) => mine.findIndex(p);
    const wave2 = pos((e) => e.kind === 'wave' && e.wave === 2);
    assert.ok(pos((e) => e.kind === 'target' && e.agentId === canary && e.to === 'done') < wave2);
    assert.ok(mine.filter((e) => e.kind === 'directive' && e.agentId !== canary).every((e) => mine.indexOf(e) > wave2));
    first = { id, all: mine, ready: Number(ready.lastEventId) };
    sub.close();
  });

  await t.test('reconnecting with Last-Event-ID (or ?since=) gets exactly the missed events', async () => {
    const reference = await subscribe(t, URL_, admin);
    await reference.next((m) => m.event === 'ready');
    const early = await subscribe(t, URL_, admin);
    await early.next((m) => m.event === 'ready');
    const id = await createRollout(api, { version: '2.0.0', waves: '1,100%' });
    // the early subscriber drops out after the first wave starts
    const cut = await early.next(isTransition((e) => e.rollout === id && e.kind === 'wave'));
    early.close();
    await reference.next(ended(id));
    const seen = early.transitions().filter((e) => e.id <= Number(cut.lastEventId));
    const want = reference.transitions();

    const resumed = await subscribe(t, URL_, admin, { lastEventId: cut.lastEventId });
    const ready = await resumed.next((m) => m.event === 'ready');
    assert.equal(ready.lastEventId, cut.lastEventId);
    await resumed.next(ended(id));
    assert.ok(!resumed.messages.some((m) => m.event === 'gap'));
    const again = resumed.transitions();
    assert.deepEqual([...seen, ...again].map((e) => e.id), want.map((e) => e.id), 'nothing missed, nothing twice');
    assert.deepEqual([...seen, ...again], want);

    // ?since= does the same; Last-Event-ID wins over it (a browser reconnects to the same URL with the header)
    const bySince = await subscribe(t, URL_, admin, { query: `since=${cut.lastEventId}` });
    await bySince.next(ended(id));
    assert.deepEqual(bySince.transitions(), again);
    const both = await subscribe(t, URL_, admin, { query: 'since=0', lastEventId: cut.lastEventId });
    await both.next(ended(id));
    assert.deepEqual(both.transitions(), again);

    // a rollout filter replays only that rollout's events, from the start with since=0
    const one = await subscribe(t, URL_, viewer, { query: `rollout=${first!.id}&since=0` });
    await one.next(ended(first!.id));
    assert.deepEqual(one.transitions(), first!.all);
    const kinds = await subscribe(t, URL_, viewer, { query: `rollout=${id}&kind=wave,rollout&since=${first!.ready}` });
    await kinds.next(ended(id));
    assert.deepEqual(kinds.transitions(), want.filter((e) => e.rollout === id && (e.kind === 'wave' || e.kind === 'rollout')));
    for (const s of [reference, resumed, bySince, both, one, kinds]) s.close();
  });

  await t.test('viewers may read; no token or a bad one is refused; bad filters are 400 FERRY_E_EVENT_FILTER', async () => {
    const none = await subscribe(t, URL_, null);
    assert.equal(none.status, 401);
    assert.equal(none.body.error.code, 'FERRY_E_AUTH_REQUIRED');
    const wrong = await subscribe(t, URL_, 'ferry_api_nope');
    assert.equal(wrong.status, 401);
    assert.equal(wrong.body.error.code, 'FERRY_E_AUTH_INVALID');
    for (const [query, lastEventId] of [['kind=bogus'], ['kind=target,'], ['rollout=17'], ['since=-1'], ['since=soon'], ['colour=blue'], ['', 'abc']] as [string, string?][]) {
      const r = await subscribe(t, URL_, viewer, { query, lastEventId });
      assert.equal(r.status, 400, `${query} ${lastEventId ?? ''}`);
      assert.equal(r.body.error.code, 'FERRY_E_EVENT_FILTER');
      assert.match(r.body.error.hint, /\.$/);
    }
    const missing = await subscribe(t, URL_, viewer, { query: 'rollout=R-999' });
    assert.equal(missing.status, 404);
    assert.equal(missing.body.error.code, 'FERRY_E_NOT_FOUND');
  });

  const env = { FERRY_HUB: URL_, FERRY_TOKEN: admin, XDG_CONFIG_HOME: join(base, 'xdg'), FERRY_CONTEXT: undefined };

  await t.test('ferry events prints the stream, as lines or NDJSON, and refuses a bad filter', async () => {
    const json = await run('ferry', ['events', '--rollout', first!.id, '--since', '0', '--limit', String(first!.all.length), '--json'], { env, timeoutMs: 30_000 });
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(json.stdout.trim().split('\n').map((l) => JSON.parse(l)), first!.all);
    const text = await run('ferry', ['events', '--rollout', first!.id, '--kind', 'rollout', '--since', '0', '--limit', '2'], { env, timeoutMs: 30_000 });
    assert.equal(text.code, 0, text.stderr);
    const lines = text.stdout.trim().split('\n');
    assert.equal(lines.length, 2);
    assert.match(lines[0]!, new RegExp(`^\\S+Z  #\\d+  ${first!.id}  created \\(running\\)$`));
    assert.match(lines[1]!, new RegExp(`${first!.id}  running -> succeeded \\(3 of 3 applied\\)$`));
    const bad = await run('ferry', ['events', '--kind', 'bogus'], { env });
    assert.equal(bad.code, 7);
    assert.match(bad.stderr, /^error FERRY_E_EVENT_FILTER: /m);
  });

  await t.test('ferry rollout status --watch follows the stream: exit 0 on success, 1 on a failed canary', async () => {
    const id = await createRollout(api, { waves: '1,100%', bakeMs: 1000 });
    const ok = await run('ferry', ['rollout', 'status', id, '--watch', '--timeout', '30s', '--json'], { env, timeoutMs: 40_000 });
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(JSON.parse(ok.stdout).state, 'succeeded');
    assert.match(ok.stderr, new RegExp(`^${id} payments@1.0.0 running wave \\d/2`, 'm'));
    assert.match(ok.stderr, new RegExp(`^${id} payments@1.0.0 succeeded wave 2/2: 3/3 done`, 'm'));

    agents[0]!.failing.add('payments@2.0.0');
    t.after(() => agents[0]!.failing.delete('payments@2.0.0'));
    const bad = await createRollout(api, { version: '2.0.0', waves: '1,100%', bakeMs: 300 });
    const failed = await run('ferry', ['rollout', 'status', bad, '--watch', '--timeout', '30s'], { env, timeoutMs: 40_000 });
    assert.equal(failed.code, 1, failed.stderr);
    assert.match(failed.stdout, /state\s+paused/);
    assert.match(failed.stderr, new RegExp(`${bad} payments@2.0.0 paused wave 1/2: 0/3 done, 1 failed`));
    assert.equal((await api('POST', `/v1/rollouts/${bad}/abort`)).status, 200);
    agents[0]!.failing.delete('payments@2.0.0');

    const timeout = await createRollout(api, { version: '2.0.0', waves: '1,100%', bakeMs: 60_000 });
    const slow = await run('ferry', ['rollout', 'status', timeout, '--watch', '--timeout', '1s'], { env, timeoutMs: 20_000 });
    assert.equal(slow.code, 1);
    assert.match(slow.stderr, /error FERRY_E_APPLY_TIMEOUT: .*still running after --timeout 1s/);
    assert.equal((await api('POST', `/v1/rollouts/${timeout}/abort`)).status, 200);
  });

  await t.test('--watch rides out a hub restart: the stream ends with an end event, the CLI reconnects and sees the rollout through', async () => {
    for (const a of agents) a.stop();
    await waitFor('agents gone', async () => (await api('GET', '/v1/agents')).body.agents.every((a: { status: string }) => a.status === 'disconnected'));
    const id = await createRollout(api, { version: '1.0.0', waves: '1,100%' });
    const watch = daemon(t, 'ferry', ['rollout', 'status', id, '--watch', '--timeout', '60s'], { env });
    await watch.waitFor(new RegExp(`${id} payments@1.0.0 running`));
    const stream = await subscribe(t, URL_, admin, { query: `rollout=${id}` });
    await stream.next((m) => m.event === 'ready');
    assert.equal(await hub.stop('SIGTERM'), 0);
    const end = await stream.next((m) => m.event === 'end');
    assert.equal(JSON.parse(end.data).error.code, 'FERRY_E_UNAVAILABLE');
    await stream.ended;
    await watch.waitFor(/lost the hub's event stream/);
    hub = await startProcessHub(t, dataDir, database);
    for (const a of agents) a.start();
    assert.equal(await watch.exited, 0, watch.output());
    assert.match(watch.output(), new RegExp(`${id} payments@1.0.0 succeeded wave 2/2: 3/3 done`));
  });
});

test(`[${backend}] in-process hub with small limits: heartbeats, a gap after retention, a reader that stops reading`, async (t) => {
  const th = await startHub(t, { backend, rolloutTickMs: 50, checkpointMs: 3_600_000, events: { heartbeatMs: 100, stallMs: 500, maxEvents: 1000, batch: 50 } });
  // Synthetic rows, as the store writes them, so the test need not run a thousand rollouts.
  await th.rawSql("INSERT INTO rollouts (num, stack, version, selector, wave_spec, waves, state, since, bake_ms, max_failures, on_failure, agent_timeout_ms, on_timeout, retry_ms, created_at) VALUES (1, 'payments', '1.0.0', '*', '100%', '[1]', 'succeeded', 0, 0, 0, 'pause', 1000, 'failed', 1000, 0)");
  const rows = (n: number, values: string, args: (i: number) => unknown[]) => ({ sql: Array.from({ length: n }, () => values).join(', '), params: Array.from({ length: n }, (_, i) => args(i)).flat() });
  for (let i = 0; i < 3000; i += 500) {
    const r = rows(500, "(?, 1, 'target', 'agt_x', 'bank-a', 'issued', 'baking')", () => [Date.now()]);
    await th.rawSql(`INSERT INTO rollout_events (at, rollout, kind, agent_id, tenant, from_state, to_state) VALUES ${r.sql}`, r.params);
  }
  const head = await th.hub.events.head();

  await t.test('a quiet stream carries heartbeat comments', async () => {
    const chunks: string[] = [];
    await new Promise<void>((resolve, reject) => {
      const req = get(`${th.url}/v1/events`, { headers: { authorization: `Bearer ${th.adminToken}` } }, (res) => {
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          chunks.push(c);
          if (chunks.join('').split(': keep-alive\n\n').length > 3) {
            req.destroy();
            resolve();
          }
        });
      });
      req.on('error', reject);
    });
    assert.match(chunks.join(''), /^retry: 2000\n\nid: \d+\nevent: ready\n/);
  });

  await t.test('a fast reader replays thousands of events in order, in batches', async () => {
    const sub = await subscribe(t, th.url, th.adminToken, { query: 'since=0' });
    await sub.next((m) => m.event === 'transition' && Number(m.lastEventId) === head, 20_000);
    const ids = sub.transitions().map((e) => e.id);
    assert.equal(ids.length, head);
    assert.ok(ids.every((x, i) => x === i + 1));
    sub.close();
  });

  await t.test('past retention, a resuming client is told what it missed with a gap event', async () => {
    await th.hub.events.prune();
    const sub = await subscribe(t, th.url, th.adminToken, { lastEventId: '5' });
    const gap = await sub.next((m) => m.event === 'gap');
    const data = JSON.parse(gap.data);
    assert.equal(data.error.code, 'FERRY_E_EVENTS_EXPIRED');
    assert.equal(data.after, 5);
    assert.equal(data.oldest, head - 999);
    const firstKept = await sub.next((m) => m.event === 'transition');
    assert.equal(Number(firstKept.lastEventId), head - 999);
    sub.close();
    // an id from another database (ahead of this one): a gap, then from now on
    const ahead = await subscribe(t, th.url, th.adminToken, { lastEventId: String(head + 100) });
    const r = await ahead.next((m) => m.event === 'ready');
    assert.equal(Number(r.lastEventId), head);
    await ahead.next((m) => m.event === 'gap');
    ahead.close();
  });

  await t.test('a client that stops reading is closed, and the hub does not hold its backlog', async () => {
    // Many large rows: more than the socket buffers hold, so the hub's writes back up.
    const reason = 'x'.repeat(4000);
    for (let i = 0; i < 5000; i += 250) {
      const r = rows(250, "(?, 1, 'rollout', 'running', 'paused', ?)", () => [Date.now(), reason]);
      await th.rawSql(`INSERT INTO rollout_events (at, rollout, kind, from_state, to_state, reason) VALUES ${r.sql}`, r.params);
    }
    const sub = await subscribe(t, th.url, th.adminToken, { query: `since=${head}` });
    sub.res!.pause();
    const stalled = (l: Record<string, unknown>) => /^event stream client stopped reading/.test(String(l.msg));
    await waitFor('the hub drops the stalled stream', () => th.logs.some(stalled), 10_000);
    const line = th.logs.find(stalled)!;
    assert.ok((line.cursor as number) < head + 5000, 'it stopped reading ahead of the client');
    sub.res!.resume();
    await sub.ended;
    const last = sub.messages[sub.messages.length - 1];
    assert.equal(last?.event, 'end');
    assert.equal(JSON.parse(last!.data).error.code, 'FERRY_E_EVENTS_SLOW');
    await waitFor('no stream left open', () => th.hub.events.size === 0);
  });
});
}

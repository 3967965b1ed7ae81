// Several hub replicas on one PostgreSQL database: agents spread over them,
// and whatever an operator asks of one replica reaches agents held by the
// other (deploys, plans, revocations, rollouts, the event stream); then hub
// processes behind a TCP balancer, one killed with -9 in the middle of each
// rollout: its agents come back through the other, the rollout goes on from
// the stored state (a new leader), nothing is issued twice, and the audit
// logs still verify.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync } from 'node:fs';
import { get } from 'node:http';
import { join } from 'node:path';
import { balancer } from '../helpers/balancer.js';
import { freePort } from '../helpers/faults.js';
import { initDataDir, rawSqlOn, startHub } from '../helpers/hub.js';
import { freshDatabase, postgresAvailable } from '../helpers/postgres.js';
import { daemon, run, type Daemon } from '../helpers/proc.js';
import { apiClient, seqsIncreasing, simAgents, simRelease, type SimAgent } from '../helpers/sim-agents.js';
import { tempDir, waitFor } from '../helpers/tmp.js';

async function needPostgres(t: TestContext): Promise<boolean> {
  if (await postgresAvailable()) return true;
  if (process.env.CI) throw new Error('PostgreSQL does not answer: CI runs the replica tests (scripts/test-env.sh starts it)');
  t.skip('PostgreSQL does not answer (run scripts/test-env.sh): replica tests NOT run');
  return false;
}

/** Two data dirs holding the same hub signing key (every replica needs it), one database. */
async function sharedState(t: TestContext): Promise<{ database: string; dirs: [string, string]; token: string }> {
  const database = await freshDatabase(t);
  const a = join(tempDir(t), 'a');
  const token = await initDataDir(a, database);
  const b = join(tempDir(t), 'b');
  cpSync(a, b, { recursive: true });
  return { database, dirs: [a, b], token };
}

/** Reads an event stream until `until` matches what arrived (or the time runs out). */
function readEvents(url: string, token: string, until: RegExp, timeoutMs = 20_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const req = get(url, { headers: { authorization: `Bearer ${token}` } }, (res) => {
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        text += c;
        if (until.test(text)) {
          clearTimeout(timer);
          req.destroy();
          resolve(text);
        }
      });
    });
    const timer = setTimeout(() => (req.destroy(), reject(new Error(`no ${until} in the stream:\n${text.slice(-2000)}`))), timeoutMs);
    req.on('error', (err) => (clearTimeout(timer), reject(err)));
  });
}

test('[postgres] two replicas serve one fleet: a deploy, a plan and a revocation on one reach agents held by the other; a rollout spans both', async (t) => {
  if (!(await needPostgres(t))) return;
  const { database, dirs, token } = await sharedState(t);
  const a = await startHub(t, { dataDir: dirs[0], database, adminToken: token, rolloutTickMs: 50, checkpointMs: 3_600_000 });
  const b = await startHub(t, { dataDir: dirs[1], database, adminToken: token, rolloutTickMs: 50, checkpointMs: 3_600_000 });
  assert.equal(a.hub.cluster.shared && b.hub.cluster.shared, true);
  await waitFor('one leader', () => Number(a.hub.cluster.leader) + Number(b.hub.cluster.leader) === 1);
  const apiA = apiClient(() => a.url, token);
  const apiB = apiClient(() => b.url, token);
  const onA = await simAgents(apiA, () => a.url, 'bank-r', 3, { namePrefix: 'a' });
  const onB = await simAgents(apiB, () => b.url, 'bank-r', 3, { namePrefix: 'b' });
  const all: SimAgent[] = [...onA, ...onB];
  t.after(() => all.forEach((x) => x.stop()));
  await simRelease(apiA, 'payments', '1.0.0');
  await simRelease(apiA, 'payments', '2.0.0');
  await waitFor('agents connected', () => all.every((x) => x.connected), 20_000);
  // each replica sees every agent as connected: its own sockets, and the other's leases
  for (const api of [apiA, apiB]) {
    await waitFor('connected everywhere', async () => (await api('GET', '/v1/agents')).body.agents.every((x: { status: string }) => x.status === 'connected'), 10_000, 100);
  }

  // a deploy asked of A, to an agent whose socket B holds: accepted, and A hears the answer
  const target = onB[0]!;
  const d = await apiA('POST', '/v1/deploy', { stack: 'payments', version: '1.0.0', agent: target.id, wait: 20 });
  assert.equal(d.status, 200, JSON.stringify(d.body));
  assert.equal(d.body.status, 'accepted');
  assert.equal(d.body.sent, false, 'A did not hold the socket: B sent it');
  await waitFor('running 1.0.0', () => target.running.get('payments') === '1.0.0');
  // a plan asked of A, answered by the agent on B
  const plan = await apiA('GET', `/v1/agents/${target.id}/plan`);
  assert.equal(plan.status, 200, JSON.stringify(plan.body));
  assert.deepEqual(plan.body.steps, []);

  // a rollout created on B reaches agents on both replicas, driven by whichever leads
  const r = await apiB('POST', '/v1/rollouts', { stack: 'payments', version: '2.0.0', selector: 'tenant=bank-r', waves: '1,50%,100%', bakeMs: 200 });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  const id = r.body.id as string;
  // the stream on A shows it through, whoever wrote the transitions
  const stream = await readEvents(`${a.url}/v1/events?rollout=${id}&since=0`, token, /"to":"succeeded"/, 30_000);
  assert.match(stream, /"kind":"wave","wave":3/);
  const v = (await apiA('GET', `/v1/rollouts/${id}`)).body;
  assert.equal(v.state, 'succeeded');
  assert.equal(v.done, 6);
  await waitFor('all on 2.0.0', () => all.every((x) => x.running.get('payments') === '2.0.0'));
  assert.ok(all.every(seqsIncreasing));
  const per = await rawSqlOn<{ agent_id: string; n: number }>({ dataDir: dirs[0], database }, 'SELECT agent_id, count(*) AS n FROM directives WHERE created_by = ? GROUP BY agent_id', [id]);
  assert.equal(per.length, 6);
  assert.ok(per.every((x) => x.n === 1), JSON.stringify(per));

  // revoked on A: B cuts the agent's socket, and refuses it from then on
  const revoked = onB[1]!;
  assert.equal((await apiA('POST', `/v1/agents/${revoked.id}/revoke`)).status, 200);
  await waitFor('B closed its socket', () => !revoked.connected, 5000);
  await waitFor('B refused it again', () => b.logs.some((l) => l.msg === 'agent handshake refused' && l.code === 'FERRY_E_AGENT_REVOKED' && l.agentId === revoked.id), 5000);
  revoked.stop();

  // one log, serial across replicas: both verify it whole
  for (const th of [a, b]) {
    const verify = await run('ferry', ['audit', 'verify', '--json'], { env: { FERRY_HUB: th.url, FERRY_TOKEN: token, XDG_CONFIG_HOME: tempDir(t) } });
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  }
});

test('[postgres] hub processes behind a TCP balancer, one killed with -9 during each rollout: the other carries on, nothing is issued twice, the logs verify', { timeout: 10 * 60_000 }, async (t) => {
  if (!(await needPostgres(t))) return;
  const { database, dirs, token } = await sharedState(t);
  const ports = [await freePort(), await freePort()] as const;
  const hubs: (Daemon | null)[] = [null, null];
  const start = async (i: 0 | 1) => {
    hubs[i] = daemon(t, 'hub', ['serve', '--data-dir', dirs[i], '--database', database, '--listen', `127.0.0.1:${ports[i]}`, '--tick', '50', '--log-level', 'warn']);
    await hubs[i]!.waitFor(/listening on/, 20_000);
  };
  await start(0);
  await start(1);
  const lb = await balancer(t, () => ports.filter((_, i) => hubs[i] !== null));
  const api = apiClient(() => lb.url, token);
  const agents = await simAgents(api, () => lb.url, 'bank-k', 12, { applyMs: 30 });
  t.after(() => agents.forEach((x) => x.stop()));
  await simRelease(api, 'payments', '1.0.0');
  await simRelease(api, 'payments', '2.0.0');
  await waitFor('agents connected', () => agents.every((x) => x.connected), 30_000);
  assert.ok([...lb.counts.values()].every((n) => n > 0) && lb.counts.size === 2, `connections spread over both replicas: ${JSON.stringify([...lb.counts])}`);

  const loc = { dataDir: dirs[0], database };
  for (let trial = 0; trial < 3; trial++) {
    const version = trial % 2 === 0 ? '2.0.0' : '1.0.0';
    const created = await api('POST', '/v1/rollouts', { stack: 'payments', version, selector: 'tenant=bank-k', waves: '1,30%,100%', bakeMs: 300 });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const id = created.body.id as string;
    // once the canary has its directive, kill a replica (alternating, so the leader dies too)
    await waitFor(`${id}: canary issued`, async () => (await rawSqlOn(loc, 'SELECT 1 AS x FROM directives WHERE created_by = ?', [id])).length > 0, 20_000, 20);
    const victim = (trial % 2) as 0 | 1;
    hubs[victim]!.child.kill('SIGKILL');
    await hubs[victim]!.exited;
    hubs[victim] = null;
    const t0 = Date.now();
    await waitFor('every agent back, through the other replica', () => agents.every((x) => x.connected), 30_000, 50);
    t.diagnostic(`trial ${trial}: all agents back ${Date.now() - t0} ms after kill -9 of replica ${victim}`);
    const v = await waitFor(`${id} finished`, async () => {
      const r = await api('GET', `/v1/rollouts/${id}`).catch(() => null);
      return r?.body?.state && r.body.state !== 'running' ? r.body : null;
    }, 60_000, 100);
    assert.equal(v.state, 'succeeded', `trial ${trial}: ${JSON.stringify(v)}`);
    await waitFor(`trial ${trial}: agents on ${version}`, () => agents.every((x) => x.running.get('payments') === version), 10_000);
    assert.ok(agents.every(seqsIncreasing), `trial ${trial}: seqs out of order`);
    const per = await rawSqlOn<{ n: number }>(loc, 'SELECT agent_id, count(*) AS n FROM directives WHERE created_by = ? GROUP BY agent_id', [id]);
    assert.equal(per.length, 12, `trial ${trial}`);
    assert.ok(per.every((x) => x.n === 1), `trial ${trial}: a directive issued twice: ${JSON.stringify(per)}`);
    await start(victim);
  }
  const verify = await run('ferry', ['audit', 'verify', '--json'], { env: { FERRY_HUB: lb.url, FERRY_TOKEN: token, XDG_CONFIG_HOME: tempDir(t) } });
  assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  const reports = JSON.parse(verify.stdout).reports as { log: string; ok: boolean }[];
  assert.ok(reports.some((x) => x.log === 'bank-k') && reports.every((x) => x.ok));
});

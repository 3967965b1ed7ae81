// Agent-version rollouts across a fleet: 50 simulated agents speaking the
// real protocol (their upgrade reports as the real agent sends them; the
// real agent's upgrade and revert are test/integration/upgrade.test.ts), an
// agent bundle uploaded and signed by the tenant's release role, rolled out
// in waves by the rollout engine: a canary that reverts pauses the rollout
// before anyone else is touched; a good version reaches every agent, wave by
// wave, and `ferry agent ls` shows it. On both store backends.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AGENT_STACK } from '../../shared/agent-bundle.js';
import { PAYLOAD_TYPES, pae } from '../../shared/dsse.js';
import { encodePublicKey, sign } from '../../shared/keys.js';
import { startHub } from '../helpers/hub.js';
import { backends } from '../helpers/postgres.js';
import { run } from '../helpers/proc.js';
import { seededKey } from '../helpers/signing.js';
import { apiClient, simAgents, type Api } from '../helpers/sim-agents.js';
import { waitFor } from '../helpers/tmp.js';
import { tinyBundle } from '../helpers/upgrade.js';

/** The release key simTenant's roots trust (threshold 1). */
const RELEASE_KEY = seededKey('sim-release');
const N = 50;

async function publish(th: { url: string; adminToken: string }, api: Api, version: string, tenant: string): Promise<void> {
  const res = await fetch(`${th.url}/v1/agent-bundles?tenants=${tenant}`, { method: 'POST', headers: { authorization: `Bearer ${th.adminToken}`, 'content-type': 'application/gzip' }, body: new Uint8Array(tinyBundle(version)) });
  const up = (await res.json()) as { envelope: { payload: string } };
  assert.equal(res.status, 201, JSON.stringify(up));
  const sig = Buffer.from(sign(pae(PAYLOAD_TYPES.agentBundle, Buffer.from(up.envelope.payload, 'base64')), RELEASE_KEY.secretKey)).toString('base64');
  const s = await api('POST', `/v1/agent-bundles/${version}/signatures`, { publicKey: encodePublicKey(RELEASE_KEY.publicKey), sig });
  assert.equal(s.status, 200, JSON.stringify(s.body));
  assert.equal(s.body.tenants[0].met, true);
}

async function until(api: Api, id: string, state: string) {
  return waitFor(`${id} ${state}`, async () => {
    const v = (await api('GET', `/v1/rollouts/${id}`)).body;
    return v.state === state ? v : null;
  }, 60_000, 50);
}

for (const backend of await backends()) {
  test(`[${backend}] an agent version across ${N} agents in waves: a reverting canary pauses it, a good version reaches all`, { timeout: 240_000 }, async (t) => {
    const th = await startHub(t, { backend, rolloutTickMs: 50, checkpointMs: 3_600_000 });
    const api = apiClient(() => th.url, th.adminToken);
    const agents = await simAgents(api, () => th.url, 'bank-f', N, { labels: (i) => ({ env: i % 2 ? 'prod' : 'staging' }), applyMs: 30 });
    t.after(() => agents.forEach((a) => a.stop()));
    await waitFor('agents connected', () => agents.every((a) => a.connected), 30_000);
    await publish(th, api, '0.5.0', 'bank-f');
    await publish(th, api, '0.6.0', 'bank-f');
    for (const a of agents) a.failing.add('@agent@0.5.0');

    // A bad version: the canary reverts by itself, the rollout pauses; nobody else got it.
    const bad = await api('POST', '/v1/rollouts', { stack: AGENT_STACK, version: '0.5.0', selector: 'tenant=bank-f', waves: '1,10%,100%' });
    assert.equal(bad.status, 201, JSON.stringify(bad.body));
    const paused = await until(api, bad.body.id, 'paused');
    const failed = paused.targets.filter((x: { state: string }) => x.state === 'failed');
    assert.equal(failed.length, 1, JSON.stringify(paused.targets.filter((x: { state: string }) => x.state !== 'pending')));
    assert.equal(failed[0].code, 'FERRY_E_UPGRADE_CRASHED');
    assert.equal(paused.targets.filter((x: { state: string }) => x.state === 'pending').length, N - 1, 'the other agents were not touched');
    const canary = (await api('GET', `/v1/agents/${failed[0].agent}`)).body.versions;
    assert.equal(canary.installed, '0.1.0');
    assert.equal(canary.upgrade.state, 'reverted');
    assert.equal(agents.filter((a) => a.agentVersion.installed !== '0.1.0').length, 0);
    assert.equal((await api('POST', `/v1/rollouts/${bad.body.id}/abort`)).status, 200);

    // A good one: wave by wave to all.
    const good = await api('POST', '/v1/rollouts', { stack: AGENT_STACK, version: '0.6.0', selector: 'tenant=bank-f', waves: '1,10%,100%', bakeMs: 100 });
    assert.equal(good.status, 201, JSON.stringify(good.body));
    const done = await until(api, good.body.id, 'succeeded');
    assert.equal(done.targets.filter((x: { state: string }) => x.state === 'done').length, N);
    const waves = [...new Set(done.targets.map((x: { wave: number }) => x.wave))].sort();
    assert.deepEqual(waves, [1, 2, 3], 'three waves: the canary, 10%, the rest');
    assert.ok(agents.every((a) => a.agentVersion.installed === '0.6.0' && a.agentVersion.previous === '0.1.0'));
    const list = (await api('GET', '/v1/agents')).body.agents as { versions: { installed: string } | null }[];
    assert.equal(list.filter((a) => a.versions?.installed === '0.6.0').length, N);
    const ls = await run('ferry', ['agent', 'ls', '--tenant', 'bank-f'], { env: { FERRY_HUB: th.url, FERRY_TOKEN: th.adminToken } });
    assert.equal(ls.code, 0, ls.stderr);
    assert.equal(ls.stdout.split('\n').filter((l) => /\s0\.6\.0\s/.test(l)).length, N);
  });
}

// A hub, a tenant with a signed trust root, and real agent processes on the
// real engine: the fixture for reconciler tests. Releases are built here
// from services with pinned digests, signed with the tenant's (seeded)
// release key, and deployed through the hub's API.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { PAYLOAD_TYPES, pae } from '../../shared/dsse.js';
import { encodePublicKey, keyId, sign } from '../../shared/keys.js';
import { canonicalJson, type Release, type Service } from '../../shared/release.js';
import { agentPrefix, networkName } from '../../agent/reconcile/model.js';
import { enrollmentToken } from './agents.js';
import { docker, testLabel } from './docker.js';
import type { HubOptions } from '../../hub/server.js';
import { startHub, type TestHub } from './hub.js';
import type { Backend } from './postgres.js';
import { daemon, run, type Daemon } from './proc.js';
import { seededKey } from './signing.js';
import { tempDir, waitFor } from './tmp.js';

export interface FleetAgent {
  id: string;
  stateDir: string;
  configFile: string;
  /** Where its policy is (used when the fleet was given one). */
  policyFile: string;
  daemon: Daemon;
  /** Starts (or restarts) the agent process, optionally with extra node arguments (a test hook). */
  start(env?: NodeJS.ProcessEnv, nodeArgs?: readonly string[]): Daemon;
  network(stack: string, net?: string): string;
}

export interface Fleet {
  /** The hub the fleet talks to now (see reopenHub). */
  readonly th: TestHub;
  /** Closes the hub (if open) and starts a real hub again on the same data dir and port; agents reconnect to it. */
  reopenHub(): Promise<TestHub>;
  /** Closes the hub, freeing its port (e.g. for another process to serve the agents). */
  closeHub(): Promise<void>;
  agents: FleetAgent[];
  publish(stack: string, version: string, services: Record<string, Service>, extra?: Partial<Release>): Promise<void>;
  deploy(agent: FleetAgent, stack: string, version: string): Promise<{ status: string; seq: number; code?: string | null; message?: string | null }>;
  /** Waits until the agent reports `state` for the stack's version; returns that release status. */
  waitRelease(agent: FleetAgent, stack: string, version: string, state: string, timeoutMs?: number): Promise<{ state: string; code?: string; runningVersion: string | null }>;
}

export interface FleetOptions {
  agents?: number;
  bakeMs?: number;
  driftIntervalMs?: number;
  logLevel?: string;
  /** More agent config (YAML, top-level keys) for agent i, e.g. a bankRegistry section. */
  agentConfig?: (i: number) => string;
  /** The institution's policy file for every agent (rewrite `policyFile` and restart to change it). */
  policy?: string;
  /** More hub options (alert rules, the alert webhook, a metrics listener); kept when the hub is reopened. */
  hub?: Partial<HubOptions>;
  /** The hub's store (default: as startHub chooses); with postgres, `th.database` is there for other replicas. */
  backend?: Backend;
}

export async function fleet(t: TestContext, opts: FleetOptions = {}): Promise<Fleet> {
  let th = await startHub(t, { checkpointMs: 3_600_000, ...(opts.backend ? { backend: opts.backend } : {}), ...opts.hub });
  const hubPort = th.hub.port;
  const tenant = 'bank-r';
  const root = seededKey('fleet-root');
  const rel = seededKey('fleet-release');
  assert.equal((await th.api('POST', '/v1/tenants', { name: tenant })).status, 201);
  const init = await th.api('POST', `/v1/tenants/${tenant}/trust/init`, { root: [{ public: encodePublicKey(root.publicKey) }], rootThreshold: 1, release: [{ public: encodePublicKey(rel.publicKey), name: 'rm' }], releaseThreshold: 1 });
  const sig = Buffer.from(sign(pae(PAYLOAD_TYPES.root, Buffer.from(init.body.envelope.payload, 'base64')), root.secretKey)).toString('base64');
  assert.equal((await th.api('POST', `/v1/tenants/${tenant}/trust/signatures`, { version: 1, keyid: keyId(root.publicKey), sig })).body.active, true);

  const [labelKey, labelValue] = testLabel(t).split('=') as [string, string]; // cleaned up after the test; set on every service below
  const agents: FleetAgent[] = [];
  for (let i = 0; i < (opts.agents ?? 1); i++) {
    const stateDir = join(tempDir(t), 'agent');
    const e = await run('agent', ['enroll', '--hub', th.url, '--token', await enrollmentToken(th, tenant), '--state-dir', stateDir, '--name', `host-${i}`, '--json']);
    assert.equal(e.code, 0, e.stderr);
    const id = JSON.parse(e.stdout).agentId as string;
    const configFile = join(stateDir, '..', 'agent.yaml');
    const policyFile = join(stateDir, '..', 'policy.yaml');
    if (opts.policy !== undefined) writeFileSync(policyFile, opts.policy);
    writeFileSync(
      configFile,
      `${opts.logLevel ? `logLevel: ${opts.logLevel}\n` : ''}${opts.policy !== undefined ? `policyFile: ${policyFile}\n` : ''}reconnect:\n  baseMs: 100\n  capMs: 1000\nreconcile:\n  bakeMs: ${opts.bakeMs ?? 1500}\n  driftIntervalMs: ${opts.driftIntervalMs ?? 2000}\n  applyTimeoutMs: 60000\n${opts.agentConfig?.(i) ?? ''}`,
    );
    const a: FleetAgent = {
      id,
      stateDir,
      configFile,
      policyFile,
      daemon: undefined as unknown as Daemon,
      start(env = {}, nodeArgs = []) {
        a.daemon = daemon(t, 'agent', ['run', '--state-dir', stateDir, '--config', configFile], { env, nodeArgs });
        return a.daemon;
      },
      network: (stack, net = 'default') => networkName(agentPrefix(id), stack, net),
    };
    a.start();
    agents.push(a);
    t.after(async () => {
      // containers this agent owns, even if a test failed half way
      const ids = (await docker(['ps', '-aq', '--filter', `label=ferry.agent=${id}`])).stdout.split('\n').filter(Boolean);
      if (ids.length) await docker(['rm', '-f', ...ids]);
      const nets = (await docker(['network', 'ls', '-q', '--filter', `label=ferry.agent=${id}`])).stdout.split('\n').filter(Boolean);
      if (nets.length) await docker(['network', 'rm', ...nets]);
      const vols = (await docker(['volume', 'ls', '-q', '--filter', `label=ferry.agent=${id}`])).stdout.split('\n').filter(Boolean);
      if (vols.length) await docker(['volume', 'rm', '-f', ...vols]);
    });
  }
  for (const a of agents) await waitFor('agent connected', async () => (await th.api('GET', `/v1/agents/${a.id}`)).body.status === 'connected', 15_000);

  return {
    get th() {
      return th;
    },
    async closeHub() {
      await th.close();
    },
    async reopenHub() {
      await th.close();
      th = await startHub(t, { dataDir: th.dataDir, adminToken: th.adminToken, port: hubPort, checkpointMs: 3_600_000, ...(th.database ? { database: th.database } : {}), ...opts.hub });
      return th;
    },
    agents,
    async publish(stack, version, services, extra = {}) {
      const labelled = Object.fromEntries(Object.entries(services).map(([n, s]) => [n, { ...s, labels: { ...s.labels, [labelKey]: labelValue } }]));
      const doc: Release = { _type: 'release', stack, version, createdAt: Date.now(), services: labelled, networks: {}, volumes: {}, ...extra };
      const created = await th.api('POST', '/v1/releases', { payload: canonicalJson(doc).toString('base64') });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const payload = Buffer.from(created.body.envelope.payload, 'base64');
      const s = Buffer.from(sign(pae(PAYLOAD_TYPES.release, payload), rel.secretKey)).toString('base64');
      const signed = await th.api('POST', `/v1/releases/${stack}/${version}/signatures`, { publicKey: encodePublicKey(rel.publicKey), sig: s });
      assert.equal(signed.status, 200, JSON.stringify(signed.body));
    },
    async deploy(agent, stack, version) {
      const r = await th.api('POST', '/v1/deploy', { stack, version, agent: agent.id, wait: 30 });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return r.body;
    },
    async waitRelease(agent, stack, version, state, timeoutMs = 90_000) {
      return waitFor(
        `${stack}@${version} ${state} on ${agent.id}`,
        async () => {
          const v = (await th.api('GET', `/v1/agents/${agent.id}`)).body;
          const r = (v.running?.releases ?? []).find((x: { stack: string; version: string }) => x.stack === stack && x.version === version);
          return r && r.state === state ? r : null;
        },
        timeoutMs,
        200,
      );
    },
  };
}

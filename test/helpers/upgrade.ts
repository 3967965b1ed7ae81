// Self-upgrade fixtures: agent bundles built from this checkout (good ones
// and deliberately broken ones), an install root laid out as the .deb lays it
// out (R/<version>, R/launcher, launch.json), a launcher process supervised
// as systemd would (restarted when it exits, its whole process group killed
// first, as KillMode=control-group does), and the hub side: upload, sign,
// roll out.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import type { TestContext } from 'node:test';
import { dirname, join } from 'node:path';
import { request } from 'undici';
import { AGENT_NODE_FLAGS } from '../../agent/node-flags.js';
import { readLaunch } from '../../agent/upgrade/launch-state.js';
import { installVersion } from '../../agent/upgrade/launcher.js';
import { AGENT_STACK, MANIFEST_FILE, STATE_FORMAT, sha256, type BundleManifest } from '../../shared/agent-bundle.js';
import { PAYLOAD_TYPES, pae } from '../../shared/dsse.js';
import { encodePublicKey, keyId, sign, type KeyPair } from '../../shared/keys.js';
import { readTarGz, writeTarGz, type TarEntry } from '../../shared/tar.js';
import { buildBundle, type Bundle } from '../../scripts/package/bundle.js';
import { LAUNCHER_FILES } from '../../scripts/package/deb.js';
import { enrollmentToken } from './agents.js';
import { CRASH_HOOK_ARGS } from './crash-hook.js';
import { startHub, type TestHub } from './hub.js';
import { ROOT, run } from './proc.js';
import { seededKey } from './signing.js';
import { tempDir, waitFor } from './tmp.js';

export type Breakage = 'crash' | 'no-auth' | 'hang';

/** Ways to break a version, as a bad release of the agent would be broken. */
const BREAK: Record<Breakage, (files: Map<string, TarEntry>) => void> = {
  // exits at once, saying why on stderr
  crash: (f) => void f.set('dist/agent/main.js', { path: 'dist/agent/main.js', mode: 0o644, data: Buffer.from("process.stderr.write('boom: this build of the agent is broken\\n');\nprocess.exit(3);\n") }),
  // runs, but signs its hub handshake wrongly: the hub answers 401 on every attempt
  'no-auth': (f) => {
    const e = f.get('dist/shared/auth.js')!;
    f.set(e.path, { ...e, data: Buffer.from(e.data!.toString('utf8').replace('ferry-agent-auth/v1', 'ferry-agent-auth/broken')) });
  },
  // starts and never does anything (nor listens to its launcher)
  hang: (f) => void f.set('dist/agent/main.js', { path: 'dist/agent/main.js', mode: 0o644, data: Buffer.from("process.on('SIGTERM', () => {});\nsetInterval(() => {}, 1 << 30);\n") }),
};

const cache = new Map<string, Bundle>();

/** A bundle of this checkout at `version`, optionally broken. */
export function bundle(version: string, broken?: Breakage): Bundle {
  const key = `${version}/${broken ?? ''}`;
  let b = cache.get(key);
  if (!b) cache.set(key, (b = buildBundle({ root: ROOT, version, ...(broken ? { patch: BREAK[broken] } : {}) })));
  return b;
}

/** Unpacks a bundle into root/<version> (as the package does). */
export function unpackInto(root: string, b: Bundle): void {
  for (const e of readTarGz(b.archive)) {
    const p = join(root, b.version, e.path);
    if (!e.data) continue;
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, e.data, { mode: e.mode });
  }
}

/** An install root with `b` committed and the launcher beside it, as the .deb leaves it. */
export function installRoot(root: string, b: Bundle): void {
  mkdirSync(join(root, 'launcher'), { recursive: true });
  unpackInto(root, b);
  for (const f of LAUNCHER_FILES) copyFileSync(join(root, b.version, 'dist', 'agent', 'upgrade', f), join(root, 'launcher', f));
  writeFileSync(join(root, 'launcher', 'package.json'), '{"type":"module"}\n');
  installVersion(root, b.version);
}

/**
 * The launcher as systemd runs it: restarted when it exits (after its whole
 * process group is killed), with FERRY_TEST_CRASH_AT only for the first run.
 */
export class Supervised {
  private child: ChildProcess | null = null;
  private stopped = false;
  private out = '';
  starts = 0;
  readonly exits: (number | null)[] = [];

  /** The caller stops it (after its test, before its directories go). */
  constructor(
    private readonly o: { root: string; stateDir: string; config: string; nodeArgs?: readonly string[]; crashAt?: string },
  ) {}

  output(): string {
    return this.out;
  }

  start(): void {
    const env = { ...process.env, ...(this.starts === 0 && this.o.crashAt ? { FERRY_TEST_CRASH_AT: this.o.crashAt } : { FERRY_TEST_CRASH_AT: '' }) };
    this.starts++;
    const args = [...AGENT_NODE_FLAGS, ...(this.o.nodeArgs ?? []), join(this.o.root, 'launcher', 'launcher.js'), 'run', '--root', this.o.root, '--state-dir', this.o.stateDir, '--', '--config', this.o.config];
    const c = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    this.child = c;
    const add = (d: Buffer) => (this.out = (this.out + d.toString('utf8')).slice(-200_000));
    c.stdout!.on('data', add);
    c.stderr!.on('data', add);
    c.on('exit', (code) => {
      this.exits.push(code);
      this.killGroup(c);
      if (this.child === c) this.child = null;
      // systemd: Restart=on-failure (78, revoked, stays down); a short RestartSec
      if (!this.stopped && code !== 0 && code !== 78) setTimeout(() => !this.stopped && this.start(), 200);
    });
  }

  private killGroup(c: ChildProcess): void {
    try {
      process.kill(-c.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  }

  /** kill -9 of everything (a power cut). The supervisor starts it again. */
  powerCut(): void {
    if (this.child) this.killGroup(this.child);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    const c = this.child;
    if (!c) return;
    const gone = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    await Promise.race([gone, new Promise((r) => setTimeout(r, 15_000))]);
    this.killGroup(c);
  }

  /** As `systemctl restart`: stop (SIGTERM, wait for the exit), then start again. */
  async restart(): Promise<void> {
    await this.stop();
    this.stopped = false;
    this.start();
  }

  /** Agent processes now in the launcher's process group (their command lines). */
  agents(): string[] {
    const pgid = this.child?.pid;
    if (!pgid) return [];
    const out: string[] = [];
    for (const e of readdirSync('/proc')) {
      if (!/^\d+$/.test(e)) continue;
      try {
        const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        if (Number(fields[2]) !== pgid) continue;
        const cmd = readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0').join(' ');
        if (cmd.includes('/dist/agent/main.js')) out.push(cmd);
      } catch {
        // gone
      }
    }
    return out;
  }
}

/** Uploads a bundle for tenants, signed by `signers`; returns the hub's view. */
export async function publishBundle(th: TestHub, b: Bundle, tenants: string[], signers: KeyPair[], floor?: string): Promise<any> {
  const q = new URLSearchParams({ tenants: tenants.join(','), ...(floor ? { floor } : {}) });
  const res = await request(`${th.url}/v1/agent-bundles?${q}`, { method: 'POST', headers: { authorization: `Bearer ${th.adminToken}`, 'content-type': 'application/gzip' }, body: b.archive });
  const body = JSON.parse(await res.body.text());
  assert.equal(res.statusCode, 201, JSON.stringify(body));
  let view = body;
  for (const k of signers) {
    const sig = Buffer.from(sign(pae(PAYLOAD_TYPES.agentBundle, Buffer.from(body.envelope.payload, 'base64')), k.secretKey)).toString('base64');
    const s = await th.api('POST', `/v1/agent-bundles/${b.version}/signatures`, { publicKey: encodePublicKey(k.publicKey), sig });
    assert.equal(s.status, 200, JSON.stringify(s.body));
    view = s.body;
  }
  return view;
}

/** Starts a rollout of an agent version. */
export async function rollOut(th: TestHub, version: string, selector: string, extra: Record<string, unknown> = {}): Promise<string> {
  const r = await th.api('POST', '/v1/rollouts', { stack: AGENT_STACK, version, selector, waves: '100%', agentTimeoutMs: 120_000, ...extra });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body.id as string;
}

/** Waits until the agent reports this version installed and the latest upgrade (to `upgrade`) in `state`; returns its versions. */
export function waitVersions(th: TestHub, agentId: string, what: { installed: string; state?: string; upgrade?: string }, timeoutMs = 90_000): Promise<any> {
  return waitFor(
    `agent ${agentId} on ${what.installed}${what.state ? ` (${what.state})` : ''}`,
    async () => {
      const a = (await th.api('GET', `/v1/agents/${agentId}`)).body;
      const v = a.versions;
      return a.status === 'connected' && v && v.installed === what.installed && v.running === what.installed && (!what.state || v.upgrade?.state === what.state) && (!what.upgrade || v.upgrade?.version === what.upgrade) ? v : null;
    },
    timeoutMs,
    200,
  );
}

/**
 * A small but well-formed bundle archive (bundle.json listing one file), for
 * tests of the hub's routes that need a bundle to exist, not to run.
 */
export function tinyBundle(version: string): Buffer {
  const main = Buffer.from(`// ferry-agent ${version} (a stand-in)\n`);
  const manifest: BundleManifest = {
    _type: 'ferry-agent-bundle',
    version,
    stateFormat: STATE_FORMAT,
    minStateFormat: STATE_FORMAT,
    node: null,
    files: { 'dist/agent/main.js': { sha256: sha256(main), size: main.length, mode: 0o644 } },
  };
  return writeTarGz([
    { path: MANIFEST_FILE, data: Buffer.from(JSON.stringify(manifest)), mode: 0o644 },
    { path: 'dist/agent/main.js', data: main, mode: 0o644 },
  ]);
}

export const TENANT = 'bank-u';
const ROOT_KEY = seededKey('upgrade-root');
export const RM = [seededKey('upgrade-rm1'), seededKey('upgrade-rm2'), seededKey('upgrade-rm3')];
/** The version hosts are installed at. */
export const BASE = '0.1.0';

/** A hub with the tenant TENANT, its root signed, release role RM (2 of 3). */
export async function upgradeHub(t: TestContext): Promise<TestHub> {
  const th = await startHub(t, { checkpointMs: 3_600_000, rolloutTickMs: 200 });
  assert.equal((await th.api('POST', '/v1/tenants', { name: TENANT })).status, 201);
  const init = await th.api('POST', `/v1/tenants/${TENANT}/trust/init`, {
    root: [{ public: encodePublicKey(ROOT_KEY.publicKey) }],
    rootThreshold: 1,
    release: RM.map((k, i) => ({ public: encodePublicKey(k.publicKey), name: `rm${i + 1}` })),
    releaseThreshold: 2,
  });
  const sig = Buffer.from(sign(pae(PAYLOAD_TYPES.root, Buffer.from(init.body.envelope.payload, 'base64')), ROOT_KEY.secretKey)).toString('base64');
  assert.equal((await th.api('POST', `/v1/tenants/${TENANT}/trust/signatures`, { version: 1, keyid: keyId(ROOT_KEY.publicKey), sig })).body.active, true);
  return th;
}

export interface Host {
  id: string;
  root: string;
  stateDir: string;
  sup: Supervised;
  identity: string;
  key: string;
}

/** An enrolled agent installed at BASE under a launcher. */
export async function upgradeHost(t: TestContext, th: TestHub, o: { windowMs?: number; crashAt?: string } = {}): Promise<Host> {
  let sup: Supervised | undefined;
  t.after(() => sup?.stop()); // registered before the directories it runs in, so it runs before they go
  const dir = tempDir(t, 'ferry-upgrade-');
  const stateDir = join(dir, 'state');
  const e = await run('agent', ['enroll', '--hub', th.url, '--token', await enrollmentToken(th, TENANT), '--state-dir', stateDir, '--name', 'upgrade-host', '--json']);
  assert.equal(e.code, 0, e.stderr);
  const id = JSON.parse(e.stdout).agentId as string;
  const config = join(dir, 'agent.yaml');
  writeFileSync(config, `reconnect:\n  baseMs: 100\n  capMs: 1000\nupgrade:\n  healthWindowMs: ${o.windowMs ?? 60_000}\n`);
  const root = join(dir, 'opt');
  installRoot(root, bundle(BASE));
  sup = new Supervised({ root, stateDir, config, ...(o.crashAt ? { crashAt: o.crashAt, nodeArgs: CRASH_HOOK_ARGS } : {}) });
  sup.start();
  await waitVersions(th, id, { installed: BASE }, 30_000).catch((err: Error) => assert.fail(`${err.message}\n${sup.output().slice(-3000)}`));
  return { id, root, stateDir, sup, identity: readFileSync(join(stateDir, 'identity.json'), 'utf8'), key: readFileSync(join(stateDir, 'agent.key'), 'utf8') };
}

/** The host converged after an upgrade to `target`: one agent process, on `version`, its identity and key as before, no upgrade half done. */
export async function converged(th: TestHub, h: Host, target: string, version: string, state: string) {
  const v = await waitVersions(th, h.id, { installed: version, state, upgrade: target }, 90_000).catch((err: Error) => assert.fail(`${err.message}\n${h.sup.output().slice(-4000)}`));
  await waitFor('exactly one agent process', () => h.sup.agents().length === 1, 10_000).catch(() => assert.fail(`agent processes: ${JSON.stringify(h.sup.agents())}`));
  assert.match(h.sup.agents()[0]!, new RegExp(`/${version.replace(/\./g, '\\.')}/dist/agent/main\\.js`));
  const l = readLaunch(h.root)!;
  assert.equal(l.current, version);
  assert.equal(l.pending, null);
  assert.equal(readlinkSync(join(h.root, 'current')), version);
  assert.equal(readFileSync(join(h.stateDir, 'identity.json'), 'utf8'), h.identity, 'identity intact');
  assert.equal(readFileSync(join(h.stateDir, 'agent.key'), 'utf8'), h.key, 'key intact');
  const trust = JSON.parse(readFileSync(join(h.stateDir, 'trust.json'), 'utf8')) as { format: number; desired: { seq: number } | null };
  assert.equal(trust.format, 1);
  assert.ok(trust.desired && trust.desired.seq >= 1, 'the accepted directive is still there');
  await waitFor('no state backup left', () => !existsSync(join(h.stateDir, '.upgrade-backup')), 10_000);
  return v;
}

/** Waits for a rollout to reach `state`. */
export async function rolloutState(th: TestHub, id: string, state: string) {
  return waitFor(`rollout ${id} ${state}`, async () => {
    const r = (await th.api('GET', `/v1/rollouts/${id}`)).body;
    return r.state === state ? r : null;
  }, 60_000, 200);
}

/** A kill -9 step and where the host must end after it (test/integration/upgrade-kill-*.test.ts). */
export interface KillStep {
  /** The step of agent/upgrade/launch-state.ts upgradeSteps at which the process kills itself. */
  step: string;
  version: string;
  state: 'committed' | 'reverted';
}

/**
 * One subtest per step: a fresh host upgrades from BASE to 0.2.0 and the
 * process reaching the step kills itself (kill -9, test/helpers/crash-hook.ts);
 * the supervisor starts the launcher again and the host must converge to
 * exactly one running version with its state intact. Before the trial the
 * upgrade carries on and commits; once the new version was handed the state,
 * an unfinished trial is reverted.
 */
export async function killAtSteps(t: TestContext, th: TestHub, steps: readonly KillStep[]): Promise<void> {
  for (const s of steps) {
    await t.test(`killed at ${s.step}: ends on ${s.version} (${s.state})`, async (tt) => {
      const h = await upgradeHost(tt, th, { crashAt: `upgrade:${s.step}` });
      const ro = await rollOut(th, '0.2.0', `id=${h.id}`);
      const v = await converged(th, h, '0.2.0', s.version, s.state);
      assert.ok(h.sup.exits.some((c) => c !== 0), `the process really died at ${s.step} (exits ${JSON.stringify(h.sup.exits)})`);
      if (s.state === 'reverted') assert.equal(v.upgrade.code, 'FERRY_E_UPGRADE_INTERRUPTED');
      await rolloutState(th, ro, s.state === 'committed' ? 'succeeded' : 'paused');
      await h.sup.stop();
    });
  }
}

// `ferry-agent service install|uninstall|status` and the unit it writes:
// rendered through the real binary, checked with systemd's own tools
// (`systemd-analyze verify`, `systemd-analyze security`), and, where this
// machine allows it, booted under a private systemd that runs the agent
// against a real hub.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { renderUnit } from '../../agent/service.js';
import { AGENT_NODE_FLAGS } from '../../agent/node-flags.js';
import { EXIT } from '../../shared/exit.js';
import { startHub } from '../helpers/hub.js';
import { ROOT as CHECKOUT, run as runBin } from '../helpers/proc.js';

/**
 * The unit hides /home, /root, /run/user, /tmp and /var/tmp from the service,
 * and install refuses an agent there. When this checkout lives in one of
 * them (CI may clone anywhere), the tests use a copy under /opt instead.
 */
function serviceRoot(): string {
  const real = realpathSync(CHECKOUT);
  if (!['/home', '/root', '/run/user', '/tmp', '/var/tmp'].some((d) => real === d || real.startsWith(d + '/'))) return CHECKOUT;
  mkdirSync('/opt', { recursive: true });
  const dir = mkdtempSync('/opt/ferry-service-test-');
  chmodSync(dir, 0o755); // mkdtemp makes it 0700: the service user must reach the agent in it
  for (const p of ['dist', 'scripts', 'package.json', 'node_modules']) cpSync(join(CHECKOUT, p), join(dir, p), { recursive: true, verbatimSymlinks: true });
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dir + '/';
}
const ROOT = serviceRoot();
const BIN = { agent: `${ROOT}dist/agent/main.js` };
const run = (_bin: 'agent', args: string[], opts: Parameters<typeof runBin>[2] = {}) => runBin('agent', args, { ...opts, main: BIN.agent });
import { skipOrFail } from '../helpers/skip.js';
import { tempDir, waitFor } from '../helpers/tmp.js';

const UNIT = 'ferry-agent.service';
const NODE = realpathSync(process.execPath);
const MAIN = realpathSync(BIN.agent);
const DEFAULT_CONFIG = '/etc/ferry/agent.yaml';
const isRoot = process.getuid?.() === 0;

/** Directive lines the unit must carry, as systemd would read them. */
const REQUIRED = [
  'Type=exec',
  'Restart=on-failure',
  'RestartSec=5s',
  `RestartPreventExitStatus=${EXIT.revoked}`,
  'SupplementaryGroups=docker',
  'StateDirectory=ferry-agent',
  'StateDirectoryMode=0700',
  'ConfigurationDirectory=ferry',
  'EnvironmentFile=-/etc/ferry/agent.env',
  'UMask=0077',
  'NoNewPrivileges=yes',
  'MemoryDenyWriteExecute=yes',
  'CapabilityBoundingSet=',
  'AmbientCapabilities=',
  'ProtectSystem=strict',
  'ProtectHome=yes',
  'PrivateTmp=yes',
  'PrivateDevices=yes',
  'ProtectKernelTunables=yes',
  'ProtectKernelModules=yes',
  'ProtectKernelLogs=yes',
  'ProtectControlGroups=yes',
  'ProtectClock=yes',
  'ProtectHostname=yes',
  'ProtectProc=invisible',
  'RestrictNamespaces=yes',
  'RestrictRealtime=yes',
  'RestrictSUIDSGID=yes',
  'LockPersonality=yes',
  'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6',
  'SystemCallArchitectures=native',
  'SystemCallFilter=@system-service',
  'WantedBy=multi-user.target',
];

function sh(cmd: string, args: string[]): { code: number | null; stdout: string; stderr: string; missing: boolean } {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '', missing: (r.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT' };
}

const hasSystemdAnalyze = !sh('systemd-analyze', ['--version']).missing;
const NO_ANALYZE = 'systemd-analyze is not installed (Debian: apt-get install systemd)';

/** The unit's directives: lines that are neither blank nor comments. */
const directives = (unit: string) => unit.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('#'));

/** What ExecStart= must say for these arguments. */
function execStart(config?: string): string {
  const cfg = config ?? (existsSync(DEFAULT_CONFIG) ? DEFAULT_CONFIG : undefined);
  return `ExecStart=${[NODE, ...AGENT_NODE_FLAGS, MAIN].join(' ')} run --state-dir /var/lib/ferry-agent${cfg ? ` --config ${cfg}` : ''}`;
}

/** A scratch directory the unit's service could read: not under /tmp (PrivateTmp) or a home (ProtectHome). */
function serviceVisibleDir(t: TestContext): string {
  const base = join(ROOT, 'dist', 'test');
  mkdirSync(base, { recursive: true });
  const dir = mkdtempSync(join(base, 'service-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Renders the unit with --dry-run into DIR/ferry-agent.service. */
async function renderedUnit(t: TestContext): Promise<string> {
  const r = await run('agent', ['service', 'install', '--dry-run']);
  assert.equal(r.code, 0, r.stderr);
  const file = join(tempDir(t, 'ferry-unit-'), UNIT);
  writeFileSync(file, r.stdout);
  return file;
}

test('install --dry-run prints the hardened unit and changes nothing', async () => {
  const before = existsSync(`/etc/systemd/system/${UNIT}`);
  const r = await run('agent', ['service', 'install', '--dry-run']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '');
  const lines = directives(r.stdout);
  for (const d of REQUIRED) assert.ok(lines.includes(d), `missing ${d}`);
  assert.ok(lines.includes(execStart()), `ExecStart: ${lines.find((l) => l.startsWith('ExecStart='))}`);
  assert.ok(lines.includes('User=ferry-agent'));
  assert.ok(!/@[A-Z_]+@/.test(r.stdout), 'a placeholder was left unfilled');
  assert.equal(existsSync(`/etc/systemd/system/${UNIT}`), before);
});

test('install passes --config, and refuses what the service could not run', async (t) => {
  const dir = serviceVisibleDir(t);
  const config = join(dir, 'agent.yaml');
  writeFileSync(config, 'logLevel: debug\n');
  const ok = await run('agent', ['service', 'install', '--dry-run', '--config', config, '--user', 'ferry-test']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.ok(directives(ok.stdout).includes(execStart(config)));
  assert.ok(directives(ok.stdout).includes('User=ferry-test'));

  const fail = async (args: string[], code: string, exit: number, re: RegExp) => {
    const r = await run('agent', ['service', 'install', '--dry-run', ...args]);
    assert.equal(r.code, exit, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, new RegExp(`error ${code}: `));
    assert.match(r.stderr, re);
    assert.equal(r.stdout, '');
  };
  await fail(['--user', 'root'], 'FERRY_E_VALIDATION', EXIT.invalid, /dedicated unprivileged user/);
  await fail(['--user', 'Bad User'], 'FERRY_E_VALIDATION', EXIT.invalid, /system user name/);
  await fail(['--node', '/nonexistent/node'], 'FERRY_E_SERVICE_INSTALL', EXIT.failure, /node \/nonexistent\/node: ENOENT/);
  // PrivateTmp=yes hides /tmp from the service: a node there could never start.
  const tmpNode = join(tempDir(t), 'node');
  writeFileSync(tmpNode, '#!/bin/sh\n', { mode: 0o755 });
  await fail(['--node', tmpNode], 'FERRY_E_SERVICE_INSTALL', EXIT.failure, /hides from the service .*--node/);
  await fail(['--config', join(dir, 'missing.yaml')], 'FERRY_E_SERVICE_INSTALL', EXIT.failure, /config file .*ENOENT/);
  writeFileSync(join(dir, 'bad.yaml'), 'nonsense: true\n');
  await fail(['--config', join(dir, 'bad.yaml')], 'FERRY_E_CONFIG_INVALID', EXIT.invalid, /bad\.yaml/);
});

test('install --unit-dir --no-start writes the unit 0644; status and uninstall find it', async (t) => {
  if (!isRoot) return skipOrFail(t, 'creating the service user needs root');
  // A throwaway system user, removed afterwards: install creates it.
  const user = `ferry-t${process.pid % 100000}`;
  assert.equal(sh('getent', ['passwd', user]).code, 2, `${user} exists already`);
  t.after(() => void sh('userdel', [user]));
  const unitDir = tempDir(t, 'ferry-units-');
  const file = join(unitDir, UNIT);

  const r = await run('agent', ['service', 'install', '--unit-dir', unitDir, '--no-start', '--user', user]);
  assert.equal(r.code, 0, r.stderr);
  const docker = sh('getent', ['group', 'docker']).code === 0;
  assert.match(r.stdout, new RegExp(`created system user ${user}${docker ? ' \\(member of docker\\)' : ''}`));
  assert.match(r.stdout, new RegExp(`wrote ${file}`));
  assert.match(r.stdout, /is not a systemd unit directory: nothing was enabled or started/);
  const pw = sh('getent', ['passwd', user]).stdout.trim().split(':');
  assert.equal(pw[6], '/usr/sbin/nologin');
  if (docker) assert.match(sh('id', ['-nG', user]).stdout, /\bdocker\b/);

  assert.equal(statSync(file).mode & 0o777, 0o644);
  const text = readFileSync(file, 'utf8');
  const dry = await run('agent', ['service', 'install', '--dry-run', '--user', user]);
  assert.equal(text, dry.stdout, 'the installed unit is what --dry-run prints');
  for (const d of [...REQUIRED, `User=${user}`, execStart()]) assert.ok(directives(text).includes(d), `missing ${d}`);
  assert.deepEqual(readdirSync(unitDir), [UNIT], 'no temp file is left behind');

  const again = await run('agent', ['service', 'install', '--unit-dir', unitDir, '--no-start', '--user', user]);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, new RegExp(`user ${user} exists`));

  const st = await run('agent', ['service', 'status', '--unit-dir', unitDir, '--json']);
  assert.equal(st.code, 0, st.stderr);
  const s = JSON.parse(st.stdout) as { unit: string; installed: boolean; user: string; systemd: boolean; active: string | null };
  assert.deepEqual({ unit: s.unit, installed: s.installed, user: s.user }, { unit: file, installed: true, user });
  assert.equal(s.systemd, existsSync('/run/systemd/system'));

  const un = await run('agent', ['service', 'uninstall', '--unit-dir', unitDir]);
  assert.equal(un.code, 0, un.stderr);
  assert.match(un.stdout, new RegExp(`removed ${file}`));
  assert.equal(existsSync(file), false);
  const un2 = await run('agent', ['service', 'uninstall', '--unit-dir', unitDir]);
  assert.equal(un2.code, 0, un2.stderr);
  assert.match(un2.stdout, /not installed/);
  const st2 = await run('agent', ['service', 'status', '--unit-dir', unitDir]);
  assert.match(st2.stdout, /\(not installed\)/);
});

test('install into a missing unit directory fails with an actionable error', async (t) => {
  const r = await run('agent', ['service', 'install', '--unit-dir', join(tempDir(t), 'nope'), '--no-start']);
  assert.equal(r.code, EXIT.failure);
  assert.match(r.stderr, /error FERRY_E_SERVICE_INSTALL: .*unit directory .*nope does not exist/);
});

test('systemd-analyze verify finds nothing to say about the unit', async (t) => {
  if (!hasSystemdAnalyze) return skipOrFail(t, NO_ANALYZE);
  const file = await renderedUnit(t);
  const r = sh('systemd-analyze', ['verify', file]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout + r.stderr, '', 'verify must be silent');
  // The check can fail: the same verify complains about a broken copy.
  const broken = join(tempDir(t), UNIT);
  writeFileSync(broken, readFileSync(file, 'utf8').replace('ProtectSystem=strict', 'ProtectSystem=sometimes').replace(NODE, '/nonexistent/node'));
  const b = sh('systemd-analyze', ['verify', broken]);
  assert.match(b.stderr, /protect system value, ignoring: sometimes/);
  assert.match(b.stderr, /\/nonexistent\/node is not executable/);
});

test('ExecStart quoting survives systemd\'s parser: blanks, quotes, % and $ in paths', async (t) => {
  if (!hasSystemdAnalyze) return skipOrFail(t, NO_ANALYZE);
  const dir = join(tempDir(t), 'odd dir %n $HOME');
  mkdirSync(dir);
  const program = join(dir, 'node');
  writeFileSync(program, '#!/bin/sh\n', { mode: 0o755 });
  const template = readFileSync(join(ROOT, 'scripts', UNIT), 'utf8');
  const unit = renderUnit({ template, node: program, main: join(dir, `"it's" \\ main.js`), user: 'ferry-agent', configFile: '/etc/ferry/a b.yaml' });
  const file = join(tempDir(t), UNIT);
  writeFileSync(file, unit);
  // verify resolves the program path as systemd would and complains if it is not there.
  const r = sh('systemd-analyze', ['verify', file]);
  assert.equal(r.stdout + r.stderr, '', unit.split('\n').find((l) => l.startsWith('ExecStart=')));
  // systemd runs no program whose path has quotes or backslashes: refused before writing anything.
  assert.throws(() => renderUnit({ template, node: '/opt/"x"/node', main: '/opt/main.js', user: 'ferry-agent' }), /quotes or backslashes/);
});

test('systemd-analyze security rates the unit 4.0 or better', async (t) => {
  if (!hasSystemdAnalyze) return skipOrFail(t, NO_ANALYZE);
  const file = await renderedUnit(t);
  const r = sh('systemd-analyze', ['security', '--offline=true', '--no-pager', file]);
  assert.equal(r.code, 0, r.stderr);
  const m = /Overall exposure level for ferry-agent\.service: (\d+\.\d+) (\S+)/.exec(r.stdout);
  assert.ok(m, r.stdout.slice(-500));
  const score = Number(m[1]);
  t.diagnostic(`exposure ${score} ${m[2]}`);
  assert.ok(score <= 4.0, `exposure ${score} > 4.0:\n${r.stdout}`);
});

// ---- Under a real systemd ------------------------------------------------------------------------
//
// Whether or not systemd runs this host (containers and CI sandboxes have none), boot one in
// private pid/mount/uts/ipc/cgroup namespaces on an overlay of / whose upper
// layer is a tmpfs, so users, units and state it creates vanish with it. It
// shares the host's network (to reach the hub) and Docker socket.

const BOOT = String.raw`#!/bin/bash
set -euo pipefail
R="$1"; CG="$2"; P="$3"
mkdir -p "$R/fs"; mount -t tmpfs tmpfs "$R/fs"; mkdir "$R/fs/upper" "$R/fs/work" "$R/fs/merged"
M="$R/fs/merged"
mount -t overlay overlay -o "lowerdir=/,upperdir=$R/fs/upper,workdir=$R/fs/work" "$M"
mount -t tmpfs -o mode=755 tmpfs "$M/run"
mount -t tmpfs -o mode=1777 tmpfs "$M/tmp"
mkdir -p "$M$P"; mount --bind "$P" "$M$P"; mount -o remount,bind,ro "$M$P"   # the project, wherever it is mounted
if [ -S /run/docker.sock ]; then touch "$M/run/docker.sock"; mount --bind /run/docker.sock "$M/run/docker.sock"; fi
mount --bind /sys "$M/sys"; mount -o remount,bind,ro "$M/sys"
if [ "$CG" = v2 ]; then mount -t cgroup2 cgroup2 "$M/sys/fs/cgroup"
else
  mount -t tmpfs -o mode=755 tmpfs "$M/sys/fs/cgroup"; mkdir "$M/sys/fs/cgroup/systemd" "$M/sys/fs/cgroup/unified"
  mount -t cgroup -o none,name=systemd cgroup "$M/sys/fs/cgroup/systemd"
  mount -t cgroup2 cgroup2 "$M/sys/fs/cgroup/unified" || rmdir "$M/sys/fs/cgroup/unified"
  mount -o remount,ro tmpfs "$M/sys/fs/cgroup"   # systemd must not mount the host's other controllers
fi
mount -t tmpfs -o mode=755 tmpfs "$M/dev"
for d in null zero full random urandom tty; do touch "$M/dev/$d"; mount --bind "/dev/$d" "$M/dev/$d"; done
mkdir "$M/dev/pts" "$M/dev/shm"; mount -t devpts -o newinstance,ptmxmode=0666 devpts "$M/dev/pts"; ln -s pts/ptmx "$M/dev/ptmx"
mount -t tmpfs -o mode=1777 tmpfs "$M/dev/shm"
printf '[Unit]\nDescription=Ferry test boot\nWants=systemd-journald.service systemd-journald.socket\n' > "$M/etc/systemd/system/ferry-test.target"
cd "$M"; mkdir -p .oldroot; pivot_root . .oldroot; mount -t proc proc /proc; umount -l /.oldroot
export container=ferry-test
exec /lib/systemd/systemd --unit=ferry-test.target
`;

function sandboxUnavailable(): string | null {
  if (!isRoot) return 'needs root (namespaces, overlay mounts)';
  if (!existsSync('/lib/systemd/systemd')) return 'no /lib/systemd/systemd';
  for (const c of ['unshare', 'nsenter', 'bash']) if (sh(c, ['--version']).missing) return `no ${c}`;
  if (!existsSync('/sys/fs/cgroup/cgroup.controllers') && !existsSync('/sys/fs/cgroup/systemd')) return 'no cgroup v2 and no name=systemd hierarchy';
  return null;
}

interface Sandbox {
  /** Runs a command inside the sandbox (asynchronously: the hub runs in this process). */
  exec(cmd: string, args: string[]): Promise<Ran>;
  /** A property of the unit, from `systemctl show`. */
  prop(name: string): Promise<string>;
}

type Ran = { code: number | null; stdout: string; stderr: string };

function shAsync(cmd: string, args: string[]): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d: Buffer) => (stdout += d));
    c.stderr.on('data', (d: Buffer) => (stderr += d));
    c.on('error', reject);
    c.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function hostPidOfChild(ppid: number): number | undefined {
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (new RegExp(`^PPid:\\s+${ppid}$`, 'm').test(readFileSync(`/proc/${e}/status`, 'utf8'))) return Number(e);
    } catch {
      /* gone */
    }
  }
  return undefined;
}

async function bootSandbox(t: TestContext): Promise<Sandbox | string> {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-systemd-'));
  const cgMode = existsSync('/sys/fs/cgroup/cgroup.controllers') ? 'v2' : 'v1';
  // Our own cgroup, which the cgroup namespace makes the sandbox's root.
  const cgroups = cgMode === 'v2' ? [`/sys/fs/cgroup/ferry-test-${process.pid}`] : [`/sys/fs/cgroup/systemd/ferry-test-${process.pid}`, ...(existsSync('/sys/fs/cgroup/unified/cgroup.procs') ? [`/sys/fs/cgroup/unified/ferry-test-${process.pid}`] : [])];
  for (const c of cgroups) mkdirSync(c);
  writeFileSync(join(dir, 'boot.sh'), BOOT, { mode: 0o755 });
  const enter = cgroups.map((c) => `echo $$ > ${c}/cgroup.procs`).join('; ');
  const child = spawn('bash', ['-c', `${enter}; exec unshare --mount --pid --fork --uts --ipc --cgroup --propagation private ${dir}/boot.sh ${dir} ${cgMode} ${ROOT}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let bootLog = '';
  child.stdout.on('data', (d: Buffer) => (bootLog += d));
  child.stderr.on('data', (d: Buffer) => (bootLog += d));
  const exited = new Promise<void>((r) => child.on('exit', () => r()));
  t.after(async () => {
    // Killing PID 1 of the namespace kills every process in it; unshare reaps it and exits.
    const init = child.pid !== undefined ? hostPidOfChild(child.pid) : undefined;
    if (init) process.kill(init, 'SIGKILL');
    else child.kill('SIGKILL');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    child.kill('SIGKILL');
    await exited;
    const rmTree = (d: string): void => {
      if (!existsSync(d)) return;
      for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) rmTree(join(d, e.name));
      rmdirSync(d); // cgroupfs removes only empty groups, one at a time; EBUSY while tasks linger
    };
    for (const c of cgroups) await waitFor(`cgroup ${c} to go`, () => (rmTree(c), true), 10_000);
    rmSync(dir, { recursive: true, force: true });
  });
  let pid: number | undefined;
  const exec = (cmd: string, args: string[]) => shAsync('nsenter', ['-t', String(pid), '-a', cmd, ...args]);
  try {
    pid = await waitFor('the sandbox init', () => (child.pid !== undefined ? hostPidOfChild(child.pid) : undefined), 10_000);
    await waitFor('systemd to boot', async () => /^(running|degraded)$/m.test((await exec('systemctl', ['is-system-running'])).stdout), 30_000);
  } catch (err) {
    return `could not boot systemd in namespaces here: ${(err as Error).message}\n${bootLog.slice(-2000)}`;
  }
  return { exec, prop: async (name) => (await exec('systemctl', ['show', '-p', name, '--value', UNIT])).stdout.trim() };
}

test('under systemd the agent runs hardened, reaches hub and Docker, and stays down once revoked', { timeout: 180_000 }, async (t) => {
  const why = sandboxUnavailable();
  if (why) return skipOrFail(t, why);
  const sb = await bootSandbox(t);
  if (typeof sb === 'string') return skipOrFail(t, sb);
  const agent = (args: string[]) => sb.exec(process.execPath, [BIN.agent, ...args]);

  // Before enrollment: the unit is enabled but not started.
  const first = await agent(['service', 'install']);
  assert.equal(first.code, 0, first.stdout + first.stderr);
  assert.match(first.stdout, /created system user ferry-agent/);
  assert.match(first.stdout, /enabled ferry-agent\.service \(starts at boot\); not started now because \/var\/lib\/ferry-agent holds no enrolled agent/);
  assert.equal(await sb.prop('UnitFileState'), 'enabled');
  assert.equal(await sb.prop('ActiveState'), 'inactive');

  // Enroll as root (as an operator would), then install again: it hands the state to the service user and starts it.
  const hub = await startHub(t);
  assert.equal((await hub.api('POST', '/v1/tenants', { name: 'bank-a' })).status, 201);
  const tok = await hub.api<{ token: string }>('POST', '/v1/tenants/bank-a/enrollment-tokens', { ttlSeconds: 600 });
  const en = await agent(['enroll', '--hub', hub.url, '--token', tok.body.token, '--state-dir', '/var/lib/ferry-agent', '--name', 'sandbox', '--json']);
  assert.equal(en.code, 0, en.stderr);
  const agentId = (JSON.parse(en.stdout) as { agentId: string }).agentId;
  const second = await agent(['service', 'install']);
  assert.equal(second.code, 0, second.stdout + second.stderr);
  assert.match(second.stdout, /\/var\/lib\/ferry-agent belongs to ferry-agent/);
  assert.match(second.stdout, /enabled and started ferry-agent\.service/);

  type AgentView = { status: string; facts?: { engine?: { version: string } | null } | null };
  const seen = await waitFor('the agent to connect', async () => {
    const a = await hub.api<AgentView>('GET', `/v1/agents/${agentId}`);
    return a.body.status === 'connected' && a.body.facts ? a.body : undefined;
  }, 30_000).catch(async (err: Error) => assert.fail(`${err.message}\n${(await sb.exec('journalctl', ['-u', UNIT, '--no-pager', '-n', '30', '-o', 'cat'])).stdout}`));
  if (existsSync('/run/docker.sock')) assert.ok(seen.facts?.engine?.version, `the Docker socket was not reachable from the service: ${JSON.stringify(seen.facts)}`);

  // The process systemd started runs as the service user with no privileges and a seccomp filter.
  assert.equal(await sb.prop('ActiveState'), 'active');
  const mainPid = await sb.prop('MainPID');
  const status = (await sb.exec('cat', [`/proc/${mainPid}/status`])).stdout;
  assert.match(status, /^NoNewPrivs:\s+1$/m);
  assert.match(status, /^Seccomp:\s+2$/m);
  assert.match(status, /^CapEff:\s+0+$/m);
  assert.match(status, /^CapBnd:\s+0+$/m);
  assert.equal((await sb.exec('stat', ['-c', '%U %a', '/var/lib/ferry-agent', '/var/lib/ferry-agent/agent.key'])).stdout, 'ferry-agent 700\nferry-agent 600\n');
  assert.match((await sb.exec('journalctl', ['-u', UNIT, '--no-pager', '-o', 'cat'])).stdout, /"msg":"connected to hub"/, 'pino JSON lines reach the journal');

  // Revoked: the agent exits 78 and RestartPreventExitStatus keeps it down.
  assert.equal((await hub.api('POST', `/v1/agents/${agentId}/revoke`)).status, 200);
  await waitFor('the service to fail', async () => (await sb.prop('ActiveState')) === 'failed', 20_000);
  assert.equal(await sb.prop('ExecMainStatus'), String(EXIT.revoked));
  // A unit systemd will restart sits in activating/auto-restart for RestartSec; one it will not is failed/failed
  // with no job queued, at once: nothing to wait for.
  assert.equal(await sb.prop('SubState'), 'failed');
  assert.equal(await sb.prop('Result'), 'exit-code');
  assert.equal((await sb.exec('systemctl', ['list-jobs', '--no-legend', UNIT])).stdout.trim(), '');
  assert.equal(await sb.prop('NRestarts'), '0');

  const st = JSON.parse((await agent(['service', 'status', '--json'])).stdout) as Record<string, unknown>;
  assert.deepEqual(st, { unit: `/etc/systemd/system/${UNIT}`, installed: true, user: 'ferry-agent', systemd: true, active: 'failed', enabled: 'enabled' });

  const un = await agent(['service', 'uninstall', '--purge']);
  assert.equal(un.code, 0, un.stderr);
  assert.match(un.stdout, /stopped and disabled ferry-agent\.service/);
  assert.match(un.stdout, /removed \/var\/lib\/ferry-agent/);
  assert.equal(await sb.prop('LoadState'), 'not-found');
  assert.equal((await sb.exec('test', ['-e', '/var/lib/ferry-agent'])).code, 1);
});

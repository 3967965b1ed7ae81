// `ferry-agent service install|uninstall|status`: run the agent as a hardened
// systemd service. Rendering the unit (renderUnit) is pure; everything that
// touches the machine (users, files, systemctl) lives in the functions below
// it, so the unit text can be checked without root and without systemd.
import { spawnSync } from 'node:child_process';
import { accessSync, closeSync, constants, existsSync, fchmodSync, fsyncSync, openSync, readFileSync, realpathSync, renameSync, rmSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Option, type Command } from 'commander';
import { FerryError, type ErrorCode } from '../shared/errors.js';
import { readConfigFile } from './config.js';
import { AGENT_NODE_FLAGS } from './node-flags.js';
import { isEnrolled } from './state.js';

export const UNIT_NAME = 'ferry-agent.service';
export const DEFAULT_UNIT_DIR = '/etc/systemd/system';
export const DEFAULT_USER = 'ferry-agent';
/** StateDirectory= and ConfigurationDirectory= names; systemd puts them under /var/lib and /etc. */
export const STATE_NAME = 'ferry-agent';
export const CONFIG_NAME = 'ferry';
export const STATE_DIR = `/var/lib/${STATE_NAME}`;
export const CONFIG_DIR = `/etc/${CONFIG_NAME}`;
export const DEFAULT_CONFIG_FILE = `${CONFIG_DIR}/agent.yaml`;
/** Directories systemd reads system units from; a unit written elsewhere is not seen by systemctl. */
const SYSTEMD_UNIT_DIRS = ['/etc/systemd/system', '/run/systemd/system', '/usr/local/lib/systemd/system', '/usr/lib/systemd/system', '/lib/systemd/system'];
/** Paths the unit hides from the service: ProtectHome=yes and PrivateTmp=yes. */
const HIDDEN_FROM_SERVICE = ['/home', '/root', '/run/user', '/tmp', '/var/tmp'];

const TEMPLATE_FILE = fileURLToPath(new URL('../../scripts/ferry-agent.service', import.meta.url));
const AGENT_MAIN = fileURLToPath(new URL('./main.js', import.meta.url));

export interface UnitOptions {
  /** The text of scripts/ferry-agent.service. */
  template: string;
  /** Absolute path of the node binary. */
  node: string;
  /** Absolute path of dist/agent/main.js. */
  main: string;
  user: string;
  /** Passed as --config when set. */
  configFile?: string | undefined;
  /**
   * Installed in versioned directories under this root (/opt/ferry-agent):
   * the unit runs the launcher (`main` is ROOT/launcher/launcher.js), which
   * runs the committed version and upgrades it (agent/upgrade).
   */
  root?: string | undefined;
}

/** Where the launcher lives in an install root: outside every version. */
export const launcherOf = (root: string) => join(root, 'launcher', 'launcher.js');

/** Fills in the unit template. Pure: the same options give the same text. */
export function renderUnit(o: UnitOptions): string {
  checkUserName(o.user);
  for (const [what, p] of [['node', o.node], ['agent main.js', o.main], ['config file', o.configFile], ['install root', o.root]] as const) {
    if (p !== undefined && !isAbsolute(p)) throw new FerryError('FERRY_E_VALIDATION', `${what} path ${p} must be absolute`);
  }
  // systemd refuses such program paths ("Executable name contains special characters").
  if (/["'\\]/.test(o.node)) throw new FerryError('FERRY_E_VALIDATION', `node path ${o.node}: systemd does not run programs whose path has quotes or backslashes`);
  const agentArgs = o.configFile ? ['--config', o.configFile] : [];
  const exec = o.root
    ? [o.node, ...AGENT_NODE_FLAGS, o.main, 'run', '--root', o.root, '--state-dir', STATE_DIR, ...(agentArgs.length ? ['--', ...agentArgs] : [])]
    : [o.node, ...AGENT_NODE_FLAGS, o.main, 'run', '--state-dir', STATE_DIR, ...agentArgs];
  const values: Record<string, string> = {
    EXEC_START: exec.map((a, i) => execArg(a, i === 0)).join(' '),
    READ_WRITE_PATHS: o.root ? `ReadWritePaths=${execArg(o.root)}` : '',
    USER: o.user,
    STATE_NAME,
    CONFIG_NAME,
    CONFIG_DIR,
  };
  const text = o.template.replace(/@([A-Z_]+)@/g, (m, k: string) => {
    const v = values[k];
    if (v === undefined) throw new FerryError('FERRY_E_VALIDATION', `unit template has an unknown placeholder ${m}`);
    return v;
  });
  return text;
}

/**
 * Quotes one ExecStart= word: systemd splits on blanks, expands % specifiers
 * everywhere and $ variables in arguments (not in the program path).
 */
export function execArg(s: string, program = false): string {
  if (s === '' || /[\x00-\x1f\x7f]/.test(s)) throw new FerryError('FERRY_E_VALIDATION', `ExecStart argument ${JSON.stringify(s)} is empty or has control characters`);
  const pct = s.replace(/%/g, '%%');
  const escaped = program ? pct : pct.replace(/\$/g, '$$$$');
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(s)) return escaped;
  return `"${escaped.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

function checkUserName(name: string): void {
  if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(name)) throw new FerryError('FERRY_E_VALIDATION', `--user ${name}: expected a system user name (lower case letters, digits, - and _, at most 32)`);
  if (name === 'root') throw new FerryError('FERRY_E_VALIDATION', '--user root: the agent runs as a dedicated unprivileged user; Docker access comes from the docker group');
}

// ---- Side effects ---------------------------------------------------------

export interface InstallOptions {
  user: string;
  unitDir: string;
  node: string;
  /** Explicit --config; without it, DEFAULT_CONFIG_FILE is passed when it exists. */
  config?: string | undefined;
  /** Run through the launcher of this install root (see UnitOptions.root). */
  root?: string | undefined;
  dryRun: boolean;
  start: boolean;
}

type Out = (line: string) => void;
const say: Out = (line) => process.stdout.write(line + '\n');
const warn: Out = (line) => process.stderr.write(`warning: ${line}\n`);

export function systemdRunning(): boolean {
  // The test sd_booted() uses.
  return existsSync('/run/systemd/system');
}

function installError(detail: string, code: ErrorCode = 'FERRY_E_SERVICE_INSTALL'): FerryError {
  return new FerryError(code, detail);
}

/** Checks a path the service must reach, and returns its real path. */
function servicePath(what: string, p: string, mode: number): string {
  let real: string;
  try {
    real = realpathSync(p);
    accessSync(real, mode);
  } catch (err) {
    throw installError(`${what} ${p}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const hidden = HIDDEN_FROM_SERVICE.find((d) => real === d || real.startsWith(d + '/'));
  if (hidden) throw installError(`${what} ${real} is under ${hidden}, which the unit hides from the service (ProtectHome=yes, PrivateTmp=yes); install it system-wide, e.g. under /usr or /opt${what === 'node' ? ', and pass --node' : ''}`);
  return real;
}

/** Works out what to render: checks paths and whether a config file is there. */
export function unitOptionsFor(o: Pick<InstallOptions, 'user' | 'node' | 'config' | 'root'>): UnitOptions {
  let template: string;
  try {
    template = readFileSync(TEMPLATE_FILE, 'utf8');
  } catch (err) {
    throw installError(`unit template ${TEMPLATE_FILE}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; reinstall ferry`);
  }
  const configFile = o.config !== undefined ? servicePath('config file', resolve(o.config), constants.R_OK) : existsSync(DEFAULT_CONFIG_FILE) ? DEFAULT_CONFIG_FILE : undefined;
  readConfigFile(configFile); // a config the agent would refuse fails now, not at every restart
  return {
    template,
    node: servicePath('node', o.node, constants.X_OK),
    main: o.root ? servicePath('launcher', launcherOf(resolve(o.root)), constants.R_OK) : servicePath('agent', AGENT_MAIN, constants.R_OK),
    user: o.user,
    configFile,
    ...(o.root ? { root: servicePath('install root', resolve(o.root), constants.R_OK) } : {}),
  };
}

function exec(cmd: string, args: string[]): { ok: boolean; stdout: string; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error) return { ok: false, stdout: '', out: `${cmd}: ${(r.error as NodeJS.ErrnoException).code ?? r.error.message}` };
  return { ok: r.status === 0, stdout: r.stdout.trim(), out: `${r.stdout}${r.stderr}`.trim() };
}

function systemctl(args: string[], code: ErrorCode): string {
  const r = exec('systemctl', args);
  if (!r.ok) throw installError(`systemctl ${args.join(' ')}: ${r.out || 'failed'}`, code);
  return r.out;
}

const getent = (db: 'passwd' | 'group', name: string) => exec('getent', [db, name]).ok;

/** Creates the service's system user unless it exists. Returns what was done. */
function ensureUser(user: string): string {
  checkUserName(user);
  if (getent('passwd', user)) return `user ${user} exists`;
  if (process.getuid?.() !== 0) throw installError(`user ${user} does not exist and creating it needs root; run as root, or create it first (useradd --system ${user})`);
  const docker = getent('group', 'docker');
  const shell = ['/usr/sbin/nologin', '/sbin/nologin', '/bin/false'].find((s) => existsSync(s)) ?? '/bin/false';
  const args = ['--system', '--no-create-home', '--home-dir', STATE_DIR, '--shell', shell];
  args.push(...(getent('group', user) ? ['--gid', user] : ['--user-group']));
  if (docker) args.push('--groups', 'docker');
  const r = exec('useradd', [...args, user]);
  if (!r.ok) throw installError(`useradd ${args.join(' ')} ${user}: ${r.out}`);
  return `created system user ${user}${docker ? ' (member of docker)' : ''}`;
}

/**
 * Gives the state directory to the service user. `ferry-agent enroll` usually
 * runs as root; systemd's StateDirectory= fixes ownership only when the
 * directory itself has the wrong owner, not files enrolled into it later.
 */
function ownStateDir(user: string): string {
  if (!existsSync(STATE_DIR)) return `${STATE_DIR} does not exist yet; systemd creates it (mode 0700) on first start`;
  if (process.getuid?.() !== 0) return `not root: left the ownership of ${STATE_DIR} as it is`;
  const r = exec('chown', ['-R', `${user}:`, STATE_DIR]);
  if (!r.ok) throw installError(`chown -R ${user}: ${STATE_DIR}: ${r.out}`);
  return `${STATE_DIR} belongs to ${user}`;
}

/**
 * Lets the service user write new versions into the install root (the
 * directory, launch.json and the current link; the versions a package
 * installed stay root's, and are never removed by an upgrade).
 */
function ownRoot(user: string, root: string): string {
  if (process.getuid?.() !== 0) return `not root: left the ownership of ${root} as it is`;
  for (const args of [[`${user}:`, root], ['-h', `${user}:`, join(root, 'current')], [`${user}:`, join(root, 'launch.json')]]) {
    if (!existsSync(args[args.length - 1]!)) continue;
    const r = exec('chown', args);
    if (!r.ok) throw installError(`chown ${args.join(' ')}: ${r.out}`);
  }
  return `${root} (versions, launch.json) writable by ${user}`;
}

/** Writes the unit so systemd sees either the old or the whole new file, mode 0644. */
function writeUnitFile(path: string, text: string): void {
  const tmp = join(path, '..', `.${UNIT_NAME}.tmp-${process.pid}`);
  try {
    const fd = openSync(tmp, 'w', 0o644);
    try {
      writeSync(fd, text);
      fchmodSync(fd, 0o644); // the umask must not decide who can read the unit
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
    const dir = openSync(join(path, '..'), 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
  } catch (err) {
    rmSync(tmp, { force: true });
    throw installError(`cannot write ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** Warns when the service user cannot read what the unit runs (only checkable as root). */
function checkReadableBy(user: string, paths: string[]): void {
  if (process.getuid?.() !== 0) return;
  for (const p of paths) {
    const r = exec('runuser', ['-u', user, '--', 'test', '-r', p]);
    if (!r.ok && !r.out.startsWith('runuser:')) warn(`user ${user} cannot read ${p}; the service will fail until it can (check the directory permissions)`);
  }
}

const isSystemdUnitDir = (dir: string) => SYSTEMD_UNIT_DIRS.includes(resolve(dir));

export function installService(o: InstallOptions, out: Out = say): void {
  const unitOpts = unitOptionsFor(o);
  const text = renderUnit(unitOpts);
  if (o.dryRun) {
    process.stdout.write(text);
    return;
  }
  let isDir = false;
  try {
    isDir = statSync(o.unitDir).isDirectory();
  } catch {
    /* reported below */
  }
  if (!isDir) throw installError(`unit directory ${o.unitDir} does not exist`);
  if (!getent('group', 'docker')) warn('there is no docker group; install Docker before starting the agent (the unit needs SupplementaryGroups=docker)');
  out(ensureUser(o.user));
  const path = join(resolve(o.unitDir), UNIT_NAME);
  writeUnitFile(path, text);
  out(`wrote ${path}`);
  out(unitOpts.configFile ? `config ${unitOpts.configFile}` : `no ${DEFAULT_CONFIG_FILE}: the agent runs with defaults; if you add it, run \`ferry-agent service install\` again`);
  checkReadableBy(o.user, [unitOpts.main, ...(unitOpts.configFile ? [unitOpts.configFile] : [])]);

  const enrolled = isEnrolled(STATE_DIR);
  const enrollHint = `ferry-agent enroll --hub URL --token TOKEN --state-dir ${STATE_DIR}`;
  const startHint = `ferry-agent service install   # again: gives ${STATE_DIR} to ${o.user}, enables and starts ${UNIT_NAME}`;
  if (!isSystemdUnitDir(o.unitDir)) {
    out(`${o.unitDir} is not a systemd unit directory: nothing was enabled or started; copy the unit to ${DEFAULT_UNIT_DIR} to use it`);
    return;
  }
  out(ownStateDir(o.user));
  if (unitOpts.root) out(ownRoot(o.user, unitOpts.root));
  if (!systemdRunning()) {
    out('systemd is not running on this host (no /run/systemd/system): the service was not enabled or started. Once systemd runs:');
    if (!enrolled) out(`  ${enrollHint}`);
    out(`  ${startHint}`);
    return;
  }
  systemctl(['daemon-reload'], 'FERRY_E_SERVICE_INSTALL');
  if (o.start && enrolled) {
    systemctl(['enable', '--now', UNIT_NAME], 'FERRY_E_SERVICE_INSTALL');
    out(`enabled and started ${UNIT_NAME}; logs: journalctl -u ${UNIT_NAME}`);
    return;
  }
  systemctl(['enable', UNIT_NAME], 'FERRY_E_SERVICE_INSTALL');
  out(`enabled ${UNIT_NAME} (starts at boot); not started now${o.start ? ` because ${STATE_DIR} holds no enrolled agent` : ''}`);
  if (!enrolled) out(`next: ${enrollHint}`);
  out(`then: ${o.start || !enrolled ? startHint : `systemctl start ${UNIT_NAME}`}`);
}

export interface UninstallOptions {
  unitDir: string;
  purge: boolean;
}

export function uninstallService(o: UninstallOptions, out: Out = say): void {
  const path = join(resolve(o.unitDir), UNIT_NAME);
  const managed = systemdRunning() && isSystemdUnitDir(o.unitDir);
  if (existsSync(path)) {
    if (managed) {
      systemctl(['disable', '--now', UNIT_NAME], 'FERRY_E_SERVICE_UNINSTALL');
      out(`stopped and disabled ${UNIT_NAME}`);
    }
    try {
      unlinkSync(path);
    } catch (err) {
      throw installError(`cannot remove ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, 'FERRY_E_SERVICE_UNINSTALL');
    }
    out(`removed ${path}`);
    if (managed) {
      systemctl(['daemon-reload'], 'FERRY_E_SERVICE_UNINSTALL');
      exec('systemctl', ['reset-failed', UNIT_NAME]); // forget a failed state; fine if there is none
    }
  } else {
    out(`not installed: no ${path}`);
  }
  if (o.purge) {
    try {
      rmSync(STATE_DIR, { recursive: true, force: true });
    } catch (err) {
      throw installError(`cannot remove ${STATE_DIR}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, 'FERRY_E_SERVICE_UNINSTALL');
    }
    out(`removed ${STATE_DIR} (agent identity and private key)`);
  } else if (existsSync(STATE_DIR)) {
    out(`kept ${STATE_DIR} (agent identity and private key); --purge removes it`);
  }
}

export interface ServiceStatus {
  unit: string;
  installed: boolean;
  user: string | null;
  systemd: boolean;
  /** `systemctl is-active` / `is-enabled`, null when systemd does not run. */
  active: string | null;
  enabled: string | null;
}

export function serviceStatus(unitDir: string): ServiceStatus {
  const unit = join(resolve(unitDir), UNIT_NAME);
  let text: string | null = null;
  try {
    text = readFileSync(unit, 'utf8');
  } catch {
    /* not installed */
  }
  const systemd = systemdRunning();
  // is-active / is-enabled exit non-zero for "inactive", "disabled" and the like; their output is the answer.
  const ask = (verb: string) => (systemd ? exec('systemctl', [verb, UNIT_NAME]).stdout.split('\n')[0] || 'not-found' : null);
  return { unit, installed: text !== null, user: text?.match(/^User=(.*)$/m)?.[1] ?? null, systemd, active: ask('is-active'), enabled: ask('is-enabled') };
}

export function registerServiceCommands(program: Command): void {
  const service = program.command('service').description('install, remove or inspect the ferry-agent systemd service');
  const unitDir = () => new Option('--unit-dir <dir>', 'directory of the unit file').default(DEFAULT_UNIT_DIR);

  service
    .command('install')
    .description(`write ${UNIT_NAME}, create its system user, enable and start it`)
    .option('--user <name>', 'system user the agent runs as (created if missing)', DEFAULT_USER)
    .addOption(unitDir())
    .option('--node <path>', 'node binary the unit runs', process.execPath)
    .option('--config <file>', `agent config file passed with --config (default: ${DEFAULT_CONFIG_FILE} when it exists)`)
    .option('--root <dir>', 'run the launcher of this install root (versioned directories, self-upgrade with automatic revert), e.g. /opt/ferry-agent')
    .option('--dry-run', 'print the unit and change nothing')
    .option('--no-start', 'enable the service but do not start it now')
    .action((o: { user: string; unitDir: string; node: string; config?: string; root?: string; dryRun?: boolean; start: boolean }) =>
      installService({ user: o.user, unitDir: o.unitDir, node: o.node, config: o.config, root: o.root, dryRun: o.dryRun === true, start: o.start }),
    );

  service
    .command('uninstall')
    .description(`stop and disable the service and remove ${UNIT_NAME}`)
    .addOption(unitDir())
    .option('--purge', `also remove ${STATE_DIR}, the agent identity and private key`)
    .action((o: { unitDir: string; purge?: boolean }) => uninstallService({ unitDir: o.unitDir, purge: o.purge === true }));

  service
    .command('status')
    .description('show whether the unit is installed and whether it runs')
    .addOption(unitDir())
    .option('--json', 'print as JSON')
    .action((o: { unitDir: string; json?: boolean }) => {
      const s = serviceStatus(o.unitDir);
      if (o.json) {
        process.stdout.write(JSON.stringify(s) + '\n');
        return;
      }
      const rows: [string, string][] = [
        ['unit', `${s.unit} (${s.installed ? 'installed' : 'not installed'})`],
        ['user', s.user ?? '-'],
        ['systemd', s.systemd ? 'running' : 'not running'],
        ['active', s.active ?? '-'],
        ['enabled', s.enabled ?? '-'],
      ];
      for (const [k, v] of rows) say(`${k.padEnd(12)} ${v}`);
    });
}

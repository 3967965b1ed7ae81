// What the launcher decides from: launch.json in the install root
// (/opt/ferry-agent), the `current` link, and the state backup taken before a
// trial. Node's standard library only: this file and launcher.ts are copied
// out of any one version (to /opt/ferry-agent/launcher/) so that the code
// deciding which version starts is never the new code.
//
// Every change is written so that a kill -9 or a power cut at any moment
// leaves either the old or the new whole file: temp file, fsync, rename,
// fsync of the directory (as shared/files.ts writeFileAtomic, which this
// file cannot import). A backup is complete exactly when its final directory
// exists; a restore is repeated until launch.json says it is done.
import { closeSync, copyFileSync, existsSync, fsyncSync, lstatSync, mkdirSync, openSync, readFileSync, readdirSync, readlinkSync, renameSync, rmSync, symlinkSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';

export const LAUNCH_FILE = 'launch.json';

/**
 * Called at each step of an upgrade with its name; does nothing. Only the
 * tests' fault injection (test/helpers/crash-hook.ts, loaded with `node
 * --import` by a test) replaces it, to kill the process at that step.
 */
export const upgradeSteps = { reached(_step: string): void {} };
export const CURRENT_LINK = 'current';
/** Inside the state directory: the state as it was when the trial began. */
export const BACKUP_DIR = '.upgrade-backup';
const BACKUP_TMP = '.upgrade-backup.tmp';
/** Exit code with which a running agent asks its launcher to start the pending version (EX_TEMPFAIL). */
export const EXIT_SWITCH = 75;
/** How long a new version has to prove itself, unless the upgrade says otherwise. */
export const DEFAULT_WINDOW_MS = 120_000;
/** Outcomes kept in launch.json. */
const HISTORY = 10;

export interface Pending {
  version: string;
  from: string;
  /** The signed statement's digest (its envelope payload): a reverted bundle is not retried by itself. */
  digest: string;
  /** ready: unpacked and verified, waiting for the switch; trial: the new version was started. */
  stage: 'ready' | 'trial';
  windowMs: number;
  requestedAt: number;
  startedAt?: number;
}

export interface Outcome {
  version: string;
  from: string;
  digest: string;
  outcome: 'committed' | 'reverted';
  /** FERRY_E_UPGRADE_* for a revert. */
  code?: string;
  reason?: string;
  at: number;
}

export interface LaunchState {
  format: 1;
  /** The committed version: what starts when nothing is pending. */
  current: string;
  /** The version committed before it (kept on disk). */
  previous: string | null;
  pending: Pending | null;
  /** Newest last. */
  history: Outcome[];
}

export function versionDir(root: string, version: string): string {
  if (!/^[0-9A-Za-z.+-]{1,64}$/.test(version) || version.startsWith('.')) throw new Error(`not a version directory name: ${JSON.stringify(version)}`);
  return join(root, version);
}

function fsyncPath(p: string): void {
  const fd = openSync(p, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** shared/files' writeFileAtomic, copied: the launcher is installed on its own, outside every version's tree, and imports nothing from it. */
export function writeAtomic(path: string, data: string | Buffer, mode = 0o644): void {
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w', mode);
  try {
    writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  fsyncPath(dirname(path));
}

export function readLaunch(root: string): LaunchState | null {
  let text: string;
  try {
    text = readFileSync(join(root, LAUNCH_FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  const s = JSON.parse(text) as LaunchState;
  if (s.format !== 1 || typeof s.current !== 'string') throw new Error(`${join(root, LAUNCH_FILE)}: unknown format`);
  return { ...s, history: s.history ?? [] };
}

export function writeLaunch(root: string, s: LaunchState): void {
  writeAtomic(join(root, LAUNCH_FILE), JSON.stringify({ ...s, history: s.history.slice(-HISTORY) }, null, 1) + '\n');
}

/** Points `current` at the committed version (a new link renamed over the old one). */
export function linkCurrent(root: string, version: string): void {
  const link = join(root, CURRENT_LINK);
  try {
    if (readlinkSync(link) === version) return;
  } catch {
    // missing or not a link: replaced below
  }
  const tmp = `${link}.tmp-${process.pid}`;
  rmSync(tmp, { force: true });
  symlinkSync(version, tmp);
  renameSync(tmp, link);
  fsyncPath(root);
}

/** Copies a tree, fsyncing every file and directory (regular files and directories only). */
function copyTree(from: string, to: string, skip: (name: string) => boolean = () => false): void {
  mkdirSync(to, { recursive: true, mode: 0o700 });
  for (const name of readdirSync(from)) {
    if (skip(name)) continue;
    const a = join(from, name);
    const b = join(to, name);
    const st = lstatSync(a);
    if (st.isDirectory()) copyTree(a, b);
    else if (st.isFile()) {
      copyFileSync(a, b);
      fsyncPath(b);
    }
  }
  fsyncPath(to);
}

const isBackup = (name: string) => name === BACKUP_DIR || name === BACKUP_TMP || name.startsWith(`${BACKUP_DIR}.`);

/** Takes a complete backup of the state directory (replacing any earlier one). */
export function backupState(stateDir: string): void {
  const tmp = join(stateDir, BACKUP_TMP);
  const final = join(stateDir, BACKUP_DIR);
  rmSync(tmp, { recursive: true, force: true });
  rmSync(final, { recursive: true, force: true });
  copyTree(stateDir, tmp, isBackup);
  upgradeSteps.reached('backup-copied');
  renameSync(tmp, final);
  fsyncPath(stateDir);
}

export function hasBackup(stateDir: string): boolean {
  return existsSync(join(stateDir, BACKUP_DIR));
}

/**
 * Puts the state directory back as the backup has it: what the new version
 * changed or added is removed. Safe to repeat after a crash part way.
 */
export function restoreState(stateDir: string): void {
  const backup = join(stateDir, BACKUP_DIR);
  if (!existsSync(backup)) throw new Error(`no state backup in ${backup}`);
  for (const name of readdirSync(stateDir)) if (!isBackup(name)) rmSync(join(stateDir, name), { recursive: true, force: true });
  upgradeSteps.reached('restore-emptied');
  copyTree(backup, stateDir);
}

export function dropBackup(stateDir: string): void {
  rmSync(join(stateDir, BACKUP_TMP), { recursive: true, force: true });
  rmSync(join(stateDir, BACKUP_DIR), { recursive: true, force: true });
}

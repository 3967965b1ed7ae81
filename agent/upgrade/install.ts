// Puts a verified archive into its own version directory: R/<version>,
// written under a staging name, every file and directory fsynced, then
// renamed into place, so R/<version> exists only whole. Before that: the
// archive against its signed manifest (every file's digest, nothing more),
// the state formats it reads against this host's, and free disk. A lock
// file keeps two upgrades of one install root from running at once.
import { closeSync, existsSync, fsyncSync, lstatSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, statfsSync, writeFileSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { checkEntries, type AgentBundle, type BundleManifest } from '../../shared/agent-bundle.js';
import { FerryError } from '../../shared/errors.js';
import { readTarGz } from '../../shared/tar.js';
import { versionDir } from './launch-state.js';

/** Written into every version directory an upgrade made (the package's own are not): only those are ever removed. */
export const SELF_INSTALLED = '.ferry-self-installed';
export const LOCK_FILE = '.upgrade.lock';
/** Kept free beyond what a bundle needs. */
export const DISK_MARGIN_BYTES = 64 * 1024 * 1024;

export function freeBytes(dir: string): number {
  const s = statfsSync(dir);
  return Number(s.bavail) * Number(s.bsize);
}

export function checkDisk(dir: string, need: number, what: string): void {
  const free = freeBytes(dir);
  if (free < need + DISK_MARGIN_BYTES) {
    throw new FerryError('FERRY_E_UPGRADE_DISK', `${what} needs ${mb(need)} MB and ${mb(DISK_MARGIN_BYTES)} MB to spare in ${dir}; ${mb(free)} MB are free`);
  }
}

const mb = (n: number) => Math.ceil(n / (1024 * 1024));

function fsyncDir(p: string): void {
  const fd = openSync(p, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Verifies and unpacks the archive into R/<version>; returns its manifest.
 * `stateFormat`: the format of this host's state, which the version must read.
 */
export function unpackBundle(root: string, archive: Buffer, statement: AgentBundle, stateFormat: number): BundleManifest {
  const entries = readTarGz(archive);
  const manifest = checkEntries(entries, statement.manifest);
  if (manifest.version !== statement.version || manifest.stateFormat !== statement.stateFormat || manifest.minStateFormat !== statement.minStateFormat) {
    throw new FerryError('FERRY_E_BUNDLE_INVALID', `bundle.json says ${manifest.version} (state ${manifest.minStateFormat}..${manifest.stateFormat}), the statement ${statement.version} (state ${statement.minStateFormat}..${statement.stateFormat})`);
  }
  if (stateFormat < manifest.minStateFormat || stateFormat > manifest.stateFormat) {
    throw new FerryError('FERRY_E_BUNDLE_STATE_FORMAT', `ferry-agent ${manifest.version} reads state formats ${manifest.minStateFormat} to ${manifest.stateFormat}; this host's is ${stateFormat}`);
  }
  checkDisk(root, entries.reduce((n, e) => n + (e.data?.length ?? 0), 0), `ferry-agent ${manifest.version} unpacked`);
  const final = versionDir(root, manifest.version);
  const staging = join(root, `.staging-${manifest.version}-${process.pid}`);
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { mode: 0o755 });
  const dirs = new Set<string>([staging]);
  for (const e of entries) {
    const p = join(staging, e.path);
    if (!e.data) {
      mkdirSync(p, { recursive: true, mode: 0o755 });
      dirs.add(p);
      continue;
    }
    mkdirSync(dirname(p), { recursive: true, mode: 0o755 });
    for (let d = dirname(p); d.length > staging.length; d = dirname(d)) dirs.add(d);
    const fd = openSync(p, 'w', e.mode);
    try {
      writeSync(fd, e.data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
  writeFileSync(join(staging, SELF_INSTALLED), `${statement.version}\n`);
  for (const d of [...dirs].sort((a, b) => b.length - a.length)) fsyncDir(d);
  if (existsSync(final)) rmSync(final, { recursive: true, force: true }); // an earlier attempt, never the running one (see upgrader)
  renameSync(staging, final);
  fsyncDir(root);
  return manifest;
}

/** Removes what earlier attempts left: staging directories. */
export function cleanStaging(root: string): void {
  for (const name of readdirSync(root)) if (name.startsWith('.staging-')) rmSync(join(root, name), { recursive: true, force: true });
}

/** Removes version directories an upgrade made that are neither `keep`: current, previous and pending stay. */
export function pruneVersions(root: string, keep: readonly string[]): string[] {
  const removed: string[] = [];
  for (const name of readdirSync(root)) {
    // Only real directories: the `current` link points into one, and must stay.
    if (name.startsWith('.') || keep.includes(name) || !lstatSync(join(root, name)).isDirectory() || !existsSync(join(root, name, SELF_INSTALLED))) continue;
    rmSync(join(root, name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}

/** Takes the install root's upgrade lock; one left by a process that is gone is taken over. Returns the release. */
export function takeLock(root: string): () => void {
  const file = join(root, LOCK_FILE);
  for (let i = 0; i < 2; i++) {
    try {
      const fd = openSync(file, 'wx', 0o600);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return () => rmSync(file, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      let pid = 0;
      try {
        pid = Number(readFileSync(file, 'utf8').trim());
      } catch {
        // gone meanwhile
      }
      if (pid && pid !== process.pid && alive(pid)) throw new FerryError('FERRY_E_UPGRADE_LOCKED', `process ${pid} holds ${file}`);
      rmSync(file, { force: true });
    }
  }
  throw new FerryError('FERRY_E_UPGRADE_LOCKED', file);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

// Secrets and configs stay in the bank. A release only names them; their
// values live on the agent host: set with `ferry-agent secret set NAME
// --from-file F` (stored 0600 under the state directory's secrets/ or
// configs/), or in a file the local policy names. The hub never sees a value
// and nothing here sends one: the reconciler receives a path to mount and a
// digest for the config hash, both kept on this host.
//
// Each mounted value is a copy under mounts/, named after the digest of its
// value and file mode, and written with the mode (and, as root, the owner)
// the release asks for: a changed value is a new path, so the containers that
// use it are recreated, and a running container keeps the file it started
// with.
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { FerryError } from '../shared/errors.js';
import { writeFileAtomic } from '../shared/files.js';
import { FILE_REF_NAME, type FileRef } from '../shared/release.js';
import type { FileProvider, ProvidedFile } from './reconcile/model.js';

export type FileKind = 'secret' | 'config';
const DIR: Record<FileKind, string> = { secret: 'secrets', config: 'configs' };
const MAX_BYTES = 1024 * 1024;
/** compose's default mode for a mounted secret or config. */
const DEFAULT_MODE = 0o444;

/** Files the local policy names for some values (`secrets: {NAME: /path}`), which win over the state directory. */
export interface PolicyFiles {
  readonly secret: ReadonlyMap<string, string>;
  readonly config: ReadonlyMap<string, string>;
}

export const NO_POLICY_FILES: PolicyFiles = { secret: new Map(), config: new Map() };

function checkName(kind: FileKind, name: string): void {
  if (!FILE_REF_NAME.test(name)) throw new FerryError('FERRY_E_VALIDATION', `${kind} name ${JSON.stringify(name)}: letters, digits, . _ and -, up to 128`);
}

/** Stores a value (0600, atomically) under the state directory. */
export function setValue(stateDir: string, kind: FileKind, name: string, value: Buffer): string {
  checkName(kind, name);
  if (value.length > MAX_BYTES) throw new FerryError('FERRY_E_VALIDATION', `${kind} ${name}: ${value.length} bytes; at most ${MAX_BYTES}`);
  const dir = join(stateDir, DIR[kind]);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, name);
  writeFileAtomic(path, value, 0o600);
  return path;
}

/** The names stored under the state directory (values are never listed). */
export function listValues(stateDir: string, kind: FileKind): string[] {
  try {
    return readdirSync(join(stateDir, DIR[kind])).filter((n) => FILE_REF_NAME.test(n)).sort();
  } catch {
    return [];
  }
}

/** Removes a stored value; containers already using it keep their copy until they are replaced. */
export function removeValue(stateDir: string, kind: FileKind, name: string): boolean {
  checkName(kind, name);
  const path = join(stateDir, DIR[kind], name);
  if (!existsSync(path)) return false;
  renameSync(path, `${path}.removed`); // atomic; the .removed file is overwritten by the next removal
  return true;
}

/**
 * The provider the reconciler hashes and mounts with: reads each value (policy
 * file first, then the state directory), prepares its mounted copy, and
 * answers undefined for a value that is missing. Errors other than absence
 * (unreadable file, chown refused) are thrown as FERRY_E_SECRET_FILE.
 */
export function fileProvider(stateDir: string, policy: PolicyFiles = NO_POLICY_FILES): FileProvider {
  return (kind, ref) => {
    const value = readValue(stateDir, policy, kind, ref.name);
    return value === undefined ? undefined : prepare(stateDir, kind, ref, value);
  };
}

function readValue(stateDir: string, policy: PolicyFiles, kind: FileKind, name: string): Buffer | undefined {
  const path = policy[kind].get(name) ?? join(stateDir, DIR[kind], name);
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new FerryError('FERRY_E_SECRET_FILE', `${kind} ${name}: ${path} is not a regular file`);
    if (st.size > MAX_BYTES) throw new FerryError('FERRY_E_SECRET_FILE', `${kind} ${name}: ${path} is larger than ${MAX_BYTES} bytes`);
    return readFileSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    if (err instanceof FerryError) throw err;
    throw new FerryError('FERRY_E_SECRET_FILE', `${kind} ${name}: ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

function prepare(stateDir: string, kind: FileKind, ref: FileRef, value: Buffer): ProvidedFile {
  const mode = ref.mode ?? DEFAULT_MODE;
  const digest = createHash('sha256').update(value).digest('hex');
  // The copy's name depends on everything that shapes the file, never on the value alone (the digest is not shown).
  const id = createHash('sha256').update(`${kind}\0${ref.name}\0${digest}\0${mode}\0${ref.uid ?? ''}\0${ref.gid ?? ''}`).digest('hex').slice(0, 24);
  const dir = join(stateDir, 'mounts');
  const path = join(dir, `${kind}-${ref.name}-${id}`);
  if (!existsSync(path)) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeFileAtomic(path, value, mode);
    chmodSync(path, mode); // the umask may have narrowed it
    if (ref.uid !== undefined || ref.gid !== undefined) {
      const uid = ref.uid !== undefined ? Number(ref.uid) : -1;
      const gid = ref.gid !== undefined ? Number(ref.gid) : -1;
      try {
        chownSync(path, uid, gid);
      } catch (err) {
        throw new FerryError('FERRY_E_SECRET_FILE', `${kind} ${ref.name}: cannot give it uid ${ref.uid ?? '-'} gid ${ref.gid ?? '-'}: ${(err as NodeJS.ErrnoException).code}`);
      }
    }
  }
  return { path, digest: `sha256:${digest}` };
}

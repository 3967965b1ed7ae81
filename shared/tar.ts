// The agent bundle's archive: POSIX ustar, gzip-compressed, written so the
// same files give the same bytes (sorted entries, uid/gid 0, one fixed
// mtime, modes 0644/0755 only) and read back strictly: regular files and
// directories only, relative normalised paths, no `..`, nothing twice. Both
// sides are ours (the bundle build writes, the agent and the hub read), and
// what is read has been digest-checked against a signed statement first;
// the strictness is so that a mistake is an error, never a file outside the
// target directory.
import { gunzipSync, gzipSync } from 'node:zlib';
import { FerryError } from './errors.js';

export interface TarEntry {
  path: string;
  /** Absent for a directory. */
  data?: Buffer;
  /** 0o755 for executables and directories, else 0o644. */
  mode: number;
}

const BLOCK = 512;
/** Largest archive the reader unpacks in memory (a bundle with a Node runtime is about 130 MB). */
export const MAX_TAR_BYTES = 512 * 1024 * 1024;

function octal(n: number, width: number): string {
  return n.toString(8).padStart(width - 1, '0') + '\0';
}

/** Splits a path into ustar's prefix (<= 155) and name (<= 100). */
function splitPath(p: string): { prefix: string; name: string } {
  if (Buffer.byteLength(p) <= 100) return { prefix: '', name: p };
  for (let i = p.lastIndexOf('/'); i > 0; i = p.lastIndexOf('/', i - 1)) {
    const prefix = p.slice(0, i);
    const name = p.slice(i + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(name) <= 100) return { prefix, name };
  }
  throw new FerryError('FERRY_E_BUNDLE_INVALID', `path too long for the archive (ustar): ${p}`);
}

function header(e: TarEntry, mtime: number): Buffer {
  const h = Buffer.alloc(BLOCK);
  const dir = e.data === undefined;
  const { prefix, name } = splitPath(dir ? `${e.path}/` : e.path);
  h.write(name, 0, 100, 'utf8');
  h.write(octal(dir ? 0o755 : e.mode, 8), 100, 'ascii');
  h.write(octal(0, 8), 108, 'ascii');
  h.write(octal(0, 8), 116, 'ascii');
  h.write(octal(dir ? 0 : e.data!.length, 12), 124, 'ascii');
  h.write(octal(mtime, 12), 136, 'ascii');
  h.write('        ', 148, 'ascii');
  h.write(dir ? '5' : '0', 156, 'ascii');
  h.write('ustar\0', 257, 'ascii');
  h.write('00', 263, 'ascii');
  h.write('root', 265, 'ascii');
  h.write('root', 297, 'ascii');
  h.write(prefix, 345, 155, 'utf8');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(octal(sum, 7) + ' ', 148, 'ascii');
  return h;
}

/** The archive of `entries` in path order, gzipped. The same entries always give the same bytes. */
export function writeTarGz(entries: readonly TarEntry[], mtime = 0): Buffer {
  const sorted = [...entries].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const parts: Buffer[] = [];
  for (const e of sorted) {
    checkPath(e.path);
    parts.push(header(e, mtime));
    if (e.data) {
      parts.push(e.data);
      const pad = (BLOCK - (e.data.length % BLOCK)) % BLOCK;
      if (pad) parts.push(Buffer.alloc(pad));
    }
  }
  parts.push(Buffer.alloc(BLOCK * 2));
  return gzipSync(Buffer.concat(parts), { level: 9 });
}

function checkPath(p: string): void {
  if (!p || p.startsWith('/') || p.includes('\0') || p.includes('\\') || p.split('/').some((s) => s === '' || s === '.' || s === '..')) {
    throw new FerryError('FERRY_E_BUNDLE_INVALID', `archive path ${JSON.stringify(p.slice(0, 200))} is not a plain relative path`);
  }
}

const text = (b: Buffer, from: number, len: number) => {
  const s = b.subarray(from, from + len);
  const z = s.indexOf(0);
  return (z < 0 ? s : s.subarray(0, z)).toString('utf8');
};

/** Reads an archive written by writeTarGz (or any plain ustar of files and directories). */
export function readTarGz(gz: Buffer): TarEntry[] {
  let tar: Buffer;
  try {
    tar = gunzipSync(gz, { maxOutputLength: MAX_TAR_BYTES });
  } catch (err) {
    throw new FerryError('FERRY_E_BUNDLE_INVALID', `not a gzip archive, or larger than ${MAX_TAR_BYTES} bytes unpacked: ${(err as Error).message}`);
  }
  const out: TarEntry[] = [];
  const seen = new Set<string>();
  for (let off = 0; off + BLOCK <= tar.length; ) {
    const h = tar.subarray(off, off + BLOCK);
    if (h.every((b) => b === 0)) break;
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : h[i]!;
    if (sum !== parseInt(text(h, 148, 8).trim(), 8)) throw new FerryError('FERRY_E_BUNDLE_INVALID', `archive header checksum wrong at offset ${off}`);
    const prefix = text(h, 345, 155);
    const raw = (prefix ? `${prefix}/` : '') + text(h, 0, 100);
    const type = String.fromCharCode(h[156]!);
    const size = parseInt(text(h, 124, 12).trim() || '0', 8);
    const mode = parseInt(text(h, 100, 8).trim() || '0', 8) & 0o7777;
    const dir = type === '5';
    if (!dir && type !== '0' && type !== '\0') throw new FerryError('FERRY_E_BUNDLE_INVALID', `archive entry ${raw} is neither a file nor a directory (type ${JSON.stringify(type)})`);
    const path = dir ? raw.replace(/\/$/, '') : raw;
    checkPath(path);
    if (seen.has(path)) throw new FerryError('FERRY_E_BUNDLE_INVALID', `archive holds ${path} twice`);
    seen.add(path);
    off += BLOCK;
    if (off + size > tar.length) throw new FerryError('FERRY_E_BUNDLE_INVALID', `archive is cut short in ${path}`);
    out.push(dir ? { path, mode: 0o755 } : { path, data: Buffer.from(tar.subarray(off, off + size)), mode: mode & 0o111 ? 0o755 : 0o644 });
    off += Math.ceil(size / BLOCK) * BLOCK;
  }
  return out;
}

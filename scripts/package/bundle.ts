// The agent bundle: ferry-agent's compiled code (dist/agent, dist/shared),
// the unit template, the production packages the agent imports (found by
// reading its own imports, then each package's dependencies, from the
// checkout's node_modules as `npm ci` installed them from the lockfile) and,
// on request, a Node runtime — with bundle.json naming every file's SHA-256.
// Reproducible: the same checkout and node_modules give the same archive,
// byte for byte (shared/tar.ts writes sorted entries with fixed owners,
// modes and mtime).
import { existsSync, lstatSync, readFileSync, readdirSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import semver from 'semver';
import { MANIFEST_FILE, STATE_FORMAT, sha256, type BundleManifest } from '../../shared/agent-bundle.js';
import { FerryError } from '../../shared/errors.js';
import { writeTarGz, type TarEntry } from '../../shared/tar.js';

/** The checkout this script was compiled in (dist/scripts/package/ -> ../../..). */
export const CHECKOUT = fileURLToPath(new URL('../../../', import.meta.url));

export interface BundleOptions {
  /** The checkout holding dist/ and node_modules/ (default: this one). */
  root?: string;
  /** The bundle's version (default: package.json's). */
  version?: string;
  /** A Node runtime to put in node/bin/node (its path), or absent: the host's node runs the agent. */
  node?: string;
  /** The oldest state format this version can read (default: the one it writes). */
  minStateFormat?: number;
  /** Changes the files before they are listed and packed (tests make broken versions with it). */
  patch?: (files: Map<string, TarEntry>) => void;
  /** SOURCE_DATE_EPOCH, seconds: the mtime of every entry (default 0). */
  mtime?: number;
}

export interface Bundle {
  version: string;
  archive: Buffer;
  manifest: BundleManifest;
  manifestBytes: Buffer;
  /** sha256:… of the archive. */
  digest: string;
}

const modeOf = (path: string) => (lstatSync(path).mode & 0o111 ? 0o755 : 0o644);

function walk(base: string, dir: string, out: Map<string, TarEntry>, keep: (rel: string) => boolean, prefix = ''): void {
  for (const name of readdirSync(join(base, dir)).sort()) {
    const rel = dir ? `${dir}/${name}` : name;
    const abs = join(base, rel);
    const st = lstatSync(abs);
    if (st.isSymbolicLink()) {
      if (rel.includes('node_modules/.bin')) continue; // npm's command links: the agent runs none of them
      throw new FerryError('FERRY_E_BUNDLE_INVALID', `${abs} is a symbolic link; a bundle holds regular files only`);
    }
    if (st.isDirectory()) {
      if (name === '.bin') continue;
      walk(base, rel, out, keep, prefix);
    } else if (st.isFile() && keep(rel)) {
      out.set(prefix + rel, { path: prefix + rel, data: readFileSync(abs), mode: modeOf(abs) });
    }
  }
}

/** Package names a compiled file imports (bare specifiers, builtins left out). */
function importsOf(code: string): string[] {
  const out: string[] = [];
  for (const m of code.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)['"]([^'"./][^'"]*)['"]/g)) {
    const spec = m[1]!;
    if (spec.startsWith('node:') || builtinModules.includes(spec.split('/')[0]!)) continue;
    out.push(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!);
  }
  return out;
}

/** The packages the agent needs: what its code imports, and their dependencies, as installed. */
export function agentPackages(root: string, code: Iterable<Buffer>): string[] {
  const queue = new Set<string>();
  for (const c of code) for (const p of importsOf(c.toString('utf8'))) queue.add(p);
  const seen = new Set<string>();
  const todo = [...queue];
  while (todo.length) {
    const name = todo.pop()!;
    if (seen.has(name) || name.startsWith('@types/')) continue; // type declarations only
    const pj = join(root, 'node_modules', name, 'package.json');
    if (!existsSync(pj)) {
      if (queue.has(name)) throw new FerryError('FERRY_E_BUNDLE_INVALID', `the agent imports ${name}, which is not in ${join(root, 'node_modules')}; run npm ci`);
      continue; // an optional dependency not installed on this platform
    }
    seen.add(name);
    const pkg = JSON.parse(readFileSync(pj, 'utf8')) as { dependencies?: Record<string, string>; optionalDependencies?: Record<string, string> };
    todo.push(...Object.keys({ ...pkg.dependencies, ...pkg.optionalDependencies }));
  }
  return [...seen].sort();
}

export function buildBundle(o: BundleOptions = {}): Bundle {
  const root = o.root ?? CHECKOUT;
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string; engines?: Record<string, string> };
  const version = o.version ?? pkg.version;
  if (semver.valid(version) !== version) throw new FerryError('FERRY_E_VALIDATION', `--version ${version}: a semver version like 1.2.3`);
  if (!existsSync(join(root, 'dist', 'agent', 'main.js'))) throw new FerryError('FERRY_E_BUNDLE_INVALID', `${join(root, 'dist')} holds no compiled agent; run npm run build`);
  const files = new Map<string, TarEntry>();
  for (const d of ['dist/agent', 'dist/shared']) walk(root, d, files, (rel) => rel.endsWith('.js'));
  const code = [...files.values()].map((f) => f.data!);
  for (const p of agentPackages(root, code)) walk(root, `node_modules/${p}`, files, () => true);
  const unit = 'scripts/ferry-agent.service';
  files.set(unit, { path: unit, data: readFileSync(join(root, unit)), mode: 0o644 });
  // What shared/version.ts reads: the bundle's own version.
  const manifestPkg = { name: 'ferry', version, type: 'module', private: true, engines: pkg.engines ?? {} };
  files.set('package.json', { path: 'package.json', data: Buffer.from(JSON.stringify(manifestPkg, null, 2) + '\n'), mode: 0o644 });
  let nodeVersion: string | null = null;
  if (o.node) {
    files.set('node/bin/node', { path: 'node/bin/node', data: readFileSync(o.node), mode: 0o755 });
    nodeVersion = o.node === process.execPath ? process.version : null;
  }
  o.patch?.(files);
  const list = [...files.values()].filter((f) => f.data).sort((a, b) => (a.path < b.path ? -1 : 1));
  const manifest: BundleManifest = {
    _type: 'ferry-agent-bundle',
    version,
    stateFormat: STATE_FORMAT,
    minStateFormat: o.minStateFormat ?? STATE_FORMAT,
    node: o.node ? (nodeVersion ?? 'bundled') : null,
    files: Object.fromEntries(list.map((f) => [f.path, { sha256: sha256(f.data!), size: f.data!.length, mode: f.mode as 0o644 | 0o755 }])),
  };
  const manifestBytes = Buffer.from(JSON.stringify(manifest, null, 1) + '\n');
  const archive = writeTarGz([{ path: MANIFEST_FILE, data: manifestBytes, mode: 0o644 }, ...list], o.mtime ?? 0);
  return { version, archive, manifest, manifestBytes, digest: sha256(archive) };
}

/** For messages: where a path is relative to the checkout. */
export const shown = (p: string, root = CHECKOUT) => relative(root, p) || '.';

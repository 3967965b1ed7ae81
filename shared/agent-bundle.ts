// Agent bundles: a versioned, self-contained ferry-agent (compiled code,
// production dependencies, optionally a Node runtime) as one .tar.gz, and
// the statement the tenant's release role signs about it.
//
// - The manifest (bundle.json, inside the archive) names the version, every
//   file with its SHA-256 and mode, and the state formats this version reads
//   (`minStateFormat` up to `stateFormat`, which it writes).
// - The statement (DSSE payload type agent-bundle, signed N of M by the
//   release role exactly like a release) binds the archive's digest and
//   size, the manifest's digest, the tenants it is for, and optionally a
//   floor below which agents never go again. Agents refuse a statement for
//   another tenant, below threshold or below the floor, and an archive or a
//   file whose digest is not the signed one.
import { createHash } from 'node:crypto';
import semver from 'semver';
import { z } from 'zod';
import { FerryError } from './errors.js';
import { parseStrictJson } from './strict-json.js';
import type { TarEntry } from './tar.js';

/** The state format this code reads and writes (agent/trust-store.ts `format`). Raise it with a migration. */
export const STATE_FORMAT = 1;
export const MANIFEST_FILE = 'bundle.json';
/** A rollout of agent versions is a rollout of this pseudo-stack (no release stack can be named so: shared/release.ts NAME). */
export const AGENT_STACK = '@agent';

const SemVer = z.string().max(64).refine((v) => semver.valid(v) === v, 'a semver version like 1.2.3');
const Sha256 = z.string().regex(/^sha256:[0-9a-f]{64}$/);
const Format = z.number().int().min(1).max(1_000_000);

export const BundleManifest = z.strictObject({
  _type: z.literal('ferry-agent-bundle'),
  version: SemVer,
  stateFormat: Format,
  minStateFormat: Format,
  /** The Node runtime inside the bundle (node/bin/node), or null: the host's node runs it. */
  node: z.string().max(32).nullable(),
  files: z.record(z.string().max(1024), z.strictObject({ sha256: Sha256, size: z.number().int().nonnegative(), mode: z.union([z.literal(0o644), z.literal(0o755)]) })),
});
export type BundleManifest = z.infer<typeof BundleManifest>;

export const AgentBundle = z.strictObject({
  _type: z.literal('agent-bundle'),
  version: SemVer,
  /** The tenants whose agents may install it (the statement is bound to them, as a directive to its agent). */
  tenants: z.array(z.string().min(1).max(64)).min(1).max(1000),
  archive: z.strictObject({ sha256: Sha256, size: z.number().int().positive().max(2 ** 40) }),
  /** SHA-256 of bundle.json's bytes. */
  manifest: Sha256,
  stateFormat: Format,
  minStateFormat: Format,
  /** Agents that accept this refuse any agent version below it from then on. */
  floor: SemVer.optional(),
  createdAt: z.number().int().nonnegative(),
});
export type AgentBundle = z.infer<typeof AgentBundle>;

export const sha256 = (b: Uint8Array): string => 'sha256:' + createHash('sha256').update(b).digest('hex');

function issue(what: string, e: z.ZodError): string {
  const i = e.issues[0];
  return `${what}: ${i?.path.join('.') || '(root)'}: ${i?.message}`;
}

/** Parses verified statement bytes strictly. */
export function parseAgentBundle(payload: Uint8Array): AgentBundle {
  const r = AgentBundle.safeParse(parseStrictJson(payload));
  if (!r.success) throw new FerryError('FERRY_E_PAYLOAD_INVALID', issue('agent bundle', r.error));
  const b = r.data;
  if (b.floor && semver.gt(b.floor, b.version)) throw new FerryError('FERRY_E_PAYLOAD_INVALID', `agent bundle: floor ${b.floor} above version ${b.version}`);
  if (b.minStateFormat > b.stateFormat) throw new FerryError('FERRY_E_PAYLOAD_INVALID', 'agent bundle: minStateFormat above stateFormat');
  return b;
}

export function parseManifest(bytes: Uint8Array): BundleManifest {
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    throw new FerryError('FERRY_E_BUNDLE_INVALID', `${MANIFEST_FILE} is not JSON`);
  }
  const r = BundleManifest.safeParse(doc);
  if (!r.success) throw new FerryError('FERRY_E_BUNDLE_INVALID', issue(MANIFEST_FILE, r.error));
  if (r.data.minStateFormat > r.data.stateFormat) throw new FerryError('FERRY_E_BUNDLE_INVALID', `${MANIFEST_FILE}: minStateFormat above stateFormat`);
  return r.data;
}

/**
 * Checks unpacked entries against their manifest: the manifest's own digest
 * (as signed), every file listed present with its digest, size and mode, and
 * nothing else. Returns the manifest.
 */
export function checkEntries(entries: readonly TarEntry[], manifestDigest: string): BundleManifest {
  const m = entries.find((e) => e.path === MANIFEST_FILE);
  if (!m?.data) throw new FerryError('FERRY_E_BUNDLE_INVALID', `no ${MANIFEST_FILE} in the archive`);
  if (sha256(m.data) !== manifestDigest) throw new FerryError('FERRY_E_BUNDLE_DIGEST', `${MANIFEST_FILE} is ${sha256(m.data)}, the statement says ${manifestDigest}`);
  const manifest = parseManifest(m.data);
  const files = entries.filter((e) => e.data && e.path !== MANIFEST_FILE);
  const listed = Object.keys(manifest.files);
  if (files.length !== listed.length) throw new FerryError('FERRY_E_BUNDLE_DIGEST', `the archive holds ${files.length} files, ${MANIFEST_FILE} lists ${listed.length}`);
  for (const f of files) {
    const want = Object.hasOwn(manifest.files, f.path) ? manifest.files[f.path] : undefined;
    if (!want) throw new FerryError('FERRY_E_BUNDLE_DIGEST', `${f.path} is not in ${MANIFEST_FILE}`);
    if (want.size !== f.data!.length || want.sha256 !== sha256(f.data!) || want.mode !== f.mode) throw new FerryError('FERRY_E_BUNDLE_DIGEST', `${f.path} does not match ${MANIFEST_FILE}`);
  }
  return manifest;
}

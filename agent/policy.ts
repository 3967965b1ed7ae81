// The institution's local policy: a YAML file on the agent host (default
// /etc/ferry/policy.yaml) that the hub can neither read nor change. It narrows
// what any signed release may do here: which registries images come from,
// whose co-signatures a release needs, which operations are allowed, when
// (maintenance windows, UTC), and what a container may be
// (policy-containers.ts: bind mounts, host ports, user 0, capabilities,
// network modes, host namespaces, devices, sysctls).
import { readFileSync } from 'node:fs';
import { LineCounter, parseDocument, isMap, isScalar } from 'yaml';
import { z } from 'zod';
import { FerryError } from '../shared/errors.js';
import { decodePublicKey, keyId } from '../shared/keys.js';
import { DIGEST_REF, FILE_REF_NAME, registryOf, type Release } from '../shared/release.js';
import { ContainersSection, DEFAULT_LIMITS, badRange, containerLimits, judge, refusal, type ContainerLimits, type LimitKey } from './policy-containers.js';
import type { PolicyFiles } from './secrets.js';
import { DEFAULT_OPERATION_LIMITS, OperationsSection, operationLimits, type OperationLimits } from './operations/policy.js';

export const DEFAULT_POLICY_PATH = '/etc/ferry/policy.yaml';
export const OPERATIONS = ['deploy', 'rollback', 'restart', 'logs', 'exec'] as const;
const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;
const HHMM = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'HH:MM (UTC)');

const PolicyFile = z.strictObject({
  /** Allowed registries (host[:port]); absent = any registry. Images are always by digest. */
  registries: z.array(z.string().min(1).max(255)).max(64).optional(),
  /** Registries the agent may fetch images from directly for the relay (bankRegistry.source: direct); absent: none, images come through the hub. */
  directRegistries: z.array(z.string().min(1).max(255)).max(64).optional(),
  cosigners: z
    .strictObject({
      threshold: z.number().int().min(1).max(32),
      keys: z.array(z.string()).min(1).max(32),
    })
    .optional(),
  /** Kinds allowed or denied (deploy, rollback and the remote operations), per stack/service, and the exec allowlist (operations/policy.ts). */
  operations: OperationsSection.optional(),
  /** Files holding secret and config values, by name (they win over `ferry-agent secret set`). */
  secrets: z.record(z.string().regex(FILE_REF_NAME), z.string().regex(/^\//, 'an absolute path')).optional(),
  configs: z.record(z.string().regex(FILE_REF_NAME), z.string().regex(/^\//, 'an absolute path')).optional(),
  maintenanceWindows: z.array(z.strictObject({ days: z.array(z.enum(DAYS)).min(1).optional(), start: HHMM, end: HHMM })).max(32).optional(),
  /** What a container may be (policy-containers.ts); absent: the strict defaults. */
  containers: ContainersSection.optional(),
  /** Autoscaling (x-ferry.autoscale): whether the agent may change replicas at all, and a cap below any release's max. */
  autoscale: z.strictObject({ enabled: z.boolean().optional(), maxReplicas: z.number().int().min(1).max(100).optional() }).optional(),
});
export type PolicyFile = z.infer<typeof PolicyFile>;

export interface Policy {
  readonly source: string | null;
  readonly registries: readonly string[] | null;
  readonly directRegistries: readonly string[];
  readonly cosigners: { threshold: number; keys: ReadonlyMap<string, Uint8Array> } | null;
  readonly allow: readonly string[] | null;
  readonly deny: readonly string[];
  readonly windows: readonly { days: readonly string[]; start: number; end: number }[];
  readonly containers: ContainerLimits;
  /** Remote operations: per stack/service rules, what runs outside windows, the exec allowlist. */
  readonly operations: OperationLimits;
  /** Where secret and config values are read from, when the policy names their files. */
  readonly files: PolicyFiles;
  /** Autoscaling: off, or capped at maxReplicas (null: the release's max). */
  readonly autoscale: { readonly enabled: boolean; readonly maxReplicas: number | null };
}

export const NO_POLICY: Policy = Object.freeze({
  source: null,
  registries: null,
  directRegistries: [],
  cosigners: null,
  allow: null,
  deny: [],
  windows: [],
  containers: DEFAULT_LIMITS,
  operations: DEFAULT_OPERATION_LIMITS,
  files: { secret: new Map(), config: new Map() },
  autoscale: { enabled: true, maxReplicas: null },
});

export function parsePolicy(text: string, source: string): Policy {
  const lines = new LineCounter();
  const yaml = parseDocument(text, { uniqueKeys: true, lineCounter: lines });
  const syntax = yaml.errors[0];
  if (syntax) throw new FerryError('FERRY_E_POLICY_INVALID', `${source}: ${syntax.message.split('\n')[0]}`);
  const r = PolicyFile.safeParse(yaml.toJS() ?? {});
  if (!r.success) {
    const i = r.error.issues[0];
    throw new FerryError('FERRY_E_POLICY_INVALID', `${source}: ${i?.path.join('.') || '(root)'}: ${i?.message}`);
  }
  const p = r.data;
  const range = p.containers && badRange(p.containers);
  if (range) throw new FerryError('FERRY_E_POLICY_INVALID', `${source}: ${range}`);
  // `file:line` of each containers.* key, so a refusal names the line that decided it
  const section = yaml.get('containers', true);
  const lineOf = (key: LimitKey) => {
    if (!isMap(section)) return undefined;
    const pair = section.items.find((it) => isScalar(it.key) && it.key.value === key);
    const at = pair && isScalar(pair.key) && pair.key.range ? lines.linePos(pair.key.range[0]).line : undefined;
    return at === undefined ? undefined : `${source}:${at}`;
  };
  let cosigners: Policy['cosigners'] = null;
  if (p.cosigners) {
    const keys = new Map<string, Uint8Array>();
    for (const k of p.cosigners.keys) {
      let pub: Uint8Array;
      try {
        pub = decodePublicKey(k.trim());
      } catch {
        throw new FerryError('FERRY_E_POLICY_INVALID', `${source}: cosigners.keys: ${k.slice(0, 20)}… is not a base64 Ed25519 public key`);
      }
      keys.set(keyId(pub), pub);
    }
    if (p.cosigners.threshold > keys.size) throw new FerryError('FERRY_E_POLICY_INVALID', `${source}: cosigners.threshold above the number of distinct keys`);
    cosigners = { threshold: p.cosigners.threshold, keys };
  }
  const minutes = (hhmm: string) => Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3));
  return Object.freeze({
    source,
    registries: p.registries ?? null,
    directRegistries: p.directRegistries ?? [],
    cosigners,
    allow: p.operations?.allow ?? null,
    deny: p.operations?.deny ?? [],
    windows: (p.maintenanceWindows ?? []).map((w) => ({ days: w.days ?? [...DAYS], start: minutes(w.start), end: minutes(w.end) })),
    containers: containerLimits(p.containers, lineOf),
    operations: operationLimits(p.operations, source),
    files: { secret: new Map(Object.entries(p.secrets ?? {})), config: new Map(Object.entries(p.configs ?? {})) },
    autoscale: { enabled: p.autoscale?.enabled ?? true, maxReplicas: p.autoscale?.maxReplicas ?? null },
  });
}

/** Loads the policy; the default path may be absent (no policy), an explicit path must exist. */
export function loadPolicy(path: string | undefined): Policy {
  const file = path ?? DEFAULT_POLICY_PATH;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !path) return NO_POLICY;
    throw new FerryError('FERRY_E_POLICY_INVALID', `${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return parsePolicy(text, file);
}

export function operationAllowed(p: Policy, op: string): boolean {
  if (p.deny.includes(op)) return false;
  return p.allow === null || p.allow.includes(op);
}

/** True when `now` falls in a maintenance window (or no windows are set). Windows may wrap midnight. */
export function inWindow(p: Policy, now: number): boolean {
  if (p.windows.length === 0) return true;
  const d = new Date(now);
  const minute = d.getUTCHours() * 60 + d.getUTCMinutes();
  const today = DAYS[d.getUTCDay()]!;
  const yesterday = DAYS[(d.getUTCDay() + 6) % 7]!;
  return p.windows.some((w) => {
    if (w.start <= w.end) return w.days.includes(today) && minute >= w.start && minute < w.end;
    // wraps midnight: the part after midnight belongs to the previous day's window
    return (w.days.includes(today) && minute >= w.start) || (w.days.includes(yesterday) && minute < w.end);
  });
}

/** Checks one release against the policy. `signers` are the public keys (hex) whose signatures on it verified. */
export function checkRelease(p: Policy, rel: Release, cosignedBy: (keys: ReadonlyMap<string, Uint8Array>) => number): void {
  for (const [name, svc] of Object.entries(rel.services)) {
    if (!DIGEST_REF.test(svc.image)) throw new FerryError('FERRY_E_POLICY_DIGEST', `${rel.stack}/${name}: ${svc.image}`);
    const reg = registryOf(svc.image);
    if (p.registries && !p.registries.includes(reg)) {
      throw new FerryError('FERRY_E_POLICY_REGISTRY', `${rel.stack}/${name}: registry ${reg} (allowed: ${p.registries.join(', ') || 'none'})`);
    }
  }
  // what the containers would be: refused before anything is pulled or created
  const refused = judge(p.containers, rel).filter((v) => !v.ok);
  if (refused.length) {
    const more = refused.length > 1 ? ` (and ${refused.length - 1} more: \`ferry-agent policy check --release FILE\` lists them)` : '';
    throw new FerryError('FERRY_E_POLICY_CONTAINER', `${refusal(refused[0]!.need, p.containers, p.source)}${more}`);
  }
  if (p.cosigners) {
    const have = cosignedBy(p.cosigners.keys);
    if (have < p.cosigners.threshold) {
      throw new FerryError('FERRY_E_POLICY_COSIGN', `${rel.stack}@${rel.version}: ${have} of ${p.cosigners.threshold} institution co-signatures`);
    }
  }
}

// What `ferry-agent status` shows the institution about signed state: the
// trust root it holds, the releases it accepted and who signed them, its
// trusted time, its local policy, its alarms, and recent refusals. Read from
// local files only.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { payloadBytes } from '../shared/dsse.js';
import { RECONCILE_FILE } from './reconcile/reconciler.js';
import { parseRelease } from '../shared/release.js';
import { rootFingerprint } from '../shared/trust.js';
import type { Policy } from './policy.js';
import { containerNeeds, type ContainerLimits } from './policy-containers.js';
import { describeLimits } from './policy-review.js';
import { loadTrust, readAlarms, readRefusals, type Alarm, type Refusal } from './trust-store.js';
import { currentRoot } from './verify.js';
import { validSigners } from '../shared/dsse.js';
import type { ImageRelay, OperatorHold } from '../shared/protocol.js';
import { holdText } from '../shared/operation.js';
import { readRelayImages } from './relay/relay.js';
import { trustedKeys } from '../shared/trust.js';

export interface TrustStatus {
  trustRoot: { version: number; fingerprint: string; pinned: boolean } | null;
  desired: {
    seq: number;
    acceptedAt: string;
    releases: {
      stack: string;
      version: string;
      services: Record<string, string>;
      signers: { keyid: string; name: string | null }[];
      /** What it asks of this host that the containers limits decide (bind mounts, ports, user, capabilities, ...). */
      needs: { service: string; key: string; what: string }[];
    }[];
  } | null;
  policy: {
    source: string | null;
    registries: readonly string[] | null;
    cosignThreshold: number | null;
    allow: readonly string[] | null;
    deny: readonly string[];
    windows: number;
    /** What a container may be here (the containers section, or its defaults). */
    containers: ContainerLimits;
  };
  /** The newest issuedAt accepted (trusted time never goes below it), ISO; null before any directive. */
  trustedTime: string | null;
  refusals: Refusal[];
  /** Every security alarm on record, each saying whether the institution acknowledged it. */
  alarms: Alarm[];
  /** What the reconciler last recorded per stack: applying, applied, rolled back (and what runs). */
  applied: { stack: string; version: string; state: string; code?: string; runningVersion: string | null; since: string }[];
  /** Images the relay placed (or is placing) in the bank's registry. */
  relay: ImageRelay[];
  /** Services an operator stopped or scaled (remote operations), kept so until started, scaled back or a new release. */
  holds: OperatorHold[];
}

function readApplied(stateDir: string): TrustStatus['applied'] {
  try {
    const p = JSON.parse(readFileSync(join(stateDir, RECONCILE_FILE), 'utf8')) as { statuses: Record<string, TrustStatus['applied'][number]> };
    return Object.values(p.statuses);
  } catch {
    return [];
  }
}

function readHolds(stateDir: string): OperatorHold[] {
  try {
    const p = JSON.parse(readFileSync(join(stateDir, RECONCILE_FILE), 'utf8')) as { holds?: Record<string, OperatorHold & { digest?: string }> };
    return Object.values(p.holds ?? {}).map(({ digest: _d, ...h }) => h);
  } catch {
    return [];
  }
}

export function describeTrust(stateDir: string, policy: Policy): TrustStatus {
  const p = loadTrust(stateDir);
  const root = currentRoot(p.state);
  const first = p.state.roots[0];
  return {
    trustRoot: root && first ? { version: root.version, fingerprint: rootFingerprint(first), pinned: p.state.pinnedRootFingerprint !== null } : null,
    desired: p.desired
      ? {
          seq: p.desired.seq,
          acceptedAt: p.desired.acceptedAt,
          releases: p.desired.releases.map((env) => {
            const rel = parseRelease(payloadBytes(env));
            const signers = root ? validSigners(env, trustedKeys(root, 'release').keys) : [];
            return {
              stack: rel.stack,
              version: rel.version,
              services: Object.fromEntries(Object.entries(rel.services).map(([n, s]) => [n, s.image])),
              signers: signers.map((id) => ({ keyid: id, name: root?.keys[id]?.name ?? null })),
              needs: containerNeeds(rel).map((n) => ({ service: n.service, key: n.key, what: n.what })),
            };
          }),
        }
      : null,
    policy: {
      source: policy.source,
      registries: policy.registries,
      cosignThreshold: policy.cosigners?.threshold ?? null,
      allow: policy.allow,
      deny: policy.deny,
      windows: policy.windows.length,
      containers: policy.containers,
    },
    trustedTime: p.state.maxIssuedAt > 0 ? new Date(p.state.maxIssuedAt).toISOString() : null,
    refusals: readRefusals(stateDir, 5),
    alarms: readAlarms(stateDir),
    applied: readApplied(stateDir),
    relay: readRelayImages(stateDir),
    holds: readHolds(stateDir),
  };
}

export function formatTrust(t: TrustStatus): string {
  const out: string[] = [];
  for (const a of t.alarms.filter((x) => !x.acknowledged)) out.push(`ALARM        ${a.at} ${a.code}${a.kind ? ` (${a.kind})` : ''}: ${a.message}`);
  const acked = t.alarms.filter((x) => x.acknowledged).length;
  if (acked) out.push(`alarms       ${acked} acknowledged (kept in refusals.jsonl)`);
  out.push(`trust root   ${t.trustRoot ? `v${t.trustRoot.version}, v1 fingerprint ${t.trustRoot.fingerprint}${t.trustRoot.pinned ? ' (pinned)' : ''}` : 'none yet'}`);
  if (!t.desired) out.push('releases     none accepted');
  else {
    out.push(`directive    seq ${t.desired.seq}, accepted ${t.desired.acceptedAt}`);
    for (const r of t.desired.releases) {
      out.push(`release      ${r.stack}@${r.version}, signed by ${r.signers.map((s) => s.name ?? s.keyid.slice(0, 12)).join(', ') || '-'}`);
      for (const [svc, img] of Object.entries(r.services)) {
        out.push(`  ${svc.padEnd(12)} ${img}`);
        const needs = r.needs.filter((n) => n.service === svc);
        if (needs.length) out.push(`  ${''.padEnd(12)} needs: ${needs.map((n) => n.what).join('; ')}`);
      }
    }
  }
  if (t.trustedTime) out.push(`trusted time ${t.trustedTime} (the newest directive accepted; expiry is judged by it or this host's clock, whichever is later)`);
  const p = t.policy;
  out.push(`policy       ${p.source ?? 'none (default file absent)'}`);
  if (p.source) {
    out.push(`  registries ${p.registries ? p.registries.join(', ') || '(none allowed)' : 'any'}`);
    out.push(`  cosigners  ${p.cosignThreshold ? `${p.cosignThreshold} required` : 'not required'}`);
    out.push(`  operations ${p.allow ? `allow ${p.allow.join(', ')}` : 'allow all'}${p.deny.length ? `, deny ${p.deny.join(', ')}` : ''}`);
    out.push(`  windows    ${p.windows || 'always'}`);
  }
  // what a container may be applies with or without a policy file (the defaults are strict)
  describeLimits(p.containers).forEach(([, text], i) => out.push(`${i ? '            ' : '  containers'} ${text}`));
  for (const a of t.applied) out.push(`running      ${a.stack}@${a.runningVersion ?? '-'} (${a.version} ${a.state}${a.code ? `: ${a.code}` : ''}, since ${a.since})`);
  for (const h of t.holds) out.push(`held         ${holdText(h)}`);
  for (const i of t.relay) out.push(formatImage(i));
  for (const r of t.refusals) out.push(`refused      ${r.at} ${r.kind ?? (r.seq === null ? 'roots' : 'directive')}${r.seq !== null ? ` seq ${r.seq}` : ''} ${r.code}`);
  return out.join('\n') + '\n';
}

const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;

/** One image of the relay: where it goes, how far, and per registry when one is behind. */
export function formatImage(i: ImageRelay): string {
  const short = (ref: string) => ref.replace(/@sha256:([0-9a-f]{12})[0-9a-f]{52}$/, '@sha256:$1…');
  const speed = i.state === 'copying' && i.bytesPerSecond ? `, ${mb(i.bytesPerSecond)}/s` : '';
  const regs = i.registries.filter((r) => r.state !== 'present').map((r) => `${r.registry} ${r.state}${r.code ? ` ${r.code}` : ''}`);
  return `image        ${short(i.target)} ${i.state}${i.code ? ` ${i.code}` : ''} (${mb(i.bytesDone)} of ${mb(i.bytesTotal)}${speed})${regs.length ? `; ${regs.join(', ')}` : ''}`;
}

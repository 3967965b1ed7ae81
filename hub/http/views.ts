// How the API (and the console, from the same views) shows hub objects.
// Views never widen what the caller may see: a view of something shared by
// several tenants is built from the part the caller's tenants own.
import { decodePublicKey, fingerprint } from '../../shared/keys.js';
import type { DirectiveRecord } from '../directives.js';
import type { Gateway } from '../gateway/gateway.js';
import type { ReleaseRecord, Releases } from '../releases.js';
import { failures, inWave } from '../rollouts/machine.js';
import type { AgentRecord } from '../store/fleet.js';
import type { RolloutRecord, TargetRecord } from '../store/rollouts.js';
import type { Store } from '../store/store.js';
import type { TrustRoots } from '../trust.js';

export function iso(ms: number | null | undefined): string | null {
  return ms === null || ms === undefined ? null : new Date(ms).toISOString();
}

/** The agent as the API shows it: stored record plus live connection state. */
export async function agentView(a: AgentRecord, gateway: Gateway, store: Store) {
  const rec = gateway.presence.overlay(a);
  const s = gateway.session(a.id);
  const connected = gateway.presence.isConnected(rec);
  const last = await store.directives.latest(a.id);
  const accepted = last?.status === 'accepted' ? last : await store.directives.accepted(a.id);
  return {
    id: rec.id,
    tenant: rec.tenant,
    name: rec.name,
    status: rec.revokedAt !== null ? 'revoked' : connected ? 'connected' : 'disconnected',
    labels: rec.labels,
    fingerprint: fingerprint(decodePublicKey(rec.publicKey)),
    publicKey: rec.publicKey,
    enrolledAt: iso(rec.enrolledAt),
    revokedAt: iso(rec.revokedAt),
    lastSeenAt: iso(s ? Date.now() : rec.lastSeenAt),
    connectedAt: iso(s?.connectedAt ?? null),
    remote: s?.remote ?? null,
    agentVersion: rec.agentVersion,
    facts: rec.facts,
    desired: accepted ? { seq: accepted.seq, releases: accepted.releases, acceptedAt: iso(accepted.ackedAt) } : null,
    running: rec.status ? { ...(rec.status as object), reportedAt: iso(rec.statusAt) } : null,
    /** Security alarms the agent holds and its institution has not acknowledged (from its latest status). */
    alarms: (rec.status as { alarms?: unknown[] } | null)?.alarms ?? [],
    lastDirective: last ? { seq: last.seq, status: last.status, code: last.code, message: last.message, issuedAt: iso(last.issuedAt) } : null,
    /** The agent's versions and its latest self-upgrade, as it last reported them (protocol 'upgrade'). */
    versions: await versionsView(a.id, store),
  };
}

async function versionsView(agentId: string, store: Store) {
  const v = await store.bundles.versionOf(agentId);
  if (!v) return null;
  const s = v.status;
  return { installed: s.installed, running: s.running, previous: s.previous, pending: s.pending, upgrade: s.version ? { version: s.version, state: s.state, code: s.code ?? null, message: s.message ?? null, since: s.since } : null, reportedAt: iso(v.at) };
}

export function directiveView(d: DirectiveRecord) {
  return {
    agent: d.agentId,
    seq: d.seq,
    digest: d.digest,
    releases: d.releases,
    status: d.status,
    code: d.code,
    message: d.message,
    issuedAt: iso(d.issuedAt),
    expiresAt: iso(d.expiresAt),
    ackedAt: iso(d.ackedAt),
  };
}

/**
 * A release with its signers and, per tenant the caller may see (`tenants`,
 * null: all), whether that tenant's root's threshold is met.
 */
export async function releaseView(r: ReleaseRecord, ctx: { store: Store; trust: TrustRoots; releases: Releases }, tenants: readonly string[] | null, full = false) {
  const names = new Map<string, string>();
  const perTenant: { tenant: string; met: boolean; have: number; threshold: number }[] = [];
  for (const t of await ctx.store.fleet.listTenants(tenants)) {
    const root = await ctx.trust.active(t.name);
    if (!root) continue;
    for (const [id, k] of Object.entries(root.keys)) if (k.name) names.set(id, k.name);
    const th = ctx.releases.thresholdFor(r, root);
    perTenant.push({ tenant: t.name, met: th.met, have: th.have, threshold: th.threshold });
  }
  return {
    stack: r.stack,
    version: r.version,
    digest: r.digest,
    floor: r.release.floor ?? null,
    createdAt: iso(r.createdAt),
    services: Object.fromEntries(Object.entries(r.release.services).map(([n, s]) => [n, s.image])),
    signers: r.signers.map((s) => ({ keyid: s.keyid, name: names.get(s.keyid) ?? null, signedAt: iso(s.at) })),
    tenants: perTenant,
    ...(full ? { release: r.release, envelope: r.envelope } : {}),
  };
}

/**
 * A rollout's summary. With `tenants` (a bank's people), it is built from
 * their targets only and the selector is not shown (it may name others).
 */
export function rolloutSummary(r: RolloutRecord, all: TargetRecord[], tenants: readonly string[] | null) {
  const targets = tenants ? all.filter((t) => tenants.includes(t.tenant)) : all;
  const count = (s: string) => targets.filter((t) => t.state === s).length;
  return {
    id: r.id,
    stack: r.stack,
    version: r.version,
    selector: tenants ? null : r.selector,
    waveSpec: r.waveSpec,
    state: r.state,
    reason: r.reason,
    since: iso(r.since),
    wave: r.wave + 1,
    waves: r.waves.length,
    agents: targets.length,
    done: count('done'),
    failed: failures(targets),
    skipped: count('skipped'),
    reverted: count('reverted'),
    bakeMs: r.bakeMs,
    maxFailures: r.maxFailures,
    onFailure: r.onFailure,
    agentTimeoutMs: r.agentTimeoutMs,
    onTimeout: r.onTimeout,
    createdAt: iso(r.createdAt),
  };
}

export function rolloutView(r: RolloutRecord, all: TargetRecord[], tenants: readonly string[] | null) {
  const targets = tenants ? all.filter((t) => tenants.includes(t.tenant)) : all;
  let from = 0;
  const waves = r.waves.map((reach, i) => {
    const mine = targets.filter((t) => t.position >= from && t.position < reach);
    from = reach;
    const started = i <= r.wave;
    const settled = mine.every((t) => ['done', 'skipped', 'failed', 'reverted', 'revert-failed'].includes(t.state));
    return {
      wave: i + 1,
      ...(tenants ? {} : { reach }),
      agents: mine.length,
      state: !started ? 'pending' : settled ? 'complete' : 'in-progress',
      done: mine.filter((t) => t.state === 'done').length,
      failed: mine.filter((t) => t.state === 'failed').length,
    };
  });
  return {
    ...rolloutSummary(r, all, tenants),
    waveList: waves,
    targets: targets.map((t) => ({
      agent: t.agentId,
      tenant: t.tenant,
      position: t.position,
      wave: r.waves.findIndex((reach) => t.position < reach) + 1,
      started: inWave(r, t),
      state: t.state,
      seq: t.seq,
      previous: t.previous,
      code: t.code,
      startedAt: iso(t.startedAt),
      appliedAt: iso(t.appliedAt),
      retryAt: iso(t.retryAt),
      updatedAt: iso(t.updatedAt),
    })),
  };
}

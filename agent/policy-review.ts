// `ferry-agent policy check --release FILE` and the policy part of
// `ferry-agent status`: what the institution's policy allows, and what a
// given release would need of this host, need by need, so a bank can review
// a release before it arrives. Pure: the policy, the release (and, when there
// is one, its envelope and the agent's trust root) in; a report out.
import { PAYLOAD_TYPES, decodeEnvelope, payloadBytes, validSigners, verifyEnvelope, type Envelope } from '../shared/dsse.js';
import { FerryError, asFerryError, type ErrorCode } from '../shared/errors.js';
import { DIGEST_REF, parseRelease, registryOf, type Release } from '../shared/release.js';
import { trustedKeys, type Root } from '../shared/trust.js';
import type { Policy } from './policy.js';
import { judge, refusal, type ContainerLimits, type LimitKey } from './policy-containers.js';

export interface ReviewLine {
  ok: boolean;
  service: string | null;
  what: string;
  /** Why not, naming the policy line. */
  why?: string;
  /** The code the agent would refuse a directive with, for a need that is not met. */
  code?: ErrorCode;
}

export interface Review {
  stack: string;
  version: string;
  signatures: string;
  needs: ReviewLine[];
  allowed: boolean;
}

/** The release a file holds: `ferry release show --json` output, a DSSE envelope, or a bare release document. */
export function releaseFromFile(text: string, source: string): { release: Release; envelope: Envelope | null } {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new FerryError('FERRY_E_VALIDATION', `${source}: not JSON (${(err as Error).message})`);
  }
  const o = (doc ?? {}) as Record<string, unknown>;
  const env = o.envelope ?? (typeof o.payloadType === 'string' ? o : null);
  if (env) {
    const e = decodeEnvelope(env);
    if (e.payloadType !== PAYLOAD_TYPES.release) throw new FerryError('FERRY_E_PAYLOAD_TYPE', `${source}: ${e.payloadType} is not a release`);
    return { release: parseRelease(payloadBytes(e)), envelope: e };
  }
  return { release: parseRelease(Buffer.from(JSON.stringify(o._type === 'release' ? o : o.release ?? o))), envelope: null };
}

/** Reviews a release against the policy (and its signatures against the root, when both are at hand). */
export function reviewRelease(p: Policy, rel: Release, envelope: Envelope | null, root: Root | null): Review {
  const needs: ReviewLine[] = [];
  for (const [service, s] of Object.entries(rel.services).sort(([a], [b]) => a.localeCompare(b))) {
    if (!DIGEST_REF.test(s.image)) needs.push({ ok: false, service, what: `image ${s.image}`, why: 'not pinned by digest', code: 'FERRY_E_POLICY_DIGEST' });
    else {
      const reg = registryOf(s.image);
      const ok = !p.registries || p.registries.includes(reg);
      needs.push({ ok, service, what: `image from registry ${reg}`, ...(ok ? {} : { why: `registries allows ${p.registries!.join(', ') || 'none'}`, code: 'FERRY_E_POLICY_REGISTRY' as const }) });
    }
  }
  for (const v of judge(p.containers, rel)) needs.push({ ok: v.ok, service: v.need.service, what: `${v.need.key} ${v.need.what}`, ...(v.ok ? {} : { why: refusal(v.need, p.containers, p.source).split('; ').slice(1).join('; '), code: 'FERRY_E_POLICY_CONTAINER' as const }) });
  if (p.cosigners) {
    const have = envelope ? validSigners(envelope, p.cosigners.keys).length : 0;
    const ok = have >= p.cosigners.threshold;
    needs.push({ ok, service: null, what: `${have} of ${p.cosigners.threshold} institution co-signatures`, ...(ok ? {} : { why: envelope ? 'collect them: `ferry release sign STACK@VERSION --key FILE`' : 'give the signed envelope (`ferry release show STACK@VERSION --json`) to count them', code: 'FERRY_E_POLICY_COSIGN' as const }) });
  }
  let signatures = 'not checked: give --state-dir of an enrolled agent to verify them against its trust root';
  if (!envelope) signatures = 'not checked: the file holds no signed envelope';
  else if (root) {
    try {
      const v = verifyEnvelope(envelope, PAYLOAD_TYPES.release, trustedKeys(root, 'release'), 'release');
      signatures = `${v.signers.length} release signature(s) verify against trust root v${root.version} (${v.signers.map((k) => root.keys[k]?.name ?? k.slice(0, 12)).join(', ')})`;
    } catch (err) {
      const e = asFerryError(err);
      signatures = `${e.code}: ${e.message}`;
      needs.push({ ok: false, service: null, what: 'release signatures', why: e.message, code: e.code });
    }
  }
  return { stack: rel.stack, version: rel.version, signatures, needs, allowed: needs.every((n) => n.ok) };
}

/** What the `containers` limits allow, one line per limit, with the line that sets it. */
export function describeLimits(l: ContainerLimits): [LimitKey, string][] {
  const at = (k: LimitKey) => (l.lines[k] ? ` (${l.lines[k]})` : ' (default)');
  const list = (xs: readonly string[], none: string) => (xs.length ? xs.join(', ') : none);
  return [
    ['bindMounts', `bind mounts ${list(l.bindMounts.map((d) => (d === '/' ? '/ (anything but the Docker socket)' : `${d}${d.endsWith('.sock') ? '' : '/…'}`)), 'none')}${at('bindMounts')}`],
    ['ports', `host ports ${l.ports ? list(l.ports.map((r) => (r.from === r.to ? String(r.from) : `${r.from}-${r.to}`)), 'none') : 'any'}${at('ports')}`],
    ['hostIps', `host addresses ${l.hostIps ? list(l.hostIps, 'none') : 'any'}${at('hostIps')}`],
    ['root', `user 0 ${l.root ? 'allowed' : 'refused (services must set a non-root user)'}${at('root')}`],
    ['capabilities', `added capabilities ${list(l.capabilities, 'none')}${at('capabilities')}`],
    ['privileged', `privileged ${l.privileged ? 'allowed' : 'refused'}${at('privileged')}`],
    ['networkModes', `network modes ${list(l.networkModes, 'none')} (besides the stack's own networks)${at('networkModes')}`],
    ['hostNamespaces', `host namespaces ${list(l.hostNamespaces, 'none')}${at('hostNamespaces')}`],
    ['devices', `devices ${list(l.devices, 'none')}${at('devices')}`],
    ['sysctls', `sysctls ${list(l.sysctls, 'none')}${at('sysctls')}`],
  ];
}

export function formatReview(r: Review, p: Policy): string {
  const out = [`release      ${r.stack}@${r.version}`, `signatures   ${r.signatures}`, `policy       ${p.source ?? 'none (the defaults below)'}`];
  describeLimits(p.containers).forEach(([, text], i) => out.push(`${i ? '            ' : 'allows      '} ${text}`));
  out.push('needs');
  for (const n of r.needs) out.push(`  ${n.ok ? 'ok ' : 'NO '} ${(n.service ?? '-').padEnd(12)} ${n.what}${n.why ? `\n       ${''.padEnd(12)} ${n.why}` : ''}`);
  const bad = r.needs.filter((n) => !n.ok).length;
  out.push(`verdict      ${r.allowed ? 'allowed: this agent would accept it' : `refused: ${bad} of ${r.needs.length} needs exceed what this host allows`}`);
  return out.join('\n') + '\n';
}

// agent/verify.ts verifyAgentBundle: what an agent accepts as an agent
// version to upgrade to, before it downloads anything.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AGENT_STACK, type AgentBundle } from '../../shared/agent-bundle.js';
import { payloadDigest, type Envelope } from '../../shared/dsse.js';
import { FerryError } from '../../shared/errors.js';
import type { KeyPair } from '../../shared/keys.js';
import { NO_POLICY } from '../../agent/policy.js';
import { verifyAgentBundle, type Facts } from '../../agent/verify.js';
import { rootDoc, seededKey, signed } from '../helpers/signing.js';

const [r1, m1, m2, m3, hub] = ['root-1', 'rm-1', 'rm-2', 'rm-3', 'hub'].map(seededKey) as [KeyPair, KeyPair, KeyPair, KeyPair, KeyPair];
const root = rootDoc({ root: [r1], release: [m1, m2, m3], releaseThreshold: 2, hub: [hub] });
const facts: Facts = { agentId: 'agt_a', tenant: 'bank-a', now: 1_800_000_000_000, policy: NO_POLICY };

function statement(over: Partial<AgentBundle> = {}, signers = [m1, m2]): Envelope {
  const s: AgentBundle = { _type: 'agent-bundle', version: '0.3.0', tenants: ['bank-a'], archive: { sha256: `sha256:${'a'.repeat(64)}`, size: 1000 }, manifest: `sha256:${'b'.repeat(64)}`, stateFormat: 1, minStateFormat: 1, createdAt: 1, ...over };
  return signed('agentBundle', s, signers);
}

const check = (env: Envelope, floors: Record<string, string> = {}, version = '0.3.0') => verifyAgentBundle(env, { version, digest: payloadDigest(env) }, root, floors, facts);

function refused(code: string, fn: () => unknown): void {
  assert.throws(fn, (err: unknown) => err instanceof FerryError && err.code === code, `expected ${code}`);
}

test('a statement signed 2 of 3 for this tenant is accepted, and its floor raises the agent\'s', () => {
  const floors: Record<string, string> = { [AGENT_STACK]: '0.2.0' };
  const a = check(statement({ floor: '0.2.5' }), floors);
  assert.equal(a.statement.version, '0.3.0');
  assert.equal(a.signers.length, 2);
  assert.equal(floors[AGENT_STACK], '0.2.5');
});

test('refused: below threshold, for another tenant, below the floor, another statement than the directive names', () => {
  refused('FERRY_E_SIG_THRESHOLD', () => check(statement({}, [m1])));
  refused('FERRY_E_SIG_THRESHOLD', () => check(statement({}, [m1, r1])), ); // a root key is not a release key
  refused('FERRY_E_BUNDLE_TENANT', () => check(statement({ tenants: ['bank-b'] })));
  refused('FERRY_E_BUNDLE_FLOOR', () => check(statement({ version: '0.1.9' }), { [AGENT_STACK]: '0.2.0' }, '0.1.9'));
  const env = statement();
  refused('FERRY_E_DIRECTIVE_RELEASE', () => verifyAgentBundle(env, { version: '0.3.0', digest: payloadDigest(statement({ createdAt: 2 })) }, root, {}, facts));
  refused('FERRY_E_DIRECTIVE_RELEASE', () => check(env, {}, '0.3.1'));
  refused('FERRY_E_DIRECTIVE_RELEASE', () => verifyAgentBundle(undefined, { version: '0.3.0', digest: payloadDigest(env) }, root, {}, facts));
});

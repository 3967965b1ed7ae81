// One operation on the agents a selector picks (`ferry service restart
// payments/api --to env=prod`), under the rules rollouts follow: the selector
// language and the waves of hub/rollouts, and, when more than one agent is
// touched, a plan (agents and waves) whose hash the caller must send back to
// confirm it. Waves run one after the other, the agents of a wave at once;
// a wave with more failures than allowed stops the rest (reported skipped).
import { createHash, randomBytes } from 'node:crypto';
import { FerryError } from '../../shared/errors.js';
import { canonicalJson } from '../../shared/release.js';
import { matches, parseSelector } from '../rollouts/selector.js';
import { parseWaves, planWaves } from '../rollouts/waves.js';
import type { OperationRecord } from '../store/operations.js';
import type { Store } from '../store/store.js';
import type { OperationInput } from './issue.js';

export interface BatchInput extends OperationInput {
  selector: string;
  waves: string;
  maxFailures: number;
}

export interface BatchPlan {
  agents: { id: string; tenant: string; name: string }[];
  /** Cumulative agents reached after each wave. */
  waves: number[];
  /** What the caller confirms: sha256 of the operation, the agents and the waves. */
  hash: string;
}

/** Agents the selector picks among those the caller may operate (`scope`, null: all), and how they are waved. */
export async function planBatch(store: Store, input: BatchInput, scope: readonly string[] | null): Promise<BatchPlan> {
  const sel = parseSelector(input.selector);
  const specs = parseWaves(input.waves);
  const agents = (await store.fleet.listSelectable(scope))
    .filter((a) => a.revokedAt === null && matches(sel, a))
    .sort((a, b) => a.tenant.localeCompare(b.tenant) || a.name.localeCompare(b.name) || a.id.localeCompare(b.id))
    .map((a) => ({ id: a.id, tenant: a.tenant, name: a.name }));
  if (!agents.length) throw new FerryError('FERRY_E_SELECTOR_EMPTY', sel.text);
  const waves = planWaves(specs, agents.length);
  const what = { kind: input.kind, stack: input.stack ?? null, service: input.service ?? null, args: input.args, agents: agents.map((a) => a.id), waves, maxFailures: input.maxFailures };
  return { agents, waves, hash: 'sha256:' + createHash('sha256').update(canonicalJson(what)).digest('hex') };
}

export interface BatchOutcome {
  batch: string;
  state: 'done' | 'stopped';
  waves: { agents: { agent: string; operation: OperationRecord | null; skipped?: string }[] }[];
}

/**
 * Runs the plan wave by wave. `one` issues (audited) and runs the operation
 * on one agent and returns its record; an agent that cannot be reached
 * counts as a failure.
 */
export async function runBatch(plan: BatchPlan, maxFailures: number, one: (agentId: string, batch: string) => Promise<OperationRecord>): Promise<BatchOutcome> {
  const batch = `opb_${randomBytes(8).toString('hex')}`;
  const out: BatchOutcome = { batch, state: 'done', waves: [] };
  let failures = 0;
  let from = 0;
  for (const upTo of plan.waves) {
    const agents = plan.agents.slice(from, upTo);
    from = upTo;
    if (out.state === 'stopped') {
      out.waves.push({ agents: agents.map((a) => ({ agent: a.id, operation: null, skipped: 'an earlier wave failed' })) });
      continue;
    }
    const results = await Promise.all(
      agents.map(async (a) => {
        try {
          return { agent: a.id, operation: await one(a.id, batch) };
        } catch (err) {
          return { agent: a.id, operation: null, skipped: `${(err as FerryError).code ?? 'FERRY_E_INTERNAL'}: ${(err as Error).message}` };
        }
      }),
    );
    failures += results.filter((r) => r.operation?.status !== 'ok').length;
    out.waves.push({ agents: results });
    if (failures > maxFailures) out.state = 'stopped';
  }
  return out;
}

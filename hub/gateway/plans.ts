// Asking an agent what it would do now (a dry run on the agent itself), from
// whichever replica the question reaches: the replica holding the agent's
// socket asks it, and the answer comes back through the database (answers
// can be larger than a wake-up may carry).
import { randomUUID } from 'node:crypto';
import { FerryError, isErrorCode } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import type { PlanMessage } from '../../shared/protocol.js';
import type { Cluster } from '../cluster/cluster.js';
import type { Store } from '../store/store.js';
import type { Gateway } from './gateway.js';

export const PLAN_TIMEOUT_MS = 15_000;

export class Plans {
  /** Questions this replica relays for another one: id -> agent. */
  private readonly relaying = new Map<string, string>();

  constructor(
    private readonly gateway: Gateway,
    private readonly store: Store,
    private readonly cluster: Cluster,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    cluster.on('plan', ({ id, agentId }) => {
      if (!gateway.session(agentId)) return;
      this.relaying.set(id, agentId);
      setTimeout(() => this.relaying.delete(id), PLAN_TIMEOUT_MS).unref();
      gateway.send(agentId, { type: 'plan-request', id });
    });
    gateway.on('plan', (agentId: string, msg: PlanMessage) => {
      if (this.relaying.get(msg.id) !== agentId) return;
      this.relaying.delete(msg.id);
      void this.store
        .detached(() => this.store.answers.put(msg.id, agentId, JSON.stringify(msg), this.now()))
        .then(() => this.cluster.publish('answer', { id: msg.id }))
        .catch((err: unknown) => this.log.error({ agentId, err }, 'could not relay a plan'));
    });
  }

  /** The agent's plan, or FERRY_E_UNAVAILABLE when it is not connected or does not answer in time. */
  async ask(agentId: string, connectedElsewhere: boolean): Promise<{ steps: PlanMessage['steps']; waiting: string[] }> {
    const id = randomUUID();
    const local = this.gateway.session(agentId) !== undefined;
    if (!local && !connectedElsewhere) throw new FerryError('FERRY_E_UNAVAILABLE', `agent ${agentId} is not connected`);
    const answer = new Promise<PlanMessage | null>((resolve) => {
      let done = false;
      const finish = (m: PlanMessage | null) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.gateway.off('plan', onPlan);
        this.cluster.off('answer', onAnswer);
        resolve(m);
      };
      const onPlan = (a: string, msg: PlanMessage) => {
        if (a === agentId && msg.id === id) finish(msg);
      };
      const onAnswer = ({ id: got }: { id: string }) => {
        if (got !== id) return;
        void this.store.answers.take(id).then(
          (r) => (r ? finish(JSON.parse(r.body) as PlanMessage) : undefined),
          () => undefined,
        );
      };
      const timer = setTimeout(() => finish(null), PLAN_TIMEOUT_MS);
      this.gateway.on('plan', onPlan);
      this.cluster.on('answer', onAnswer);
    });
    if (local) this.gateway.send(agentId, { type: 'plan-request', id });
    else this.cluster.publish('plan', { id, agentId });
    const plan = await answer;
    if (!plan) throw new FerryError('FERRY_E_UNAVAILABLE', `agent ${agentId} did not answer within ${PLAN_TIMEOUT_MS / 1000} s`);
    if (plan.error) throw new FerryError(isErrorCode(plan.error.code) ? plan.error.code : 'FERRY_E_INTERNAL', plan.error.message);
    return { steps: plan.steps, waiting: plan.waiting };
  }
}

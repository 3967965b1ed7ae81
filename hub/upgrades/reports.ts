// What agents say about their own version (protocol 'upgrade'): stored per
// agent (`ferry agent ls`, and the facts of agent-version rollouts), the
// outcome of each upgrade in the tenant's audit log — committed, or reverted
// with the reason the launcher recorded — and, when a new version reports
// that it is on trial, its current directive sent again, so the new code
// proves it can verify it before it is committed.
import type { Logger } from '../../shared/logger.js';
import type { UpgradeMessage } from '../../shared/protocol.js';
import type { AuditLog } from '../audit/log.js';
import type { Directives } from '../directives.js';
import type { Gateway } from '../gateway/gateway.js';
import type { Rollouts } from '../rollouts/scheduler.js';
import type { Store } from '../store/store.js';

export class UpgradeReports {
  constructor(
    private readonly store: Store,
    private readonly gateway: Gateway,
    private readonly directives: Directives,
    private readonly audit: AuditLog,
    private readonly rollouts: Rollouts,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    gateway.on('upgrade', (agentId: string, m: UpgradeMessage) => this.inOrder(agentId, m));
  }

  /** Per agent, one report after the other: an 'installing' stored after the 'committed' that followed it would stick. */
  private readonly queues = new Map<string, Promise<void>>();

  private inOrder(agentId: string, m: UpgradeMessage): void {
    const next = (this.queues.get(agentId) ?? Promise.resolve()).then(() => this.record(agentId, m));
    this.queues.set(agentId, next);
    void next.finally(() => {
      if (this.queues.get(agentId) === next) this.queues.delete(agentId);
    });
  }

  private async record(agentId: string, m: UpgradeMessage): Promise<void> {
    const at = this.now();
    try {
      const tenant = this.gateway.session(agentId)?.tenant ?? (await this.store.fleet.agentTenant(agentId)).tenant;
      await this.store.detached(() =>
        this.store.tx(async () => {
          const prev = await this.store.bundles.recordVersion(agentId, m, at);
          const changed = !prev || prev.state !== m.state || prev.version !== m.version || prev.installed !== m.installed;
          if (!changed || !m.version || !['committed', 'reverted', 'failed'].includes(m.state)) return;
          await this.audit.append(
            {
              log: tenant,
              actor: { kind: 'agent', id: agentId },
              surface: 'agent',
              action: `agent.upgrade.${m.state}`,
              target: { type: 'agent', id: agentId },
              agents: [agentId],
              outcome: m.state === 'committed' ? 'ok' : 'failed',
              details: { version: m.version, installed: m.installed, previous: m.previous, code: m.code ?? null, message: m.message?.slice(0, 2000) ?? null },
            },
            at,
          );
        }),
      );
      const log = this.log.child({ agentId, tenant });
      if (m.state === 'reverted') log.warn({ version: m.version, installed: m.installed, code: m.code, message: m.message }, 'agent reverted an upgrade by itself');
      else if (m.state === 'committed' || m.state === 'failed') log.info({ version: m.version, installed: m.installed, state: m.state, code: m.code }, 'agent upgrade');
      if (m.state === 'trial') await this.resend(agentId);
      this.rollouts.kick();
    } catch (err) {
      this.log.error({ agentId, err }, 'could not record an agent version report');
    }
  }

  /** The directive the agent last accepted, again (it acknowledges it as a duplicate). */
  private async resend(agentId: string): Promise<void> {
    const d = (await this.directives.latest(agentId))?.status === 'pending' ? null : await this.directives.accepted(agentId);
    if (!d) return; // a pending one goes out on hello anyway
    this.gateway.send(agentId, await this.directives.message(d));
  }
}

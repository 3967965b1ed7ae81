// Gets signed state to agents: on (re)connect the tenant's root chain and any
// unacknowledged directive; after a deploy the new directive at once; after a
// root rotation the new chain. Acks are recorded and announced to waiters.
import { EventEmitter } from 'node:events';
import type { Logger } from '../shared/logger.js';
import type { Ack, StatusMessage } from '../shared/protocol.js';
import type { AuditLog } from './audit.js';
import type { DirectiveRecord, Directives } from './directives.js';
import type { Gateway } from './gateway.js';
import type { Store } from './store.js';
import type { TrustRoots } from './trust.js';

export class Delivery extends EventEmitter {
  constructor(
    private readonly gateway: Gateway,
    private readonly directives: Directives,
    private readonly trust: TrustRoots,
    private readonly store: Store,
    private readonly audit: AuditLog,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    super();
    this.setMaxListeners(0);
    gateway.on('hello', (agentId: string) => this.onHello(agentId));
    gateway.on('ack', (agentId: string, ack: Ack) => this.onAck(agentId, ack));
    gateway.on('status', (agentId: string, msg: StatusMessage) => this.onStatus(agentId, msg));
  }

  /** Stores what runs on the agent; release state changes and drift repairs go to the audit log. */
  private onStatus(agentId: string, msg: StatusMessage): void {
    const tenant = this.store.agent(agentId).tenant;
    this.store.db.transaction(() => {
      const prev = this.store.recordStatus(agentId, { releases: msg.releases, services: msg.services }, this.now()) as { releases?: StatusMessage['releases'] } | null;
      const before = new Map((prev?.releases ?? []).map((r) => [r.stack, `${r.version}:${r.state}`]));
      const append = (action: string, outcome: 'ok' | 'failed', details: Record<string, string | number | null>) =>
        this.audit.append({ log: tenant, actor: { kind: 'agent', id: agentId }, surface: 'agent', action, target: { type: 'agent', id: agentId }, agents: [agentId], outcome, details }, this.now());
      for (const r of msg.releases) {
        if (before.get(r.stack) === `${r.version}:${r.state}` || r.state === 'applying') continue;
        append(`release.${r.state}`, r.state === 'applied' ? 'ok' : 'failed', { stack: r.stack, version: r.version, code: r.code ?? null, message: r.message ?? null, running: r.runningVersion });
      }
      if (msg.drift?.length) append('drift.repaired', 'ok', { steps: msg.drift.join('; ').slice(0, 4000) });
    })();
    this.emit('status', agentId, msg);
  }

  private onHello(agentId: string): void {
    try {
      const tenant = this.store.agent(agentId).tenant;
      const roots = this.trust.chain(tenant);
      if (roots.length) this.gateway.send(agentId, { type: 'roots', roots });
      const msg = this.directives.pendingFor(agentId, this.now());
      if (msg) this.gateway.send(agentId, msg);
    } catch (err) {
      this.log.error({ agentId, err }, 'could not deliver state to agent');
    }
  }

  private onAck(agentId: string, ack: Ack): void {
    const tenant = this.store.agent(agentId).tenant;
    const rec = this.store.db.transaction(() => {
      const r = this.directives.recordAck(agentId, ack, this.now());
      if (r) {
        this.audit.append(
          {
            log: tenant,
            actor: { kind: 'agent', id: agentId },
            surface: 'agent',
            action: ack.accepted ? 'directive.accepted' : 'directive.refused',
            target: { type: 'agent', id: agentId },
            agents: [agentId],
            outcome: ack.accepted ? 'ok' : 'refused',
            details: { seq: ack.seq, digest: ack.digest, code: ack.code ?? null, message: ack.message?.slice(0, 500) ?? null },
          },
          this.now(),
        );
      }
      return r;
    })();
    const log = this.log.child({ agentId, seq: ack.seq });
    if (ack.accepted) log.info({ duplicate: ack.duplicate ?? false }, 'agent accepted directive');
    else log.warn({ code: ack.code, message: ack.message }, 'agent refused directive');
    if (rec) this.emit('ack', rec);
  }

  /** Issues a deploy directive (recorded by `record` in the same transaction) and sends it if the agent is connected. */
  deploy(agentId: string, stack: string, version: string, by: string | null, record: (d: DirectiveRecord, tenant: string) => void): { directive: DirectiveRecord; sent: boolean } {
    const tenant = this.store.agent(agentId).tenant;
    const directive = this.store.db.transaction(() => {
      const d = this.directives.deploy(agentId, stack, version, by, this.now());
      record(d, tenant);
      return d;
    })();
    const sent = this.gateway.send(agentId, this.directives.message(directive));
    this.log.info({ agentId, seq: directive.seq, stack, version, sent }, 'directive issued');
    return { directive, sent };
  }

  /** Pushes the tenant's root chain to its connected agents (after a rotation). */
  pushRoots(tenant: string): number {
    const roots = this.trust.chain(tenant);
    let n = 0;
    for (const a of this.store.listAgents({ tenant })) if (this.gateway.send(a.id, { type: 'roots', roots })) n++;
    return n;
  }

  /** Resolves when the agent acknowledges directive `seq`, or with its current record on timeout. */
  waitForAck(agentId: string, seq: number, timeoutMs: number): Promise<DirectiveRecord> {
    const now = this.directives.get(agentId, seq);
    if (now.status !== 'pending') return Promise.resolve(now);
    return new Promise((resolve) => {
      const onAck = (rec: DirectiveRecord) => {
        if (rec.agentId === agentId && rec.seq === seq) finish(rec);
      };
      const timer = setTimeout(() => finish(this.directives.get(agentId, seq)), timeoutMs);
      const finish = (rec: DirectiveRecord) => {
        clearTimeout(timer);
        this.off('ack', onAck);
        resolve(rec);
      };
      this.on('ack', onAck);
    });
  }
}

// One agent: what it runs, what it accepted and was refused, what the audit
// log says about it; its labels and revocation for those who manage it.
import { z } from 'zod';
import { agentOf } from '../../http/access.js';
import { can } from '../../http/principal.js';
import { agentView, iso, releaseView } from '../../http/views.js';
import type { ConsoleRoute } from '../console.js';
import { eventsUrl, forward, go, shellFor, type ConsoleContext } from '../context.js';
import { agentRow, auditRow, parseLabelEdit, runningOf } from '../models.js';
import { agentPage, labelsFragment, type AgentModel } from '../views/agent.js';

/** How far back the agent page looks in its tenant's log for entries about it. */
const AUDIT_WINDOW = 2000;
const LabelForm = z.strictObject({ set: z.string().max(2000).default(''), remove: z.string().max(2000).default('') });

export function agentPages(route: ConsoleRoute, c: ConsoleContext): void {
  const { store } = c;

  route({
    method: 'GET',
    url: '/agents/:id',
    access: { tenant: 'read', of: agentOf(store) },
    handler: async ({ params, principal }) => {
      const events = await eventsUrl(c, { kind: 'target,directive' });
      const v = await agentView(await store.fleet.agent(params.id!), c.gateway, store);
      const row = agentRow(v);
      const facts = (v.facts ?? {}) as { host?: Record<string, unknown>; engine?: Record<string, unknown> };
      const factList: AgentModel['facts'] = [];
      if (facts.host) {
        factList.push({ label: 'Host', value: `${String(facts.host.hostname)} (${[facts.host.platform, facts.host.release, facts.host.arch].join(' ')})` });
        factList.push({ label: 'CPUs, memory', value: `${String(facts.host.cpus)} CPUs, ${Math.round(Number(facts.host.memoryBytes) / 2 ** 30)} GiB` });
      }
      if (facts.engine && 'version' in facts.engine) factList.push({ label: 'Docker', value: `${String(facts.engine.version)} (API ${String(facts.engine.apiVersion)}, ${String(facts.engine.storageDriver)}), ${String(facts.engine.containersRunning)} of ${String(facts.engine.containers)} containers running` });
      else if (facts.engine && 'error' in facts.engine) factList.push({ label: 'Docker', value: `unreadable: ${JSON.stringify(facts.engine.error)}` });

      let accepted: AgentModel['accepted'] = null;
      if (v.desired) {
        const releases = [];
        for (const ref of v.desired.releases) {
          const r = await c.releases.find(ref.stack, ref.version);
          const rv = r ? await releaseView(r, c, [v.tenant]) : null;
          const th = rv?.tenants.find((t) => t.tenant === v.tenant);
          releases.push({ stack: ref.stack, version: ref.version, digest: ref.digest, signers: rv ? rv.signers.map((s) => s.name ?? s.keyid.slice(0, 12)) : [], threshold: th ? `${th.have} of ${th.threshold} needed` : null });
        }
        accepted = { seq: v.desired.seq, acceptedAt: v.desired.acceptedAt, releases };
      }

      const directives: AgentModel['directives'] = [];
      const last = await store.directives.latest(v.id);
      for (let seq = last?.seq ?? 0; seq >= 1 && directives.length < 10; seq--) {
        const d = await store.directives.find(v.id, seq);
        if (d) directives.push({ seq: d.seq, status: d.status, code: d.code, message: d.message, issuedAt: iso(d.issuedAt), releases: d.releases.map((r) => `${r.stack}@${r.version}`).join(', ') || 'nothing' });
      }

      const size = await c.audit.size(v.tenant);
      const from = Math.max(0, size - AUDIT_WINDOW);
      const about = (await c.audit.entries(v.tenant, { from, limit: AUDIT_WINDOW })).filter((e) => e.entry.agents.includes(v.id) || (e.entry.target?.type === 'agent' && e.entry.target.id === v.id)).slice(-20).reverse();
      const personal = about.length ? await store.audit.personalRange(v.tenant, about[about.length - 1]!.index, about[0]!.index + 1) : new Map();
      const witnessed = await c.audit.lastWitnessed(v.tenant, v.id);
      const latest = await c.audit.latestCheckpoint(v.tenant);

      return agentPage(shellFor(c, principal, v.name, 'fleet', { events }), {
        now: c.now(),
        row,
        fingerprint: v.fingerprint,
        enrolledAt: v.enrolledAt,
        remote: v.remote,
        facts: factList,
        running: runningOf(v),
        accepted,
        directives,
        alarms: (v.alarms as { at: string; code: string; message: string }[]).map((x) => ({ at: x.at, code: x.code, message: x.message })),
        drift: about.filter((e) => e.entry.action === 'drift.repaired').map((e) => ({ at: iso(e.entry.at)!, steps: String(e.entry.details.steps ?? '') })),
        audit: about.map((e) => auditRow({ ...e.entry, index: e.index }, personal.get(e.index))),
        witness: { log: v.tenant, witnessed: witnessed?.size ?? null, latest: latest?.size ?? null },
        canManage: can(principal, 'agent.manage', v.tenant),
      });
    },
  });

  route({
    method: 'POST',
    url: '/agents/:id/labels',
    access: { tenant: 'agent.manage', of: agentOf(store) },
    body: LabelForm,
    handler: async ({ req, params, body, principal }) => {
      const r = await forward(c, req, 'POST', `/v1/agents/${encodeURIComponent(params.id!)}/labels`, parseLabelEdit(body.set, body.remove));
      const v = r.body as Awaited<ReturnType<typeof agentView>>;
      return labelsFragment({ row: agentRow(v), canManage: can(principal, 'agent.manage', v.tenant) });
    },
  });

  route({
    method: 'POST',
    url: '/agents/:id/revoke',
    access: { tenant: 'agent.manage', of: agentOf(store) },
    handler: async ({ req, reply, params }) => {
      await forward(c, req, 'POST', `/v1/agents/${encodeURIComponent(params.id!)}/revoke`);
      return go(req, reply, `/agents/${encodeURIComponent(params.id!)}`);
    },
  });
}

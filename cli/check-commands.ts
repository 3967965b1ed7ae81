// ferry checks ls | history, ferry alerts ls: every service check's state as
// its agent last reported it (running inside the bank), an agent's check
// history, and the alerts the hub raised.
import { Command, Option } from 'commander';
import { withHub } from './client.js';
import { table } from './format.js';
import type { CliIo } from './release-commands.js';

export interface CheckView {
  agent: string;
  agentName: string;
  tenant: string;
  stack: string;
  check: string;
  version: string;
  kind: string;
  target: string;
  state: 'pending' | 'passing' | 'failing';
  since: string;
  lastError: string | null;
  reportedAt: string;
}

export interface CheckHistoryView {
  agent: string;
  checks: CheckView[];
  history: { n: number; stack: string; check: string; from: string; to: string; at: string; error: string | null }[];
}

export interface AlertView {
  key: string;
  kind: string;
  state: 'firing' | 'resolved';
  flapping: boolean;
  tenant: string | null;
  agent: string | null;
  rollout: string | null;
  since: string;
  summary: string;
  notifiedAt: string | null;
  notifications: number;
}

const enc = encodeURIComponent;

export function checksTable(checks: readonly CheckView[]): string {
  return table(
    ['TENANT', 'AGENT', 'CHECK', 'KIND', 'STATE', 'SINCE', 'LAST ERROR'],
    checks.map((c) => [c.tenant, c.agentName, `${c.stack}/${c.check}`, c.kind, c.state, c.since, c.state === 'failing' ? (c.lastError ?? '') : '']),
  );
}

export function registerCheckCommands(program: Command, io: CliIo): void {
  const checks = program.command('checks').description('service checks the agents run inside each bank (x-ferry.checks)');
  checks
    .command('ls')
    .description('every check with its state, since when, and the last error of a failing one; exit 1 when one is failing')
    .option('--tenant <name>', 'one tenant')
    .option('--agent <id>', 'one agent')
    .option('--failing', 'only failing checks')
    .option('--json', 'print the API answer as JSON')
    .action(async (o: { tenant?: string; agent?: string; failing?: boolean; json?: boolean }, cmd: Command) => {
      const q = new URLSearchParams({ ...(o.tenant && { tenant: o.tenant }), ...(o.agent && { agent: o.agent }), ...(o.failing && { failing: 'true' }) });
      const r = await withHub(io.target(cmd), (h) => h.get<{ checks: CheckView[] }>(`/v1/checks${q.size ? `?${q}` : ''}`));
      if (o.json) io.printJson(r);
      else {
        io.out(checksTable(r.checks));
        const failing = r.checks.filter((c) => c.state === 'failing').length;
        io.note(`${r.checks.length} check(s), ${failing} failing`);
      }
      if (r.checks.some((c) => c.state === 'failing')) process.exitCode = 1;
    });
  checks
    .command('history')
    .description("an agent's check transitions, newest first")
    .argument('<agent>', 'agent id')
    .option('--check <stack/name>', 'one check')
    .option('--limit <n>', 'at most this many', '50')
    .option('--json', 'print the API answer as JSON')
    .action(async (agent: string, o: { check?: string; limit: string; json?: boolean }, cmd: Command) => {
      const [stack, name] = o.check ? o.check.split('/') : [];
      const q = new URLSearchParams({ limit: o.limit, ...(stack && { stack }), ...(name && { check: name }) });
      const r = await withHub(io.target(cmd), (h) => h.get<CheckHistoryView>(`/v1/agents/${enc(agent)}/checks?${q}`));
      if (o.json) return void io.printJson(r);
      io.out(table(['AT', 'CHECK', 'FROM', 'TO', 'ERROR'], r.history.map((e) => [e.at, `${e.stack}/${e.check}`, e.from, e.to, e.error ?? ''])));
    });

  const alerts = program.command('alerts').description('alerts: checks failing or flapping, agents offline, rollouts stuck, alarms agents raised');
  alerts
    .command('ls')
    .description('alerts with their state; the same notices go to the event stream (ferry events) and the webhook')
    .addOption(new Option('--state <state>', 'only firing or resolved ones').choices(['firing', 'resolved']))
    .option('--tenant <name>', 'one tenant')
    .option('--json', 'print the API answer as JSON')
    .action(async (o: { state?: string; tenant?: string; json?: boolean }, cmd: Command) => {
      const q = new URLSearchParams({ ...(o.state && { state: o.state }), ...(o.tenant && { tenant: o.tenant }) });
      const r = await withHub(io.target(cmd), (h) => h.get<{ alerts: AlertView[] }>(`/v1/alerts${q.size ? `?${q}` : ''}`));
      if (o.json) return void io.printJson(r);
      io.out(table(['STATE', 'KIND', 'TENANT', 'SINCE', 'SUMMARY'], r.alerts.map((a) => [a.state + (a.flapping ? ' (flapping)' : ''), a.kind, a.tenant ?? '-', a.since, a.summary])));
    });
}

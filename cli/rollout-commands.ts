// ferry rollout …: staged deployment of a release to selected agents, and
// ferry agent label (what selectors match on).
//
// `ferry rollout status ID --watch` follows a rollout, progress on stderr,
// and exits 0 when it succeeded, 1 when it failed, was aborted, rolled back
// or paused on failures, and 1 with FERRY_E_APPLY_TIMEOUT when --timeout ran out.
import { Command, Option } from 'commander';
import { FerryError } from '../shared/errors.js';
import { parseDurationMs } from '../hub/rollouts/waves.js';
import { withHub } from './client.js';
import { keyValues, labelList, table } from './format.js';
import type { CliIo } from './release-commands.js';

interface TargetView {
  agent: string;
  tenant: string;
  wave: number;
  state: string;
  seq: number | null;
  previous: string | null;
  code: string | null;
}
interface RolloutView {
  id: string;
  stack: string;
  version: string;
  selector: string;
  waveSpec: string;
  state: string;
  reason: string | null;
  wave: number;
  waves: number;
  agents: number;
  done: number;
  failed: number;
  skipped: number;
  reverted: number;
  waveList?: { wave: number; reach: number; agents: number; state: string; done: number; failed: number }[];
  targets?: TargetView[];
}

const enc = encodeURIComponent;
const TERMINAL = ['succeeded', 'failed', 'aborted', 'rolled-back'];

const SELECTOR_HELP = `
Selectors (--to): terms joined by commas, all must hold:
  tenant=bank-a            the agent's tenant      id=agt_...   name=host-1
  env=prod  region!=eu     a label equals / differs
  tenant in (bank-a,bank-b)   env notin (dev,test)
  gpu   !legacy            a label exists / does not exist
  *                        every agent
Waves (--waves): cumulative counts or percentages of the selected agents,
growing, ending at 100%; the first wave is the canary: 1,10%,50%,100%.

Example:
  ferry rollout create payments@2.4.0 --to 'tenant in (bank-a,bank-b),env=prod' \\
        --waves 1,10%,50%,100% --bake 10m --max-failures 1 --on-failure rollback`;

function parseRef(ref: string): { stack: string; version: string } {
  const m = /^([a-z0-9][a-z0-9_-]{0,62})@(.+)$/.exec(ref);
  if (!m) throw new FerryError('FERRY_E_VALIDATION', `${JSON.stringify(ref)}: expected STACK@VERSION, e.g. payments@2.4.0`);
  return { stack: m[1]!, version: m[2]! };
}

function count(text: string, what: string): number {
  if (!/^\d{1,6}$/.test(text)) throw new FerryError('FERRY_E_VALIDATION', `${what} ${JSON.stringify(text)}: a whole number`);
  return Number(text);
}

export function summaryLine(r: RolloutView): string {
  const extra = [r.failed ? `${r.failed} failed` : '', r.skipped ? `${r.skipped} skipped` : '', r.reverted ? `${r.reverted} reverted` : ''].filter(Boolean).join(', ');
  return `${r.id} ${r.stack}@${r.version} ${r.state} wave ${Math.max(r.wave, 0)}/${r.waves}: ${r.done}/${r.agents} done${extra ? `, ${extra}` : ''}${r.reason ? ` (${r.reason})` : ''}`;
}

export function rolloutDetail(r: RolloutView): string {
  const head = keyValues([
    ['rollout', r.id],
    ['release', `${r.stack}@${r.version}`],
    ['state', r.reason ? `${r.state} (${r.reason})` : r.state],
    ['selector', r.selector],
    ['waves', r.waveSpec],
    ['progress', `wave ${Math.max(r.wave, 0)} of ${r.waves}; ${r.done} of ${r.agents} done, ${r.failed} failed, ${r.skipped} skipped`],
  ]);
  const waves = table(['WAVE', 'REACH', 'AGENTS', 'STATE', 'DONE', 'FAILED'], (r.waveList ?? []).map((w) => [String(w.wave), String(w.reach), String(w.agents), w.state, String(w.done), String(w.failed)]));
  const targets = table(['AGENT', 'TENANT', 'WAVE', 'STATE', 'SEQ', 'PREVIOUS', 'CODE'], (r.targets ?? []).map((t) => [t.agent, t.tenant, String(t.wave), t.state, t.seq === null ? '-' : String(t.seq), t.previous ?? '-', t.code ?? '-']));
  return `${head}\n${waves}\n${targets}`;
}

/** 0 succeeded; 1 anything that needs an operator. */
export function exitFor(r: RolloutView): number {
  return r.state === 'succeeded' ? 0 : 1;
}

export function registerRolloutCommands(program: Command, io: CliIo): void {
  const rollout = program.command('rollout').description('staged deployment of a release to selected agents, in waves').addHelpText('after', SELECTOR_HELP);
  rollout
    .command('create')
    .description('start a rollout of STACK@VERSION to the agents a selector matches (operator)')
    .argument('<release>', 'STACK@VERSION')
    .requiredOption('--to <selector>', "which agents, e.g. 'tenant in (bank-a,bank-b),env=prod'")
    .option('--waves <waves>', 'cumulative waves, e.g. 1,10%,50%,100%', '100%')
    .option('--bake <duration>', 'how long each agent must stay healthy after applying, e.g. 30s, 10m', '0')
    .option('--max-failures <n>', 'failures tolerated before --on-failure applies', '0')
    .addOption(new Option('--on-failure <action>', 'when failures pass --max-failures').choices(['pause', 'rollback']).default('pause'))
    .option('--agent-timeout <duration>', 'how long an agent may stay offline, outside its window or applying', '30m')
    .addOption(new Option('--on-timeout <outcome>', 'what a timed-out agent counts as').choices(['failed', 'skip']).default('failed'))
    .option('--retry <duration>', 'how soon to retry an agent whose maintenance window was closed', '1m')
    .option('--json', 'print the API answer as JSON')
    .addHelpText('after', SELECTOR_HELP)
    .action(async (ref: string, o: Record<string, string | boolean | undefined>, cmd: Command) => {
      const { stack, version } = parseRef(ref);
      const body = {
        stack,
        version,
        selector: o.to as string,
        waves: o.waves as string,
        bakeMs: parseDurationMs(o.bake as string, '--bake'),
        maxFailures: count(o.maxFailures as string, '--max-failures'),
        onFailure: o.onFailure,
        agentTimeoutMs: parseDurationMs(o.agentTimeout as string, '--agent-timeout'),
        onTimeout: o.onTimeout,
        retryMs: parseDurationMs(o.retry as string, '--retry'),
      };
      const r = await withHub(io.target(cmd), (h) => h.post<RolloutView>('/v1/rollouts', body));
      if (o.json) return void io.printJson(r);
      io.out(`${r.id}\n`);
      io.note(`${summaryLine(r)}; follow it with: ferry rollout status ${r.id} --watch`);
    });
  rollout
    .command('ls')
    .description('list recent rollouts')
    .option('--json', 'print the API answer as JSON')
    .action(async (o: { json?: boolean }, cmd: Command) => {
      const r = await withHub(io.target(cmd), (h) => h.get<{ rollouts: RolloutView[] }>('/v1/rollouts'));
      if (o.json) return void io.printJson(r);
      io.out(table(['ID', 'RELEASE', 'STATE', 'WAVE', 'DONE', 'FAILED', 'SELECTOR'], r.rollouts.map((x) => [x.id, `${x.stack}@${x.version}`, x.state, `${Math.max(x.wave, 0)}/${x.waves}`, `${x.done}/${x.agents}`, String(x.failed), x.selector])));
    });
  rollout
    .command('status')
    .description('show a rollout per wave and per agent; --watch follows it until it ends')
    .argument('<id>', 'rollout id, R-<n>')
    .option('--watch', 'follow until it succeeds (exit 0) or fails, is aborted, rolled back or paused on failures (exit 1)')
    .option('--interval <duration>', 'how often --watch asks the hub', '1s')
    .option('--timeout <duration>', 'give up watching after this long (exit 1)')
    .option('--json', 'print the API answer as JSON')
    .action(async (id: string, o: { watch?: boolean; interval: string; timeout?: string; json?: boolean }, cmd: Command) => {
      const every = parseDurationMs(o.interval, '--interval');
      const deadline = o.timeout ? Date.now() + parseDurationMs(o.timeout, '--timeout') : Infinity;
      const r = await withHub(io.target(cmd), async (h) => {
        let last = '';
        for (;;) {
          const v = await h.get<RolloutView>(`/v1/rollouts/${enc(id)}`);
          if (!o.watch) return v;
          const line = summaryLine(v);
          if (line !== last) io.note(line);
          last = line;
          if (TERMINAL.includes(v.state) || (v.state === 'paused' && v.failed > 0)) return v;
          if (Date.now() > deadline) {
            if (o.json) io.printJson(v);
            throw new FerryError('FERRY_E_APPLY_TIMEOUT', `${id} still ${v.state} after --timeout ${o.timeout}`);
          }
          await new Promise((res) => setTimeout(res, Math.max(100, every)));
        }
      });
      if (o.json) io.printJson(r);
      else io.out(rolloutDetail(r));
      if (o.watch) process.exitCode = exitFor(r);
    });
  for (const [name, what] of [
    ['pause', 'stop issuing directives; agents already updating carry on'],
    ['resume', 'carry on a paused rollout, accepting the failures so far'],
    ['promote', 'start the next wave now, without waiting for this one'],
    ['abort', 'stop the rollout for good, leaving agents as they are'],
    ['rollback', 'put every agent the rollout changed back on its previous release'],
  ] as const) {
    rollout
      .command(name)
      .description(`${what} (operator)`)
      .argument('<id>', 'rollout id, R-<n>')
      .option('--json', 'print the API answer as JSON')
      .action(async (id: string, o: { json?: boolean }, cmd: Command) => {
        const r = await withHub(io.target(cmd), (h) => h.post<RolloutView>(`/v1/rollouts/${enc(id)}/${name}`));
        if (o.json) return void io.printJson(r);
        io.out(summaryLine(r) + '\n');
      });
  }

  const agent = program.commands.find((c) => c.name() === 'agent') ?? program.command('agent');
  agent
    .command('label')
    .description('set (key=value) or remove (key-) labels of an agent (operator)')
    .argument('<id>', 'agent id (agt_...)')
    .argument('<changes...>', 'key=value to set, key- to remove')
    .option('--json', 'print the API answer as JSON')
    .action(async (id: string, changes: string[], o: { json?: boolean }, cmd: Command) => {
      const set: Record<string, string> = {};
      const remove: string[] = [];
      for (const c of changes) {
        const m = /^([^=]+)=(.*)$/.exec(c);
        if (m) set[m[1]!] = m[2]!;
        else if (c.endsWith('-')) remove.push(c.slice(0, -1));
        else throw new FerryError('FERRY_E_VALIDATION', `${JSON.stringify(c)}: use key=value to set a label, key- to remove one`);
      }
      const a = await withHub(io.target(cmd), (h) => h.post<{ id: string; labels: Record<string, string> }>(`/v1/agents/${enc(id)}/labels`, { set, remove }));
      if (o.json) return void io.printJson(a);
      io.out(`${a.id} ${labelList(a.labels)}\n`);
    });
}

// ferry rollout …: staged deployment of a release to selected agents, and
// ferry agent label (what selectors match on).
//
// `ferry rollout status ID --watch` follows a rollout, progress on stderr,
// and exits 0 when it succeeded, 1 when it failed, was aborted, rolled back
// or paused on failures, and 1 with FERRY_E_APPLY_TIMEOUT when --timeout ran out.
// It follows the hub's event stream (GET /v1/events), re-reading the rollout
// when one of its transitions arrives; against a hub without the stream it
// polls every --interval. `ferry events` tails the stream itself.
import { Command, Option } from 'commander';
import { AGENT_STACK } from '../shared/agent-bundle.js';
import { FerryError, asFerryError } from '../shared/errors.js';
import type { GapData, RolloutEvent } from '../shared/events.js';
import { sleep } from '../shared/sleep.js';
import { durationMs as parseDurationMs } from '../shared/duration.js';
import { withHub, type HubClient } from './client.js';
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
/** --watch re-reads a busy rollout at most this often. */
const REFRESH_MS = 200;
/** Errors --watch rides out (the event stream gives up after a minute of them). */
const TRANSIENT: readonly string[] = ['FERRY_E_HUB_UNREACHABLE', 'FERRY_E_UNAVAILABLE'];

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

/** What a rollout brings: STACK@VERSION, or the agent version of an agent-version rollout. */
const what = (r: { stack: string; version: string }) => (r.stack === AGENT_STACK ? `ferry-agent ${r.version}` : `${r.stack}@${r.version}`);

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
  return `${r.id} ${what(r)} ${r.state} wave ${Math.max(r.wave, 0)}/${r.waves}: ${r.done}/${r.agents} done${extra ? `, ${extra}` : ''}${r.reason ? ` (${r.reason})` : ''}`;
}

export function rolloutDetail(r: RolloutView): string {
  const head = keyValues([
    ['rollout', r.id],
    ['release', what(r)],
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

/** Where --watch stops: the rollout ended, or paused on failures (an operator must act). */
function settled(r: RolloutView): boolean {
  return TERMINAL.includes(r.state) || (r.state === 'paused' && r.failed > 0);
}

/** One event for people: `TIME  #ID  R-17  what happened`. */
export function eventLine(e: RolloutEvent): string {
  const what = (() => {
    switch (e.kind) {
      case 'rollout':
        return e.from === null ? `created (${e.to})` : `${e.from} -> ${e.to}${e.reason ? ` (${e.reason})` : ''}`;
      case 'wave':
        return `wave ${e.wave} started`;
      case 'target':
        return `${e.agentId} (${e.tenant}) ${e.from} -> ${e.to}${e.code ? ` [${e.code}]` : ''}`;
      case 'directive':
        return `${e.agentId} (${e.tenant}) ${e.from} -> ${e.to}: directive ${e.seq}${e.version ? ` for ${e.version}` : ''}`;
      case 'alert':
        return `alert ${e.event}${e.state === 'resolved' ? ' (resolved)' : ''}: ${e.summary}`;
      case 'scale':
        return `${e.agentId} (${e.tenant}) ${e.stack}/${e.service} scaled ${e.from} -> ${e.to} (${e.reason})`;
      default: {
        const never: never = e;
        return never;
      }
    }
  })();
  return `${e.at}  #${e.id}  ${e.rollout ?? '-'}  ${what}`;
}

/**
 * Follows a rollout until it settles or `signal` aborts (then undefined):
 * re-reads it when the stream says it changed (coalesced to one read per
 * REFRESH_MS), printing its summary line when that changes. The stream's
 * first `ready` triggers a read too, so nothing between the caller's last
 * read and the subscription is missed.
 */
async function followRollout(h: HubClient, id: string, show: (v: RolloutView) => boolean, signal: AbortSignal, io: CliIo): Promise<RolloutView | undefined> {
  const stop = new AbortController();
  const abort = () => stop.abort();
  signal.addEventListener('abort', abort, { once: true });
  let dirty = false;
  let lastRead = 0;
  let reading: Promise<void> | null = null;
  let done: RolloutView | undefined;
  let failed: unknown;
  const read = async () => {
    while (dirty && !stop.signal.aborted) {
      dirty = false;
      await sleep(lastRead + REFRESH_MS - Date.now(), stop.signal);
      if (stop.signal.aborted) return;
      lastRead = Date.now();
      let v: RolloutView;
      try {
        v = await h.get<RolloutView>(`/v1/rollouts/${enc(id)}`);
      } catch (err) {
        // The hub restarting: the stream reconnects and its `ready` asks again; meanwhile retry.
        if (!TRANSIENT.includes(asFerryError(err).code)) throw err;
        dirty = true;
        await sleep(1000, stop.signal);
        continue;
      }
      if (show(v)) {
        done = v;
        stop.abort();
      }
    }
  };
  const refresh = (): void => {
    dirty = true;
    if (reading || stop.signal.aborted) return;
    reading = read()
      .catch((err: unknown) => {
        failed = err;
        stop.abort();
      })
      .finally(() => {
        reading = null;
        if (dirty) refresh(); // asked for while the last read was finishing
      });
  };
  let lost = false;
  try {
    const onReconnect = (cause: FerryError | null) => {
      if (!lost) io.note(`lost the hub's event stream${cause ? ` (${cause.code})` : ''}; reconnecting`);
      lost = true;
    };
    for await (const m of h.follow('/v1/events', { rollout: id }, { signal: stop.signal, onReconnect })) {
      if (m.event === 'ready') lost = false;
      if (m.event === 'ready' || m.event === 'transition' || m.event === 'gap') refresh();
    }
    await reading;
  } finally {
    signal.removeEventListener('abort', abort);
    stop.abort();
  }
  if (failed) throw failed;
  return done;
}

/** The same, by asking every `everyMs`: for hubs without GET /v1/events. */
async function pollRollout(h: HubClient, id: string, show: (v: RolloutView) => boolean, everyMs: number, signal: AbortSignal): Promise<RolloutView | undefined> {
  for (;;) {
    await sleep(Math.max(100, everyMs), signal);
    if (signal.aborted) return undefined;
    const v = await h.get<RolloutView>(`/v1/rollouts/${enc(id)}`);
    if (show(v)) return v;
  }
}

async function watchRollout(h: HubClient, id: string, o: { interval: string; timeout?: string; json?: boolean }, io: CliIo): Promise<RolloutView> {
  const every = parseDurationMs(o.interval, '--interval');
  const timeoutMs = o.timeout ? parseDurationMs(o.timeout, '--timeout') : undefined;
  let last = '';
  let latest = await h.get<RolloutView>(`/v1/rollouts/${enc(id)}`);
  const show = (v: RolloutView) => {
    const line = summaryLine(v);
    if (line !== last) io.note(line);
    last = line;
    latest = v;
    return settled(v);
  };
  if (show(latest)) return latest;
  const deadline = new AbortController();
  const timer = timeoutMs !== undefined ? setTimeout(() => deadline.abort(), timeoutMs) : undefined;
  try {
    let end: RolloutView | undefined;
    try {
      end = await followRollout(h, id, show, deadline.signal, io);
    } catch (err) {
      // A hub from before the event stream: 404 for the route (the rollout itself was just read).
      if (asFerryError(err).code !== 'FERRY_E_NOT_FOUND') throw err;
      end = await pollRollout(h, id, show, every, deadline.signal);
    }
    if (end) return end;
    if (o.json) io.printJson(latest);
    throw new FerryError('FERRY_E_APPLY_TIMEOUT', `${id} still ${latest.state} after --timeout ${o.timeout}`);
  } finally {
    clearTimeout(timer);
  }
}

export function registerRolloutCommands(program: Command, io: CliIo): void {
  const rollout = program.command('rollout').description('staged deployment of a release to selected agents, in waves').addHelpText('after', SELECTOR_HELP);
  rollout
    .command('create')
    .description('start a rollout of STACK@VERSION, or of an agent version (--agent-version), to the agents a selector matches (operator)')
    .argument('[release]', 'STACK@VERSION (not with --agent-version)')
    .option('--agent-version <version>', 'roll out this ferry-agent version (an uploaded, signed agent bundle) instead of a release')
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
    .action(async (ref: string | undefined, o: Record<string, string | boolean | undefined>, cmd: Command) => {
      if ((ref === undefined) === (o.agentVersion === undefined)) throw new FerryError('FERRY_E_VALIDATION', 'give either STACK@VERSION or --agent-version V');
      const { stack, version } = o.agentVersion !== undefined ? { stack: AGENT_STACK, version: o.agentVersion as string } : parseRef(ref!);
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
      io.out(table(['ID', 'RELEASE', 'STATE', 'WAVE', 'DONE', 'FAILED', 'SELECTOR'], r.rollouts.map((x) => [x.id, what(x), x.state, `${Math.max(x.wave, 0)}/${x.waves}`, `${x.done}/${x.agents}`, String(x.failed), x.selector])));
    });
  rollout
    .command('status')
    .description('show a rollout per wave and per agent; --watch follows it until it ends')
    .argument('<id>', 'rollout id, R-<n>')
    .option('--watch', 'follow until it succeeds (exit 0) or fails, is aborted, rolled back or paused on failures (exit 1); progress on stderr')
    .option('--interval <duration>', 'how often --watch asks a hub that has no event stream', '1s')
    .option('--timeout <duration>', 'give up watching after this long (exit 1)')
    .option('--json', 'print the API answer as JSON (with --watch: the final state)')
    .action(async (id: string, o: { watch?: boolean; interval: string; timeout?: string; json?: boolean }, cmd: Command) => {
      parseDurationMs(o.interval, '--interval');
      if (o.timeout) parseDurationMs(o.timeout, '--timeout');
      const r = await withHub(io.target(cmd), (h) => (o.watch ? watchRollout(h, id, o, io) : h.get<RolloutView>(`/v1/rollouts/${enc(id)}`)));
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

  program
    .command('events')
    .description('follow rollout transitions as they happen (the hub\'s event stream); Ctrl-C stops')
    .option('--rollout <id>', 'only this rollout\'s, R-<n>')
    .option('--kind <kinds>', 'only these kinds: rollout, wave, target, directive, alert, scale (comma-separated)')
    .option('--since <event-id>', 'first replay the events after this id (0: all the hub keeps)')
    .option('--limit <n>', 'stop after this many events')
    .option('--json', 'one JSON object per event (NDJSON)')
    .addHelpText('after', '\nExample:\n  ferry events --rollout R-17 --json | jq .to')
    .action(async (o: { rollout?: string; kind?: string; since?: string; limit?: string; json?: boolean }, cmd: Command) => {
      if (o.since !== undefined && !/^\d{1,15}$/.test(o.since)) throw new FerryError('FERRY_E_VALIDATION', `--since ${JSON.stringify(o.since)}: an event id, a whole number`);
      const limit = o.limit === undefined ? Infinity : count(o.limit, '--limit');
      if (limit === 0) return;
      await withHub(io.target(cmd), async (h) => {
        let n = 0;
        const onReconnect = (cause: FerryError | null) => io.note(`lost the hub's event stream${cause ? ` (${cause.code})` : ''}; reconnecting`);
        for await (const m of h.follow('/v1/events', { rollout: o.rollout, kind: o.kind, since: o.since }, { onReconnect })) {
          if (m.event === 'gap') {
            const g = JSON.parse(m.data) as GapData;
            io.note(`warning ${g.error.code}: ${g.error.message}\n  ${g.error.hint}`);
          }
          if (m.event !== 'transition') continue;
          const e = JSON.parse(m.data) as RolloutEvent;
          io.out(o.json ? JSON.stringify(e) + '\n' : eventLine(e) + '\n');
          if (++n >= limit) return;
        }
      });
    });

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

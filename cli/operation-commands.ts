// Remote operations from the CLI: ferry service restart|stop|start|scale,
// ferry logs, ferry stats, ferry exec, ferry network ls|reconnect, ferry
// operation show|ls. One agent with --agent; several with --to SELECTOR
// (waves and a confirmed plan, as rollouts). --json everywhere; exit codes
// are shared/exit.ts's, and `ferry exec` exits with the command's own code.
import { createWriteStream, type WriteStream } from 'node:fs';
import { createInterface } from 'node:readline/promises';
import type { Command } from 'commander';
import { durationMs, parseDurationMs } from '../shared/duration.js';
import { FerryError, isErrorCode } from '../shared/errors.js';
import { digestOfTranscript, transcriptLine, type StreamChunk } from '../shared/operation.js';
import type { ContainerStats, NetworkView, OperatorHold } from '../shared/protocol.js';
import { withHub, type HubClient } from './client.js';
import { bytesText } from './image-commands.js';
import { table } from './format.js';
import type { CliIo } from './release-commands.js';

const enc = encodeURIComponent;

export interface OperationView {
  id: string;
  agent: string;
  tenant: string;
  kind: string;
  target: string;
  status: 'pending' | 'ok' | 'refused' | 'failed' | 'timeout';
  code: string | null;
  message: string | null;
  result: { containers?: string[]; steps?: string[]; hold?: OperatorHold | null; stats?: ContainerStats[]; networks?: NetworkView[] } | null;
  exitCode: number | null;
  bytes: number | null;
  durationMs: number | null;
  streamReason: string | null;
  transcriptDigest: string | null;
  agentDigest: string | null;
  issuedAt: string;
  finishedAt: string | null;
  batch: string | null;
}

type StreamLine = { type: 'operation'; operation: OperationView } | { type: 'data'; chunks: StreamChunk[] } | { type: 'end'; operation: OperationView };

/** STACK/SERVICE */
function parseTarget(text: string): { stack: string; service: string } {
  const m = /^([a-z0-9][a-z0-9_-]{0,62})\/([a-z0-9][a-z0-9_-]{0,62})$/.exec(text);
  if (!m) throw new FerryError('FERRY_E_VALIDATION', `${JSON.stringify(text)}: give STACK/SERVICE, e.g. payments/api`);
  return { stack: m[1]!, service: m[2]! };
}

function int(text: string, what: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) throw new FerryError('FERRY_E_VALIDATION', `${what} ${JSON.stringify(text)}: a whole number from ${min} to ${max}`);
  return n;
}

/** `10m` (that long ago) or a date (2024-05-01T10:00:00Z) as ms since the epoch. */
export function parseWhen(text: string, what: string, now = Date.now()): number {
  const ago = parseDurationMs(text);
  if (ago !== undefined) return now - ago;
  const t = Date.parse(text);
  if (Number.isNaN(t)) throw new FerryError('FERRY_E_VALIDATION', `${what} ${JSON.stringify(text)}: a duration back from now (10m, 2h) or a date (2024-05-01T10:00:00Z)`);
  return t;
}

/** A failed or refused operation as the error it carries (its code decides the exit status). */
function failure(o: OperationView): FerryError {
  const code = o.code && isErrorCode(o.code) ? o.code : 'FERRY_E_INTERNAL';
  const detail = o.message && o.code && isErrorCode(o.code) ? o.message.replace(/^[^:]*: /, '') : (o.message ?? o.code ?? o.status);
  return new FerryError(code, `${o.kind} ${o.target} on ${o.agent} (${o.id}): ${detail}`);
}

function describe(o: OperationView): string {
  const r = o.result ?? {};
  const out = [`${o.kind} ${o.target} on ${o.agent}: ${o.status}${o.code ? ` ${o.code}` : ''} in ${o.durationMs ?? '?'} ms (${o.id})`];
  for (const s of r.steps ?? []) out.push(`  ${s}`);
  if (!r.steps?.length) for (const c of r.containers ?? []) out.push(`  ${c}`);
  if (r.hold) out.push(`  held: ${r.hold.state}${r.hold.replicas !== undefined ? ` at ${r.hold.replicas} replica(s)` : ''} until started, scaled back or a new release of ${r.hold.stack}`);
  else if (r.hold === null && ['start', 'scale'].includes(o.kind)) out.push('  no hold: the service runs as its release says');
  return out.join('\n') + '\n';
}

/** Asks on a terminal; elsewhere --yes is needed. */
async function confirm(question: string): Promise<boolean> {
  if (!process.stdin.isTTY) throw new FerryError('FERRY_E_CONFIRM_REQUIRED', 'not a terminal: read the plan above and run again with --yes');
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(`${question} [y/N] `)).trim());
  } finally {
    rl.close();
  }
}

interface Where {
  agent?: string;
  to?: string;
  waves: string;
  maxFailures: string;
  yes?: boolean;
  json?: boolean;
}

async function serviceOp(io: CliIo, cmd: Command, kind: string, target: string, o: Where & { replica?: string; replicas?: string; network?: string }): Promise<void> {
  if (!o.agent === !o.to) throw new FerryError('FERRY_E_VALIDATION', 'give exactly one of --agent ID or --to SELECTOR');
  const body = {
    kind,
    ...parseTarget(target),
    ...(o.replica !== undefined ? { replica: int(o.replica, '--replica', 0, 99) } : {}),
    ...(o.replicas !== undefined ? { replicas: int(o.replicas, '--replicas', 0, 100) } : {}),
    ...(o.network !== undefined ? { network: o.network } : {}),
  };
  await withHub(io.target(cmd), async (h) => {
    if (o.agent) {
      const r = await h.post<OperationView>(`/v1/agents/${enc(o.agent)}/operations`, body, { timeoutMs: 660_000 });
      if (o.json) io.printJson(r);
      else io.out(describe(r));
      if (r.status !== 'ok') throw failure(r);
      return;
    }
    const batch = { ...body, selector: o.to, waves: o.waves, maxFailures: int(o.maxFailures, '--max-failures', 0, 100_000) };
    const plan = await h.post<{ agents: { id: string; tenant: string; name: string }[]; waves: number[]; hash: string }>('/v1/operations/plan', batch);
    if (plan.agents.length > 1) {
      io.note(`${kind} ${target} on ${plan.agents.length} agents in ${plan.waves.length} wave(s) (cumulative ${plan.waves.join(', ')}):`);
      for (const a of plan.agents) io.note(`  ${a.id}  ${a.tenant}  ${a.name}`);
      io.note(`plan ${plan.hash}`);
      if (!o.yes && !(await confirm('Go ahead?'))) throw new FerryError('FERRY_E_CONFIRM_REQUIRED', 'not confirmed; nothing was done');
    }
    const r = await h.post<{ batch: string; state: string; waves: { agents: { agent: string; operation: OperationView | null; skipped?: string }[] }[] }>('/v1/operations', { ...batch, confirm: plan.hash }, { timeoutMs: 3_600_000 });
    if (o.json) io.printJson(r);
    else {
      r.waves.forEach((w, i) => {
        for (const a of w.agents) io.out(a.operation ? `wave ${i + 1}  ${describe(a.operation)}` : `wave ${i + 1}  ${kind} ${target} on ${a.agent}: skipped (${a.skipped})\n`);
      });
      io.note(`${r.batch}: ${r.state}`);
    }
    const failed = r.waves.flatMap((w) => w.agents).find((a) => a.operation?.status !== 'ok');
    if (failed) throw failed.operation ? failure(failed.operation) : new FerryError('FERRY_E_OPERATION_INVALID', `${failed.agent}: ${failed.skipped}`);
  });
}

/**
 * Prints a stream's data lines as they come: each line prefixed by its
 * container; stderr lines to stderr. Returns the end, or null when
 * interrupted (Ctrl-C: the hub cancels the stream on the agent).
 */
async function followStream(h: HubClient, method: 'GET' | 'POST', path: string, o: { query?: Record<string, string | undefined>; body?: unknown; json?: boolean; prefix: boolean; file?: WriteStream }, io: CliIo): Promise<OperationView | null> {
  const ac = new AbortController();
  const stop = () => ac.abort();
  process.once('SIGINT', stop);
  let end: OperationView | null = null;
  let first: OperationView | null = null;
  try {
    for await (const raw of h.lines(method, path, { query: o.query, body: o.body, signal: ac.signal })) {
      const line = raw as StreamLine;
      if (o.json) io.out(JSON.stringify(line) + '\n');
      if (line.type === 'operation') first = line.operation;
      else if (line.type === 'end') end = line.operation;
      else if (!o.json) {
        for (const c of line.chunks) {
          const text = o.prefix ? c.text.replace(/^(?=.)/gm, `${c.src} | `) : c.text;
          if (o.file) o.file.write(text);
          else if (c.fd === 2) process.stderr.write(text);
          else io.out(text);
        }
      }
    }
  } finally {
    process.off('SIGINT', stop);
    if (o.file) await new Promise<void>((r) => o.file!.end(() => r()));
  }
  if (!end) {
    if (ac.signal.aborted) {
      io.note(`interrupted; the hub ends the stream on the agent${first ? ` (${first.id})` : ''}`);
      process.exitCode = 130;
      return null;
    }
    throw new FerryError('FERRY_E_HUB_UNREACHABLE', `the stream ended without its end${first ? ` (${first.id}: \`ferry operation show ${first.id}\`)` : ''}`);
  }
  return end;
}

export function registerOperationCommands(program: Command, io: CliIo): void {
  const where = (c: Command) =>
    c
      .option('--agent <id>', 'the agent (agt_...)')
      .option('--to <selector>', 'the agents a selector picks (as rollouts: tenant=bank-a,env=prod); more than one asks to confirm the plan')
      .option('--waves <spec>', 'with --to: cumulative waves, e.g. 1,50%,100%', '100%')
      .option('--max-failures <n>', 'with --to: failed agents tolerated before the next waves are skipped', '0')
      .option('--yes', 'with --to: confirm the plan without asking')
      .option('--json', 'print the API answer as JSON');

  const service = program.command('service').description("operate a service on agents: restart, stop, start, scale (within what the bank's policy allows)");
  where(service.command('restart').description('restart the service (rolling, one replica at a time when it has several)').argument('<stack/service>').option('--replica <n>', 'only this replica')).action(
    (t: string, o: Where & { replica?: string }, cmd: Command) => serviceOp(io, cmd, 'restart', t, o),
  );
  where(service.command('stop').description('stop the service; it stays stopped (not repaired as drift, also across agent restarts) until started again or a new release').argument('<stack/service>')).action(
    (t: string, o: Where, cmd: Command) => serviceOp(io, cmd, 'stop', t, o),
  );
  where(service.command('start').description('start a service an operator stopped (and end a scale: back to the release)').argument('<stack/service>')).action((t: string, o: Where, cmd: Command) =>
    serviceOp(io, cmd, 'start', t, o),
  );
  where(service.command('scale').description('run this many replicas until the next release (the release\'s count ends the hold)').argument('<stack/service>').requiredOption('--replicas <n>', '0 to 100')).action(
    (t: string, o: Where & { replicas: string }, cmd: Command) => serviceOp(io, cmd, 'scale', t, o),
  );

  program
    .command('logs')
    .description("a service's container logs, each line with its timestamp and its container (service#replica)")
    .argument('<stack/service>')
    .requiredOption('--agent <id>', 'the agent (agt_...)')
    .option('--since <when>', 'from a duration ago (10m, 2h) or a date')
    .option('--until <when>', 'up to a duration ago or a date')
    .option('--tail <n>', 'the last N lines of each container (then what comes, with -f)')
    .option('-f, --follow', 'keep following new lines, across restarts of the containers, until interrupted (at most 1 h)')
    .option('--grep <text>', 'only lines containing this text (fixed text, as grep -F)')
    .option('--replica <n>', 'only this replica')
    .option('--output <file>', 'write the lines to this file (a download of the range)')
    .option('--no-prefix', 'without the service#replica prefix')
    .option('--json', 'print the stream as JSON lines')
    .action(async (t: string, o: { agent: string; since?: string; until?: string; tail?: string; follow?: boolean; grep?: string; replica?: string; output?: string; prefix: boolean; json?: boolean }, cmd: Command) => {
      const now = Date.now();
      const query = {
        ...parseTarget(t),
        ...(o.since ? { since: String(parseWhen(o.since, '--since', now)) } : {}),
        ...(o.until ? { until: String(parseWhen(o.until, '--until', now)) } : {}),
        ...(o.tail !== undefined ? { tail: String(int(o.tail, '--tail', 0, 100_000)) } : {}),
        ...(o.follow ? { follow: 'true' } : {}),
        ...(o.grep ? { grep: o.grep } : {}),
        ...(o.replica !== undefined ? { replica: String(int(o.replica, '--replica', 0, 99)) } : {}),
      };
      const file = o.output ? createWriteStream(o.output, { flags: 'w', mode: 0o600 }) : undefined;
      const end = await withHub(io.target(cmd), (h) => followStream(h, 'GET', `/v1/agents/${enc(o.agent)}/logs`, { query, json: o.json, prefix: o.prefix, file }, io));
      if (!end) return;
      if (end.status !== 'ok') throw failure(end);
      if (!o.json) io.note(`${end.streamReason === 'eof' ? 'end of logs' : `stream ended: ${end.streamReason}`}; ${bytesText(end.bytes ?? 0)}${o.output ? ` written to ${o.output}` : ''} (${end.id})`);
    });

  program
    .command('stats')
    .description('CPU, memory, network, processes and restarts per container, sampled by the agent')
    .argument('[stack[/service]]', 'only these containers')
    .requiredOption('--agent <id>', 'the agent (agt_...)')
    .option('--watch', 'sample again at --interval until interrupted (at most 1 h)')
    .option('--interval <duration>', 'with --watch: how often (at least 1s)', '5s')
    .option('--json', 'print the API answer (with --watch: JSON lines)')
    .action(async (t: string | undefined, o: { agent: string; watch?: boolean; interval: string; json?: boolean }, cmd: Command) => {
      const [stack, svc] = (t ?? '').split('/');
      const query = { ...(stack ? { stack } : {}), ...(svc ? { service: svc } : {}), ...(o.watch ? { follow: 'true', intervalMs: String(Math.max(1000, durationMs(o.interval, '--interval'))) } : {}) };
      await withHub(io.target(cmd), async (h) => {
        if (!o.watch) {
          const r = await h.get<OperationView>(`/v1/agents/${enc(o.agent)}/stats`, query);
          if (r.status !== 'ok') throw failure(r);
          if (o.json) return io.printJson(r);
          return io.out(statsTable(r.result?.stats ?? []));
        }
        const ac = new AbortController();
        const stop = () => ac.abort();
        process.once('SIGINT', stop);
        let batch: ContainerStats[] = [];
        try {
          for await (const raw of h.lines('GET', `/v1/agents/${enc(o.agent)}/stats`, { query, signal: ac.signal })) {
            const line = raw as StreamLine;
            if (o.json) io.out(JSON.stringify(line) + '\n');
            if (line.type === 'end' && line.operation.status !== 'ok') throw failure(line.operation);
            if (line.type !== 'data' || o.json) continue;
            for (const c of line.chunks) {
              const s = JSON.parse(c.text) as ContainerStats;
              if (batch.length && batch[0]!.at !== s.at) {
                io.out(statsTable(batch) + '\n');
                batch = [];
              }
              batch.push(s);
            }
          }
        } finally {
          process.off('SIGINT', stop);
        }
        if (batch.length && !o.json) io.out(statsTable(batch));
        // like `ferry logs -f`: interrupted is exit 130
        if (ac.signal.aborted) process.exitCode = 130;
      });
    });

  program
    .command('exec')
    .description("run a command the bank's policy lists for the service (operations.exec), in one of its running containers; exits with the command's exit code")
    .argument('<stack/service>')
    .argument('[command...]', 'after --: the command name as the policy lists it, then its arguments')
    .requiredOption('--agent <id>', 'the agent (agt_...)')
    .option('--replica <n>', 'in this replica (default: the first running one)')
    .option('--shell <line>', 'a command line for sh -c, only where the policy allows a shell for the service')
    .option('--json', 'print the stream as JSON lines')
    .addHelpText('after', '\nExample:\n  ferry exec payments/api --agent agt_... -- db-migrate-status\n  ferry exec payments/api --agent agt_... -- tail-log 200 /var/log/app/api.log')
    .action(async (t: string, words: string[], o: { agent: string; replica?: string; shell?: string; json?: boolean }, cmd: Command) => {
      if (!o.shell === !words.length) throw new FerryError('FERRY_E_VALIDATION', 'give a command name (after --) or --shell LINE, not both');
      const body = { ...parseTarget(t), ...(o.replica !== undefined ? { replica: int(o.replica, '--replica', 0, 99) } : {}), ...(o.shell ? { shell: o.shell } : { command: words[0], argv: words.slice(1) }) };
      const end = await withHub(io.target(cmd), (h) => followStream(h, 'POST', `/v1/agents/${enc(o.agent)}/exec`, { body, json: o.json, prefix: false }, io));
      if (!end) return;
      if (end.status !== 'ok') throw failure(end);
      if (end.streamReason !== 'exit') throw new FerryError('FERRY_E_OPERATION_INVALID', `${end.id}: the output stream ended by ${end.streamReason} before the command exited`);
      if (!o.json) io.note(`exit ${end.exitCode}; transcript ${end.transcriptDigest} (${end.id})`);
      process.exitCode = end.exitCode ?? 1;
    });

  const network = program.command('network').description("a stack's networks on an agent: who is attached, and what should be");
  network
    .command('ls')
    .description('networks of the stacks on the agent, their containers, and containers missing from a network they should be on')
    .requiredOption('--agent <id>', 'the agent (agt_...)')
    .option('--stack <name>', 'only this stack')
    .option('--json', 'print the API answer as JSON')
    .action(async (o: { agent: string; stack?: string; json?: boolean }, cmd: Command) => {
      const r = await withHub(io.target(cmd), (h) => h.get<OperationView>(`/v1/agents/${enc(o.agent)}/networks`, { stack: o.stack }));
      if (r.status !== 'ok') throw failure(r);
      if (o.json) return io.printJson(r);
      const rows = (r.result?.networks ?? []).map((n) => [n.stack, n.network, n.present ? n.engineName : `${n.engineName} (missing)`, n.attached.map((a) => a.src).join(', ') || '-', n.missing.join(', ') || '-']);
      io.out(table(['STACK', 'NETWORK', 'ENGINE NAME', 'ATTACHED', 'SHOULD BE (DRIFT)'], rows));
    });
  where(network.command('reconnect').description('join the service\'s containers to the networks of its release they are missing from').argument('<stack/service>').option('--network <name>', 'only this network (its name in the release)')).action(
    (t: string, o: Where & { network?: string }, cmd: Command) => serviceOp(io, cmd, 'reconnect', t, o),
  );

  const operation = program.command('operation').description('remote operations: what was asked, what the agent answered');
  operation
    .command('show')
    .argument('<id>', 'op_...')
    .option('--transcript', "an exec's output as the hub kept it, checked against the digest in its audit entry")
    .option('--json', 'print the API answer as JSON')
    .action(async (id: string, o: { transcript?: boolean; json?: boolean }, cmd: Command) => {
      await withHub(io.target(cmd), async (h) => {
        const r = await h.get<OperationView>(`/v1/operations/${enc(id)}`);
        if (!o.transcript) return o.json ? io.printJson(r) : io.out(describe(r));
        const t = await h.get<{ digest: string; lines: StreamChunk[] }>(`/v1/operations/${enc(id)}/transcript`);
        const digest = digestOfTranscript(t.lines.map(transcriptLine).join(''));
        const ok = digest === t.digest && digest === r.transcriptDigest;
        if (o.json) return io.printJson({ operation: r, transcript: t, verified: ok, computedDigest: digest });
        for (const l of t.lines) (l.fd === 2 ? process.stderr : process.stdout).write(l.text);
        io.note(ok ? `transcript verified: ${digest}` : `TRANSCRIPT DOES NOT MATCH: computed ${digest}, recorded ${r.transcriptDigest}`);
        if (!ok) throw new FerryError('FERRY_E_AUDIT_INCONSISTENT', `transcript of ${id}: computed ${digest}, the operation records ${r.transcriptDigest}`);
      });
    });
  operation
    .command('ls')
    .requiredOption('--agent <id>', 'the agent (agt_...)')
    .option('--limit <n>', 'newest first, at most', '50')
    .option('--json', 'print the API answer as JSON')
    .action(async (o: { agent: string; limit: string; json?: boolean }, cmd: Command) => {
      const r = await withHub(io.target(cmd), (h) => h.get<{ operations: OperationView[] }>(`/v1/agents/${enc(o.agent)}/operations`, { limit: String(int(o.limit, '--limit', 1, 500)) }));
      if (o.json) return io.printJson(r);
      io.out(table(['ID', 'ISSUED', 'KIND', 'TARGET', 'STATUS', 'CODE', 'EXIT'], r.operations.map((x) => [x.id, x.issuedAt, x.kind, x.target, x.status, x.code ?? '', x.exitCode === null ? '' : String(x.exitCode)])));
    });
}

export function statsTable(stats: readonly ContainerStats[]): string {
  return table(
    ['STACK', 'CONTAINER', 'STATE', 'CPU %', 'MEMORY', 'LIMIT', 'NET RX', 'NET TX', 'PIDS', 'RESTARTS'],
    stats.map((s) => [s.stack, s.src, s.state, s.cpuPercent.toFixed(1), bytesText(s.memoryBytes), s.memoryLimitBytes ? bytesText(s.memoryLimitBytes) : '-', bytesText(s.netRxBytes), bytesText(s.netTxBytes), String(s.pids), String(s.restarts)]),
  );
}


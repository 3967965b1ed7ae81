// Helpers for the remote operations tests: a chatty image, the CLI against a
// fleet's hub, and what the engine says of a service's containers.
import { spawn } from 'node:child_process';
import type { TestContext } from 'node:test';
import { buildTestImage, dockerOk } from './docker.js';
import type { Fleet, FleetAgent } from './fleet.js';
import type { TestHub } from './hub.js';
import { BIN, run } from './proc.js';
import { waitFor } from './tmp.js';

/** Prints `line N` on stdout and `err N` on stderr five times a second. */
export async function chattyImage(): Promise<string> {
  const img = await buildTestImage('ferry-test/ops-chatty', 'v1', { push: true, cmd: ['sh', '-c', 'i=0; while true; do echo "line $i"; echo "err $i" >&2; i=$((i+1)); sleep 0.2; done'] });
  return img.ref!;
}

/** A command printing `line 000000 <52 digits>` n times (65 bytes a line, as fast as sh can), then quiet. */
export function loudCommand(n: number): string[] {
  return ['sh', '-c', `i=0; while [ $i -lt ${n} ]; do printf "line %06d 0123456789012345678901234567890123456789012345678901\\n" $i; i=$((i+1)); done; exec sleep 3600`];
}

/** The CLI's environment against a fleet's hub, as its admin. */
export function cliEnv(f: Fleet, a: FleetAgent): NodeJS.ProcessEnv {
  return { FERRY_HUB: f.th.url, FERRY_TOKEN: f.th.adminToken, XDG_CONFIG_HOME: a.stateDir };
}

export function cli(f: Fleet, a: FleetAgent) {
  return (args: string[], opts: { timeoutMs?: number } = {}) => run('ferry', args, { env: cliEnv(f, a), ...opts });
}

/** Containers of a service on the engine, by replica: their id, state and start time. */
export async function containers(agentId: string, stack: string, svc: string): Promise<{ id: string; replica: number; state: string; startedAt: string }[]> {
  const ids = (await dockerOk(['ps', '-aq', '--filter', `label=ferry.agent=${agentId}`, '--filter', `label=ferry.stack=${stack}`, '--filter', `label=ferry.service=${svc}`])).split('\n').filter(Boolean);
  if (!ids.length) return [];
  const lines = (await dockerOk(['inspect', '--format', '{{.Id}} {{index .Config.Labels "ferry.replica"}} {{.State.Status}} {{.State.StartedAt}}', ...ids])).split('\n');
  return lines.map((l) => {
    const [id, replica, state, startedAt] = l.split(' ');
    return { id: id!, replica: Number(replica), state: state!, startedAt: startedAt! };
  }).sort((a, b) => a.replica - b.replica);
}


export interface Streaming {
  /** The chunks received so far (`--json` lines of type data). */
  chunks(): { src: string; fd: number; text: string }[];
  /** Their text, line by line. */
  lines(): string[];
  /** The operation's id, from the stream's first line. */
  operationId(): string;
  /** Ctrl-C, as a person reading would; resolves with the exit code. */
  interrupt(): Promise<number | null>;
}

/** A streaming `ferry ... --json` (logs -f, stats --watch) as a child process, read as it goes; killed after the test. */
export function streaming(t: TestContext, env: NodeJS.ProcessEnv, args: string[]): Streaming {
  const child = spawn(process.execPath, [BIN.ferry, ...args, '--json'], { env: { ...process.env, ...env } });
  t.after(() => child.kill('SIGKILL'));
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d));
  const exited = new Promise<number | null>((r) => child.on('exit', r));
  const parsed = () =>
    out
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { type: string; chunks?: { src: string; fd: number; text: string }[]; operation?: { id: string } });
  const chunks = () => parsed().flatMap((l) => l.chunks ?? []);
  return {
    chunks,
    lines: () => chunks().flatMap((c) => c.text.split('\n').filter(Boolean)),
    operationId: () => parsed()[0]!.operation!.id,
    interrupt: () => (child.kill('SIGINT'), exited),
  };
}

/** The operation's record once the hub has its answer (no longer pending). */
export function answered(th: Pick<TestHub, 'api'>, id: string): Promise<{ status: string; streamReason: string | null; bytes: number }> {
  return waitFor(`operation ${id} answered`, async () => {
    const o = (await th.api('GET', `/v1/operations/${id}`)).body;
    return o.status !== 'pending' ? o : null;
  }, 20_000);
}

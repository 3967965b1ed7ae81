// Helpers for the remote operations tests: a chatty image, the CLI against a
// fleet's hub, and what the engine says of a service's containers.
import { buildTestImage, dockerOk } from './docker.js';
import type { Fleet, FleetAgent } from './fleet.js';
import { run } from './proc.js';

/** Prints `line N` on stdout and `err N` on stderr five times a second. */
export async function chattyImage(): Promise<string> {
  const img = await buildTestImage('ferry-test/ops-chatty', 'v1', { push: true, cmd: ['sh', '-c', 'i=0; while true; do echo "line $i"; echo "err $i" >&2; i=$((i+1)); sleep 0.2; done'] });
  return img.ref!;
}

export function cli(f: Fleet, a: FleetAgent) {
  return (args: string[], opts: { timeoutMs?: number } = {}) => run('ferry', args, { env: { FERRY_HUB: f.th.url, FERRY_TOKEN: f.th.adminToken, XDG_CONFIG_HOME: a.stateDir }, ...opts });
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


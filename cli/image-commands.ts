// ferry images status --agent ID | --rollout ID: the images each agent is
// copying into its bank's registry (agent/relay), as the agents report them
// to the hub. --watch follows until every image has landed or failed.
import { Command } from 'commander';
import { FerryError } from '../shared/errors.js';
import { durationMs as parseDurationMs } from '../shared/duration.js';
import type { ImageRelay } from '../shared/protocol.js';
import { withHub, type HubClient } from './client.js';
import { table } from './format.js';
import type { CliIo } from './release-commands.js';

export interface ImagesView {
  rollout?: string;
  release?: string;
  agents: { agentId: string; tenant: string; updatedAt: string | null; images: ImageRelay[] }[];
  totals: { agents: number; reporting: number; states: Record<string, number>; bytesDone: number; bytesTotal: number };
}

const enc = encodeURIComponent;
const BUSY = new Set(['queued', 'copying']);

export function bytesText(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[u]}`;
}

/** `vendor.example/payments/api@sha256:0123456789ab…` -> `payments/api@0123456789ab`. */
function shortImage(image: string): string {
  const at = image.lastIndexOf('@');
  const name = at > 0 ? image.slice(0, at) : image;
  const first = name.split('/')[0]!;
  const repo = name.includes('/') && /[.:]|^localhost$/.test(first) ? name.slice(first.length + 1) : name;
  return at > 0 ? `${repo}@${image.slice(at + 1).replace(/^sha256:/, '').slice(0, 12)}` : repo;
}

export function imagesTable(v: ImagesView): string {
  const rows: string[][] = [];
  for (const a of v.agents) {
    if (!a.images.length) {
      rows.push([a.agentId, '-', a.updatedAt ? 'none' : 'not reported', '-', '-', '-']);
      continue;
    }
    for (const i of a.images) {
      const standby = i.registries.slice(1).filter((r) => r.state !== 'present');
      const state = i.state + (standby.length ? ` (standby ${standby.map((r) => `${r.registry}: ${r.state}`).join(', ')})` : '');
      rows.push([
        a.agentId,
        shortImage(i.image),
        state,
        i.bytesTotal ? `${bytesText(i.bytesDone)} / ${bytesText(i.bytesTotal)}` : i.bytesDone ? bytesText(i.bytesDone) : '-',
        i.bytesPerSecond ? `${bytesText(i.bytesPerSecond)}/s` : '-',
        i.code ? `${i.code}${i.message ? `: ${i.message.slice(0, 120)}` : ''}` : '',
      ]);
    }
  }
  return table(['AGENT', 'IMAGE', 'STATE', 'BYTES', 'SPEED', 'ERROR'], rows);
}

export function imagesSummary(v: ImagesView): string {
  const t = v.totals;
  const states = Object.entries(t.states)
    .sort()
    .map(([s, n]) => `${n} ${s}`)
    .join(', ');
  const pct = t.bytesTotal ? ` (${Math.floor((100 * t.bytesDone) / t.bytesTotal)}%)` : '';
  return `${v.rollout ? `${v.rollout} ${v.release}: ` : ''}${t.reporting}/${t.agents} agents reporting; ${states || 'no images'}; ${bytesText(t.bytesDone)} of ${bytesText(t.bytesTotal)}${pct}`;
}

/** Settled: every reporting agent's images have landed or failed, and every agent has reported. */
function settled(v: ImagesView): boolean {
  return v.totals.reporting === v.totals.agents && v.agents.every((a) => a.images.length > 0 && a.images.every((i) => !BUSY.has(i.state)));
}

async function watch(h: HubClient, path: string, o: { interval: string; timeout?: string }, io: CliIo): Promise<ImagesView> {
  const every = Math.max(200, parseDurationMs(o.interval, '--interval'));
  const deadline = o.timeout ? Date.now() + parseDurationMs(o.timeout, '--timeout') : Infinity;
  let last = '';
  for (;;) {
    const v = await h.get<ImagesView>(path);
    const line = imagesSummary(v);
    if (line !== last) io.note(line);
    last = line;
    if (settled(v)) return v;
    if (Date.now() + every > deadline) throw new FerryError('FERRY_E_APPLY_TIMEOUT', `images still copying after --timeout ${o.timeout}: ${line}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

export function registerImageCommands(program: Command, io: CliIo): void {
  const images = program.command('images').description("images on their way into each bank's own registry");
  images
    .command('status')
    .description("per image: state (queued, copying, verified, present, failed), bytes done of total, speed, as the agents report them")
    .option('--agent <id>', 'one agent')
    .option('--rollout <id>', "every agent of a rollout, the rollout's release only")
    .option('--watch', 'follow until every image has landed (exit 0) or one failed (exit 1); progress on stderr')
    .option('--interval <duration>', 'how often --watch asks', '1s')
    .option('--timeout <duration>', 'give up watching after this long (exit 1)')
    .option('--json', 'print the API answer as JSON')
    .action(async (o: { agent?: string; rollout?: string; watch?: boolean; interval: string; timeout?: string; json?: boolean }, cmd: Command) => {
      if (!o.agent === !o.rollout) throw new FerryError('FERRY_E_VALIDATION', 'give exactly one of --agent <id> or --rollout <id>');
      const path = o.agent ? `/v1/agents/${enc(o.agent)}/images` : `/v1/rollouts/${enc(o.rollout!)}/images`;
      const v = await withHub(io.target(cmd), (h) => (o.watch ? watch(h, path, o, io) : h.get<ImagesView>(path)));
      if (o.json) io.printJson(v);
      else {
        io.out(imagesTable(v));
        io.note(imagesSummary(v));
      }
      if (o.watch && v.agents.some((a) => a.images.some((i) => i.state === 'failed'))) process.exitCode = 1;
    });
}

// bench/peer-commit: a benchmark of this build against the same benchmark of
// another build (the previous commit, checked out and built elsewhere),
// alternating rounds in one run so both see the same machine. Each side runs
// its own bench (its own seeding, its own hub, its own schema), so builds
// with different stores compare fairly. Prints per-figure medians and the
// ratio this/peer.
//
//   git worktree add /tmp/ferry-prev <commit> && (cd /tmp/ferry-prev && npm ci && npm run build)
//   node dist/bench/peer-commit.js --peer /tmp/ferry-prev --bench rollout [--rounds 2] -- --agents 10000
//   node dist/bench/peer-commit.js --peer /tmp/ferry-prev --bench connections -- --agents 10000 --clients lean
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { fmt, table } from './lib/report.js';

const { values, positionals } = parseArgs({
  options: { peer: { type: 'string' }, bench: { type: 'string', default: 'rollout' }, rounds: { type: 'string', default: '2' } },
  allowPositionals: true,
});
if (!values.peer) throw new Error('--peer DIR: a checkout of the other commit, built (npm ci && npm run build)');
const bench = String(values.bench);
if (bench !== 'rollout' && bench !== 'connections') throw new Error('--bench rollout | connections');
const rounds = Math.max(1, Number(values.rounds) || 2);
const here = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const sides = [
  { name: 'peer', root: resolve(values.peer) },
  { name: 'this', root: here },
];

const say = (line: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`);

function newestOut(root: string, after: number): unknown {
  const dir = join(root, 'bench', 'out');
  const files = readdirSync(dir)
    .filter((f) => f.startsWith(`${bench}-`) && f.endsWith('.json'))
    .map((f) => ({ f, at: statSync(join(dir, f)).mtimeMs }))
    .filter((x) => x.at >= after)
    .sort((a, b) => b.at - a.at);
  if (!files[0]) throw new Error(`${root}: the bench wrote no figures`);
  return JSON.parse(readFileSync(join(dir, files[0].f), 'utf8'));
}

function run(root: string): Promise<unknown> {
  const started = Date.now();
  return new Promise((ok, fail) => {
    const c = spawn(process.execPath, [join(root, 'dist', 'bench', `${bench}.js`), ...positionals], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
    c.on('exit', (code) => (code === 0 ? ok(newestOut(root, started)) : fail(new Error(`${root}: bench exited ${code}`))));
  });
}

type Figures = Record<string, number>;

/** The figures compared, per scenario in the bench's JSON. */
function figures(doc: unknown): Figures {
  const out: Figures = {};
  const results = (doc as { results: Record<string, unknown>[] }).results;
  for (const r of results) {
    if (bench === 'rollout') {
      const x = r as { agents: number; setup?: string; deliveryP50: number; deliveryP99: number; succeededMs: number; appliedAll: number; hubCpuMs: number };
      const k = `${x.agents}${x.setup ? ` ${x.setup}` : ''}`;
      out[`${k}: delivery p50 ms`] = x.deliveryP50;
      out[`${k}: delivery p99 ms`] = x.deliveryP99;
      out[`${k}: succeeded after last applied, ms`] = x.succeededMs - x.appliedAll;
      out[`${k}: hub CPU during rollout, ms`] = x.hubCpuMs;
    } else {
      const x = r as { agents: number; client: string; connect: { perSecond: number; p99Ms: number }; memory: { perAgentKb: number }; restart?: { listenToAllMs: number } };
      const k = `${x.client} ${x.agents}`;
      out[`${k}: handshakes/s`] = x.connect.perSecond;
      out[`${k}: connect p99 ms`] = x.connect.p99Ms;
      out[`${k}: hub RSS per agent KiB`] = x.memory.perAgentKb;
      if (x.restart) out[`${k}: restart all back ms`] = x.restart.listenToAllMs;
    }
  }
  return out;
}

const median = (xs: number[]) => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)]! : NaN;
};

const got: Record<string, Figures[]> = { peer: [], this: [] };
for (let i = 0; i < rounds; i++) {
  // Alternate who goes first, so a machine warming up or cooling down hits both alike.
  for (const side of i % 2 === 0 ? sides : [...sides].reverse()) {
    say(`round ${i + 1}: ${side.name} (${side.root})`);
    got[side.name]!.push(figures(await run(side.root)));
  }
}
const names = Object.keys(got.this![0] ?? {});
const rows = [['figure', 'peer (median)', 'this (median)', 'this/peer']];
const summary: Record<string, { peer: number; this: number; ratio: number }> = {};
for (const n of names) {
  const p = median(got.peer!.map((f) => f[n] ?? NaN));
  const t = median(got.this!.map((f) => f[n] ?? NaN));
  summary[n] = { peer: p, this: t, ratio: t / p };
  rows.push([n, fmt(p, 1), fmt(t, 1), `${fmt(t / p, 2)}x`]);
}
process.stdout.write(`bench/peer-commit ${bench}: ${rounds} rounds each, alternating; peer ${values.peer}; args ${positionals.join(' ')}\n\n${table(rows)}\n`);
mkdirSync(join(here, 'bench', 'out'), { recursive: true });
writeFileSync(join(here, 'bench', 'out', `peer-commit-${bench}-${Date.now()}.json`), JSON.stringify({ peer: values.peer, args: positionals, rounds: got, summary }, null, 2));

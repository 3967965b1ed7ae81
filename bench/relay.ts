// bench/relay: the agent's relay (agent/relay) against `skopeo copy --all`
// (Debian's skopeo, the peer), registry to registry, on the same images and
// the same registries (Debian's docker-registry, started here): throughput of
// a ~500 MB, 10-layer image; bytes moved for the next version with 90% of its
// layers shared; bytes moved again after kill -9 mid-layer, fetching and
// uploading. See bench/README.md.
//
//   npm run bench:relay [-- --mb 500 --layers 10 --runs 3]
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { parseArgs } from 'node:util';
import { loadAgentConfig } from '../agent/config.js';
import { parsePolicy } from '../agent/policy.js';
import { Relay } from '../agent/relay/relay.js';
import { relaySource } from '../agent/relay/source.js';
import { generateKeyPair } from '../shared/keys.js';
import { silentLogger } from '../shared/logger.js';
import { blobsOf, countingProxy, layeredImage, noise, pushTo, startRegistry } from '../test/helpers/registries.js';
import { releaseDoc, service } from '../test/helpers/signing.js';
import { wholeNumber } from './lib/args.js';

const MB = 1024 * 1024;
const CHUNK_KB = 8192;

/** The registry helpers clean up through a test context; here, at the end of the run. */
const cleanups: (() => unknown)[] = [];
const ctx = { after: (fn: () => unknown) => cleanups.push(fn), skip: () => undefined, diagnostic: () => undefined } as unknown as TestContext;

/** A temp dir removed at the end of the run. */
function tmp(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

function relayConfig(dir: string, bankUrl: string, vendorHost: string, chunkKb = CHUNK_KB, parallel = 4) {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'agent.yaml');
  writeFileSync(file, `bankRegistry:\n  primary:\n    url: ${bankUrl}\n  prefix: vendor/acme\n  source: direct\n  chunkKb: ${chunkKb}\n  parallel: ${parallel}\n`);
  const cfg = loadAgentConfig({ stateDir: join(dir, 'state'), configFile: file });
  const sources = relaySource({ cfg, policy: parsePolicy(`directRegistries: ["${vendorHost}"]\n`, 'bench'), hubUrl: 'http://127.0.0.1:1', agentId: 'agt_bench', key: generateKeyPair() });
  const relay = new Relay({ bank: cfg.bankRegistry!, stateDir: cfg.stateDir, log: silentLogger(), source: sources.source });
  return { relay, close: () => (relay.close(), sources.close()) };
}

/** skopeo copy --all, asynchronously: the counting proxy lives in this process and must keep forwarding. */
function skopeo(src: string, dest: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = spawn('skopeo', ['copy', '--all', '--quiet', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${src}`, `docker://${dest}`], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    c.stderr.on('data', (d: Buffer) => (err += d));
    c.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`skopeo exited ${code}: ${err}`))));
  });
}

const rel = (version: string, ref: string) => releaseDoc('bench', version, {}, { app: service(ref) });

/** Child mode: one relay copy in its own process, so the parent can kill -9 it. */
async function child(): Promise<void> {
  const [dir, bankUrl, vendorHost, ref, chunkKb, parallel] = process.argv.slice(3) as [string, string, string, string, string, string];
  const r = relayConfig(dir, bankUrl, vendorHost, Number(chunkKb), Number(parallel));
  await r.relay.ensure([rel('9.0.0', ref)]);
  r.close();
}

function runChild(args: string[], env: NodeJS.ProcessEnv = {}): { done: Promise<string>; kill: () => void } {
  const c = spawn(process.execPath, [process.argv[1]!, '--child', ...args], { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, ...env } });
  return { done: new Promise((r) => c.on('exit', (code, sig) => r(sig ?? `exit ${code}`))), kill: () => c.kill('SIGKILL') };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { mb: { type: 'string', default: '500' }, layers: { type: 'string', default: '10' }, runs: { type: 'string', default: '3' } } });
  const totalMb = wholeNumber(values, 'mb');
  const layers = wholeNumber(values, 'layers');
  const runs = wholeNumber(values, 'runs');
  if (spawnSync('skopeo', ['--version']).error) throw new Error('skopeo is not installed: apt-get install -y skopeo (Debian\'s, the peer)');
  const skopeoVersion = spawnSync('skopeo', ['--version'], { encoding: 'utf8' }).stdout.trim();

  const vendor = await startRegistry(ctx, { name: 'bench-vendor' });
  const per = Math.floor((totalMb * MB) / layers);
  process.stderr.write(`building ${layers} layers of ${(per / MB).toFixed(0)} MiB (v1) and v2 with the last layer new...\n`);
  const shared = Array.from({ length: layers - 1 }, (_, i) => ({ [`/data/l${i}`]: noise(per) }));
  const v1 = await layeredImage('ferry-bench/relay', 'v1', [...shared, { '/data/last': noise(per) }]);
  const v2 = await layeredImage('ferry-bench/relay', 'v2', [...shared, { '/data/last2': noise(per) }]);
  const ref1 = await pushTo(vendor, v1, 'bench/app', 'v1');
  const ref2 = await pushTo(vendor, v2, 'bench/app', 'v2');
  const bytes = async (ref: string) => (await blobsOf(vendor, 'bench/app', ref.slice(ref.indexOf('@') + 1))).reduce((n, b) => n + b.size, 0);
  const [full1, full2] = [await bytes(ref1), await bytes(ref2)];

  // 1. Throughput: each run copies v1 into a fresh bank registry, relay and skopeo alternating.
  const rows: { tool: string; seconds: number; mbps: number }[] = [];
  for (let i = 0; i < runs; i++) {
    for (const tool of ['relay', 'skopeo'] as const) {
      const bank = await startRegistry(ctx, { name: `bench-bank-${tool}-${i}` });
      const t0 = process.hrtime.bigint();
      if (tool === 'relay') {
        const r = relayConfig(tmp('ferry-bench-relay-'), bank.url, vendor.host);
        await r.relay.ensure([rel('1.0.0', ref1)]);
        r.close();
      } else {
        await skopeo(ref1, `${bank.host}/vendor/acme/bench/app:bench-1.0.0`);
      }
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      rows.push({ tool, seconds, mbps: full1 / MB / seconds });
      process.stderr.write(`run ${i + 1} ${tool}: ${seconds.toFixed(2)} s, ${(full1 / MB / seconds).toFixed(1)} MiB/s\n`);
      await bank.stop();
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const relayMbps = median(rows.filter((r) => r.tool === 'relay').map((r) => r.mbps));
  const skopeoMbps = median(rows.filter((r) => r.tool === 'skopeo').map((r) => r.mbps));

  // 2. The next version, 90% of its layers shared: bytes read from the source, both tools, counted by a TCP proxy.
  const moved: Record<string, number> = {};
  for (const tool of ['relay', 'skopeo'] as const) {
    const bank = await startRegistry(ctx, { name: `bench-next-${tool}` });
    const wire = await countingProxy(ctx, vendor.port);
    const via = (ref: string) => ref.replace(vendor.host, wire.host);
    const copy = async (ref: string, version: string) => {
      if (tool === 'relay') {
        const r = relayConfig(tmp('ferry-bench-next-'), bank.url, wire.host);
        await r.relay.ensure([rel(version, via(ref))]);
        r.close();
      } else {
        await skopeo(via(ref), `${bank.host}/vendor/acme/bench/app:bench-${version}`);
      }
    };
    await copy(ref1, '1.0.0');
    wire.reset();
    await copy(ref2, '2.0.0');
    moved[tool] = wire.down;
    await bank.stop();
  }

  // 3. kill -9 mid-layer. (a) While fetching, between two upload chunks (the bank quiet for 5 ms, mid-chunk of the
  // source); (b) right after an upload chunk was stored (FERRY_TEST_CRASH_AT=relay-chunk:3); then a clean finish.
  // (c) Separately, at an arbitrary moment of an upload (mid-chunk): what Debian's registry costs when it voids
  // the cut session.
  const kill = async (mode: 'between' | 'mid-chunk') => {
    const bank = await startRegistry(ctx, { name: `bench-kill-${mode}` });
    const src = await countingProxy(ctx, vendor.port);
    const dst = await countingProxy(ctx, bank.port);
    const dir = tmp('ferry-bench-kill-');
    // One blob at a time: with several uploads in flight, any kill cuts some of them mid-chunk.
    const args = [dir, `http://${dst.host}`, src.host, ref1.replace(vendor.host, src.host), String(CHUNK_KB), '1'];
    src.downLimit = 50 * MB;
    const chunk = CHUNK_KB * 1024;
    const first = runChild(args);
    let killed = false;
    const trigger = (n: number) => {
      if (killed || n < full1 / 2) return;
      if (mode === 'between' && !(n % chunk > chunk * 0.2 && n % chunk < chunk * 0.8 && Date.now() - dst.lastUpAt > 5)) return;
      if (mode === 'mid-chunk' && Date.now() - dst.lastUpAt > 1) return;
      killed = true;
      first.kill();
    };
    src.onDown = trigger;
    dst.onUp = () => trigger(src.down);
    const exits = [await first.done];
    src.downLimit = null;
    if (mode === 'between') exits.push(await runChild(args, { FERRY_TEST_CRASH_AT: 'relay-chunk:3' }).done);
    exits.push(await runChild(args).done);
    await bank.stop();
    return { exits, fetchedAgain: src.down - full1, sentAgain: dst.up - full1 };
  };
  const between = await kill('between');
  const midChunk = await kill('mid-chunk');
  const result = {
    machine: { cpus: (await import('node:os')).cpus().length, node: process.version, skopeo: skopeoVersion },
    image: { layers, bytes: full1 },
    throughput: { runs: rows, relayMiBps: relayMbps, skopeoMiBps: skopeoMbps, ratio: relayMbps / skopeoMbps },
    nextVersion: { bytes: full2, relayMoved: moved.relay, skopeoMoved: moved.skopeo, relayShare: moved.relay! / full2 },
    killResume: { chunkBytes: CHUNK_KB * 1024, between, midChunk },
  };
  mkdirSync('bench/out', { recursive: true });
  writeFileSync(join('bench/out', `relay-${Date.now()}.json`), JSON.stringify(result, null, 2));
  process.stdout.write(
    [
      `image: ${layers} layers, ${(full1 / 1e6).toFixed(0)} MB; ${skopeoVersion}`,
      `throughput (median of ${runs}): relay ${relayMbps.toFixed(1)} MiB/s, skopeo copy --all ${skopeoMbps.toFixed(1)} MiB/s: ${(relayMbps / skopeoMbps).toFixed(2)}x`,
      `next version (90% shared): relay moved ${(moved.relay! / 1e6).toFixed(1)} MB = ${((100 * moved.relay!) / full2).toFixed(1)}% of ${(full2 / 1e6).toFixed(0)} MB; skopeo moved ${(moved.skopeo! / 1e6).toFixed(1)} MB`,
      `kill -9 between upload chunks (${between.exits.join(', ')}): fetched again ${between.fetchedAgain} bytes, sent again ${between.sentAgain} bytes (chunk ${CHUNK_KB * 1024})`,
      `kill -9 mid upload chunk (${midChunk.exits.join(', ')}): fetched again ${midChunk.fetchedAgain} bytes, sent again ${midChunk.sentAgain} bytes (the registry voids a cut session)`,
    ].join('\n') + '\n',
  );
}

if (process.argv[2] === '--child') await child();
else {
  try {
    await main();
  } finally {
    for (const fn of cleanups.reverse()) await fn();
  }
}

// One client worker process: drives a slice of the simulated agents and
// reports to the orchestrator over IPC (see messages.ts). Several workers
// keep each process well under the per-process descriptor limit (each agent
// holds up to two sockets while it connects: challenge request and
// WebSocket).
import { setMaxListeners } from 'node:events';
import { readFileSync } from 'node:fs';
import { hostFacts } from '../../agent/connection.js';
import { createLogger } from '../../shared/logger.js';
import { PROTOCOL_VERSION, type Hello } from '../../shared/protocol.js';
import { VERSION } from '../../shared/version.js';
import { failureKey, simAgent, type SimAgent } from './clients.js';
import type { FromWorker, ToWorker, WorkerConfig } from './messages.js';
import { secretKeyOf, type BenchAgentKey } from './seed.js';

const cfg = JSON.parse(process.argv[2] ?? '{}') as WorkerConfig;
const keys = (JSON.parse(readFileSync(cfg.keysFile, 'utf8')) as BenchAgentKey[]).slice(cfg.from, cfg.to);
const n = keys.length;
const send = (m: FromWorker) => process.send!(m);

const failures: Record<string, number> = {};
const countFailure = (key: string) => (failures[key] = (failures[key] ?? 0) + 1);

// Connection logs failed attempts at warn; count them by code and errno.
const log = createLogger({
  name: 'bench-agent',
  level: 'warn',
  destination: {
    write(line: string) {
      if (!line.includes('connection attempt failed')) return;
      const fields = JSON.parse(line) as { code?: string; detail?: string };
      countFailure(failureKey(fields.code ?? '?', fields.detail));
    },
  },
});

const hello: Hello = {
  type: 'hello',
  protocol: PROTOCOL_VERSION,
  agentVersion: VERSION,
  host: hostFacts(),
  engine: { error: { code: 'FERRY_E_ENGINE_UNREACHABLE', message: 'bench agent: no engine' } },
};

const startedAt = new Array<number>(n).fill(NaN);
const welcomedAt = new Array<number>(n).fill(NaN);
const backAt = new Array<number>(n).fill(NaN);
let welcomed = 0;
let back = 0;
let marked = false;
let disconnects = 0;
let inFlight = 0;
let next = 0;
const abort = new AbortController();
// Every agent (and its in-flight requests) listens on this one signal.
setMaxListeners(0, abort.signal);
const runs: Promise<void>[] = [];

const agents: SimAgent[] = keys.map((k, i) =>
  simAgent(cfg.client, k, { publicKey: new Uint8Array(Buffer.from(k.publicKey, 'base64')), secretKey: secretKeyOf(k) }, { hubUrl: cfg.hubUrl, sourceAddress: cfg.sourceAddress, hello, log }, {
    welcome: () => onWelcome(i),
    disconnected: () => {
      if (marked) disconnects++;
    },
    failure: countFailure,
  }),
);

function onWelcome(i: number): void {
  const now = Date.now();
  if (Number.isNaN(welcomedAt[i])) {
    welcomedAt[i] = now;
    welcomed++;
    inFlight--;
    launch();
    if (welcomed === n) send({ type: 'connected', startedAt, welcomedAt, failures: { ...failures } });
  } else if (marked && Number.isNaN(backAt[i])) {
    backAt[i] = now;
    back++;
    if (back === n) send({ type: 'back', welcomedAt: backAt, disconnects, failures: { ...failures } });
  }
}

/** Starts agents while fewer than `concurrency` are on their first attempt. */
function launch(): void {
  while (inFlight < cfg.concurrency && next < n) {
    const i = next++;
    inFlight++;
    startedAt[i] = Date.now();
    runs.push(
      agents[i]!.run(abort.signal).catch((err: Error) => {
        countFailure(`stopped: ${(err as { code?: string }).code ?? err.message}`);
      }),
    );
  }
}

const progress = setInterval(() => send({ type: 'progress', welcomed, back, failures: { ...failures } }), 1000);

process.on('message', (m: ToWorker) => {
  switch (m.type) {
    case 'start':
      launch();
      break;
    case 'mark':
      marked = true;
      send({ type: 'marked' });
      break;
    case 'stop':
      void stop();
      break;
  }
});
process.on('disconnect', () => void stop());

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  clearInterval(progress);
  abort.abort();
  await Promise.race([Promise.allSettled(runs), new Promise((r) => setTimeout(r, 5000))]);
  await Promise.race([Promise.allSettled(agents.map((a) => a.transport.close())), new Promise((r) => setTimeout(r, 3000))]);
  const cpu = process.cpuUsage();
  const msg: FromWorker = { type: 'stopped', failures, cpuMs: (cpu.user + cpu.system) / 1000, maxRssKb: process.resourceUsage().maxRSS };
  if (process.connected) process.send!(msg, () => process.exit(0));
  else process.exit(0);
}

send({ type: 'ready', agents: n });

// bench/reconcile b, run in a child process with the agent's node flags
// (agent/node-flags.ts: --jitless): the no-op pass as the installed agent
// would run it. Reads {agentId, target, passes, stateDir} as JSON on argv[2],
// prints {times} (ms per dryRun) as JSON.
import { performance } from 'node:perf_hooks';
import { DockerEngine } from '../../agent/engine/docker.js';
import { Reconciler, type Target } from '../../agent/reconcile/reconciler.js';
import { silentLogger } from '../../shared/logger.js';

const { agentId, target, passes, stateDir } = JSON.parse(process.argv[2]!) as { agentId: string; target: Target; passes: number; stateDir: string };
const rec = new Reconciler({ engine: new DockerEngine(), agentId, stateDir, log: silentLogger() });
const times: number[] = [];
for (let i = 0; i < passes + 3; i++) {
  const t0 = performance.now();
  const p = await rec.dryRun([target]);
  const took = performance.now() - t0;
  if (p.steps.length || p.waiting.length) throw new Error(`no-op plan not empty: ${JSON.stringify(p).slice(0, 500)}`);
  if (i >= 3) times.push(took); // 3 warm-up passes, as in the parent
}
rec.close();
process.stdout.write(JSON.stringify({ times }) + '\n');

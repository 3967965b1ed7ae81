// `ferry release create --build --push-to REGISTRY/PREFIX`: build once, run
// everywhere. Each service's build context is built with the local Docker
// engine (the `docker` CLI, as a developer would), pushed to
// REGISTRY/PREFIX/<service>:<version>, and pinned by the digest the registry
// reported for that push.
import { spawn } from 'node:child_process';
import { FerryError } from '../shared/errors.js';
import type { BuildSpec } from './compose.js';
import { parseImageRef } from './image-ref.js';

export interface BuildOptions {
  /** `REGISTRY/PREFIX`, e.g. registry.vendor.example/payments. */
  pushTo: string;
  version: string;
  /** Progress lines (docker's output goes to stderr as it comes). */
  note(text: string): void;
  /** The docker CLI; default `docker` (FERRY_DOCKER_CLI). */
  docker?: string;
}

/** Checks `--push-to` before anything is built. */
export function checkPushTo(pushTo: string): void {
  try {
    const ref = parseImageRef(`${pushTo}/x:1`);
    if (ref.registry === 'docker.io' && !pushTo.includes('.') && !pushTo.includes(':')) throw new Error('no registry host');
  } catch {
    throw new FerryError('FERRY_E_VALIDATION', `--push-to ${JSON.stringify(pushTo)}: give REGISTRY/PREFIX, e.g. registry.example.com/payments or 127.0.0.1:5000/payments`);
  }
}

/** Builds and pushes each service; returns service -> pinned `repo@sha256:…`. */
export async function buildAndPush(builds: Readonly<Record<string, BuildSpec>>, o: BuildOptions): Promise<Record<string, string>> {
  const docker = o.docker ?? process.env.FERRY_DOCKER_CLI ?? 'docker';
  const out: Record<string, string> = {};
  for (const [service, b] of Object.entries(builds)) {
    const repo = `${o.pushTo.replace(/\/+$/, '')}/${service}`;
    const tag = `${repo}:${o.version.replace(/\+/g, '_')}`;
    o.note(`Building ${service} from ${b.context} (${b.at}) as ${tag}...`);
    const args = ['build', '-t', tag, ...(b.dockerfile ? ['-f', b.dockerfile.startsWith('/') ? b.dockerfile : `${b.context}/${b.dockerfile}`] : [])];
    for (const [k, v] of Object.entries(b.args)) args.push('--build-arg', `${k}=${v}`);
    for (const [k, v] of Object.entries(b.labels)) args.push('--label', `${k}=${v}`);
    if (b.target) args.push('--target', b.target);
    if (b.noCache) args.push('--no-cache');
    if (b.pull) args.push('--pull');
    await run(docker, [...args, b.context], `build of ${service} (${b.at})`);
    o.note(`Pushing ${tag}...`);
    const pushed = await run(docker, ['push', tag], `push of ${tag}`);
    const digest = /digest: (sha256:[0-9a-f]{64})/.exec(pushed)?.[1];
    if (!digest) throw new FerryError('FERRY_E_BUILD_FAILED', `docker push ${tag} reported no digest`);
    out[service] = `${repo}@${digest}`;
  }
  return out;
}

/** Runs docker, its output passed through to stderr; resolves with stdout. */
function run(cmd: string, args: string[], what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DOCKER_BUILDKIT: process.env.DOCKER_BUILDKIT ?? '0' } });
    let stdout = '';
    let tail = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d;
      process.stderr.write(d);
    });
    child.stderr.on('data', (d: Buffer) => {
      tail = (tail + d).slice(-2000);
      process.stderr.write(d);
    });
    child.on('error', (err) => reject(new FerryError('FERRY_E_BUILD_FAILED', `${what}: cannot run ${cmd}: ${(err as NodeJS.ErrnoException).code ?? err.message}`)));
    child.on('close', (code) => (code === 0 ? resolve(stdout) : reject(new FerryError('FERRY_E_BUILD_FAILED', `${what}: ${cmd} exited ${code}: ${tail.trim().split('\n').pop() ?? ''}`))));
  });
}

// Probes: one run of one check against what the engine runs now. A host in a
// check's URL or address that names a service of the check's stack is that
// service's running containers, reached at their addresses on the stack's
// networks (the bank's own network: nothing leaves the host); any other host
// is reached as it is, from the agent's host. Every replica is probed and
// each must pass. A probe never takes longer than the check's timeout.
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import { asFerryError } from '../../shared/errors.js';
import type { Check } from '../../shared/release.js';
import type { Engine } from '../engine/engine.js';
import { LABEL, agentPrefix, isJob, type ObservedContainer } from '../reconcile/model.js';
import type { ProbeResult } from './machine.js';

/** Bytes of a response body read for a body match. */
export const BODY_LIMIT = 64 * 1024;

export interface ProbeContext {
  agentId: string;
  stack: string;
  /** Everything the agent owns, as observed lately. */
  containers: readonly ObservedContainer[];
  engine: Pick<Engine, 'probe'>;
}

interface Endpoint {
  /** What the error names: `web#1 (172.18.0.3)`, or the host as written. */
  label: string;
  host: string;
}

/** The containers a service name stands for, or null when `host` is not a service of the stack. */
function serviceContainers(ctx: ProbeContext, service: string): ObservedContainer[] | null {
  const mine = ctx.containers.filter((c) => c.labels[LABEL.stack] === ctx.stack && c.labels[LABEL.service] === service && !isJob(c));
  return mine.length || ctx.containers.some((c) => c.labels[LABEL.stack] === ctx.stack && c.labels[LABEL.service] === service) ? mine : null;
}

/** Where to connect for `host`: each replica's address on a stack network, or the host itself. */
export function endpoints(ctx: ProbeContext, host: string): Endpoint[] | string {
  const cs = serviceContainers(ctx, host);
  if (!cs) return [{ label: host, host }];
  const running = cs.filter((c) => c.status === 'running').sort((a, b) => Number(a.labels[LABEL.replica]) - Number(b.labels[LABEL.replica]));
  if (!running.length) return `${host} has no running container`;
  const prefix = `${agentPrefix(ctx.agentId)}_${ctx.stack}_`;
  const out: Endpoint[] = [];
  for (const c of running) {
    const label = `${host}#${c.labels[LABEL.replica] ?? '?'}`;
    const addrs = Object.entries(c.addresses ?? {});
    const ip = (addrs.find(([n]) => n.startsWith(prefix)) ?? addrs[0])?.[1];
    if (!ip) return `${label} has no address on the stack's networks`;
    out.push({ label: `${label} (${ip})`, host: ip });
  }
  return out;
}

export async function probe(check: Check, ctx: ProbeContext): Promise<ProbeResult> {
  try {
    if (check.http) return await httpProbe(check.http, check.timeoutMs, ctx);
    if (check.tcp) return await tcpProbe(check.tcp.address, check.timeoutMs, ctx);
    if (check.command) return await commandProbe(check.command, check.timeoutMs, ctx);
    return { ok: false, error: 'the check has no probe' };
  } catch (err) {
    return { ok: false, error: asFerryError(err).message.slice(0, 512) };
  }
}

async function each(targets: Endpoint[] | string, fn: (e: Endpoint) => Promise<string | null>): Promise<ProbeResult> {
  if (typeof targets === 'string') return { ok: false, error: targets };
  const errors = (await Promise.all(targets.map(async (t) => {
    const e = await fn(t);
    return e === null ? null : targets.length > 1 || t.label !== t.host ? `${t.label}: ${e}` : e;
  }))).filter((e): e is string => e !== null);
  return errors.length ? { ok: false, error: errors.join('; ').slice(0, 512) } : { ok: true };
}

function httpProbe(h: NonNullable<Check['http']>, timeoutMs: number, ctx: ProbeContext): Promise<ProbeResult> {
  const url = new URL(h.url);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const re = h.body !== undefined ? new RegExp(h.body) : null;
  return each(endpoints(ctx, host), (e) => new Promise<string | null>((resolve) => {
    const started = Date.now();
    const secure = url.protocol === 'https:';
    const req = (secure ? httpsRequest : httpRequest)(
      {
        host: e.host,
        port: url.port || (secure ? 443 : 80),
        path: `${url.pathname}${url.search}`,
        method: h.method,
        headers: { host: url.host, 'user-agent': 'ferry-agent-check', accept: '*/*', connection: 'close' },
        ...(secure && { servername: host }),
        timeout: timeoutMs,
        agent: false,
      },
      (res) => {
        const status = res.statusCode ?? 0;
        if (!h.status.includes(status)) {
          res.destroy();
          return resolve(`got ${status}, expected ${h.status.join(' or ')}`);
        }
        if (!re || h.method === 'HEAD') {
          res.destroy();
          return resolve(null);
        }
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          body += d;
          if (body.length >= BODY_LIMIT) res.destroy();
        });
        const done = () => resolve(re.test(body.slice(0, BODY_LIMIT)) ? null : `failed to find a match for /${h.body}/ in the response body`);
        res.on('end', done);
        res.on('close', () => (res.complete ? undefined : done()));
        res.on('error', done);
      },
    );
    const timer = setTimeout(() => req.destroy(new Error(`no answer in ${timeoutMs} ms`)), Math.max(1, timeoutMs - (Date.now() - started)));
    req.on('timeout', () => req.destroy(new Error(`no answer in ${timeoutMs} ms`)));
    req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ? `${err.code} ${err.message.replace(/^connect \w+ /, '')}` : err.message));
    req.on('close', () => clearTimeout(timer));
    req.end();
  }));
}

function tcpProbe(address: string, timeoutMs: number, ctx: ProbeContext): Promise<ProbeResult> {
  const i = address.lastIndexOf(':');
  const host = address.slice(0, i);
  const port = Number(address.slice(i + 1));
  return each(endpoints(ctx, host), (e) => new Promise<string | null>((resolve) => {
    const sock = connect({ host: e.host, port, timeout: timeoutMs });
    const timer = setTimeout(() => sock.destroy(new Error(`no connection in ${timeoutMs} ms`)), timeoutMs);
    sock.once('connect', () => {
      sock.destroy();
      resolve(null);
    });
    sock.once('timeout', () => sock.destroy(new Error(`no connection in ${timeoutMs} ms`)));
    sock.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ? `${err.code} ${host}:${port}` : err.message));
    sock.once('close', () => clearTimeout(timer));
  }));
}

async function commandProbe(c: NonNullable<Check['command']>, timeoutMs: number, ctx: ProbeContext): Promise<ProbeResult> {
  const cs = serviceContainers(ctx, c.service) ?? [];
  const running = cs.filter((x) => x.status === 'running');
  if (!running.length) return { ok: false, error: `${c.service} has no running container` };
  return each(running.map((x) => ({ label: `${c.service}#${x.labels[LABEL.replica] ?? '?'}`, host: x.id })), async (e) => {
    const r = await ctx.engine.probe(e.host, c.run, timeoutMs).catch((err: unknown) => ({ exitCode: -1, output: asFerryError(err).message }));
    if (r.exitCode === 0) return null;
    const last = r.output.trim().split('\n').filter(Boolean).at(-1) ?? '';
    return `${c.run[0]} exited ${r.exitCode}${last ? `: ${last.slice(0, 200)}` : ''}`;
  });
}

/** What the hub shows as a check's target. */
export function describeCheck(check: Check): { kind: 'http' | 'tcp' | 'command'; target: string } {
  if (check.http) return { kind: 'http', target: `${check.http.method} ${check.http.url}`.slice(0, 512) };
  if (check.tcp) return { kind: 'tcp', target: check.tcp.address };
  return { kind: 'command', target: `${check.command!.service}: ${check.command!.run.join(' ')}`.slice(0, 512) };
}

// Downloads an agent bundle's archive from the hub (the agent's only
// outbound destination): GET {hub}/agent/v1/bundles/<archive digest>, each
// request signed with the agent's key like the registry origin's. The bytes
// go to a file next to the versions; an interrupted download resumes from
// that file's length with a Range request. The whole file must have the
// signed digest and size, or it is deleted (FERRY_E_BUNDLE_DIGEST).
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, rmSync, statSync } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { BUNDLE_PATH, hostOf, signRequest } from '../../shared/auth.js';
import type { AgentBundle } from '../../shared/agent-bundle.js';
import { FerryError, asFerryError } from '../../shared/errors.js';
import type { KeyPair } from '../../shared/keys.js';
import type { Logger } from '../../shared/logger.js';
import { backoffDelay, sleep } from '../../shared/sleep.js';
import type { ProxySettings } from '../proxy.js';
import { Retryable, drain, endpoint, header, readBody } from '../relay/http.js';
import { refusal } from '../connection.js';

export interface FetchOptions {
  hubUrl: string;
  agentId: string;
  key: KeyPair;
  proxy: ProxySettings;
  caFile?: string | undefined;
  statement: AgentBundle;
  /** Where the archive is written (and resumed from). */
  file: string;
  log: Logger;
  signal: AbortSignal;
  attempts?: number;
  now?: () => number;
}

async function digestOf(file: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(file), h);
  return 'sha256:' + h.digest('hex');
}

/** Downloads (or finishes downloading) the archive into `o.file`; resolves once its digest is the signed one. */
export async function fetchBundle(o: FetchOptions): Promise<void> {
  const want = o.statement.archive;
  const url = new URL(`${BUNDLE_PATH}/${want.sha256}`, o.hubUrl);
  const ep = endpoint(new URL(o.hubUrl), { proxy: o.proxy, ...(o.caFile ? { caFile: o.caFile } : {}), idleTimeoutMs: 60_000, maxSockets: 1 });
  const now = o.now ?? Date.now;
  const attempts = o.attempts ?? 6;
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        await once(o, ep, url, now);
        break;
      } catch (err) {
        const retry = err instanceof Retryable;
        const e = retry ? err.error : asFerryError(err, 'FERRY_E_UPGRADE_FAILED');
        if (!retry || attempt + 1 >= attempts || o.signal.aborted) throw e;
        const have = existsSync(o.file) ? statSync(o.file).size : 0;
        o.log.warn({ code: e.code, detail: e.detail, attempt, have }, 'agent bundle download interrupted; resuming');
        await sleep(err.retryAfterMs ?? backoffDelay(attempt + 1, 500, 10_000), o.signal);
      }
    }
  } finally {
    ep.close();
  }
  const got = await digestOf(o.file);
  const size = statSync(o.file).size;
  if (got !== want.sha256 || size !== want.size) {
    rmSync(o.file, { force: true });
    throw new FerryError('FERRY_E_BUNDLE_DIGEST', `ferry-agent ${o.statement.version}: ${size} bytes ${got}, signed ${want.size} bytes ${want.sha256}`);
  }
}

async function once(o: FetchOptions, ep: ReturnType<typeof endpoint>, url: URL, now: () => number): Promise<void> {
  const have = existsSync(o.file) ? statSync(o.file).size : 0;
  if (have > o.statement.archive.size) rmSync(o.file, { force: true });
  const from = have > o.statement.archive.size ? 0 : have;
  if (from === o.statement.archive.size) return; // all there: the digest check decides
  const headers: Record<string, string> = signRequest({ method: 'GET', path: url.pathname + url.search, host: hostOf(o.hubUrl), agentId: o.agentId, time: now() }, o.key.secretKey);
  if (from > 0) headers.range = `bytes=${from}-`;
  let res;
  try {
    res = await ep.send({ method: 'GET', url, headers, signal: o.signal });
  } catch (err) {
    throw err instanceof Retryable ? err : new Retryable(asFerryError(err, 'FERRY_E_HUB_UNREACHABLE'));
  }
  const status = res.statusCode ?? 0;
  if (status === 429 || status >= 500) {
    await drain(res);
    throw new Retryable(new FerryError('FERRY_E_HUB_UNREACHABLE', `bundle download: HTTP ${status}`), Number(header(res.headers, 'retry-after') ?? 0) * 1000 || undefined);
  }
  if (status !== 200 && status !== 206) throw refusal(status, (await readBody(res, 64 * 1024)).toString('utf8'));
  const resumed = status === 206 && from > 0 && (header(res.headers, 'content-range') ?? '').startsWith(`bytes ${from}-`);
  o.log.info({ version: o.statement.version, from: resumed ? from : 0, size: o.statement.archive.size }, resumed ? 'resuming the agent bundle download' : 'downloading the agent bundle');
  try {
    await pipeline(res, createWriteStream(o.file, { flags: resumed ? 'a' : 'w', mode: 0o600 }), { signal: o.signal });
  } catch (err) {
    if (o.signal.aborted) throw err;
    throw new Retryable(asFerryError(err, 'FERRY_E_HUB_UNREACHABLE'));
  }
}

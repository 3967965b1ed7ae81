// Outgoing HTTP to chat platforms: JSON in and out, a timeout, and the
// platforms' ways of saying "slow down" turned into TransportError with the
// wait they asked for.
import { request } from 'undici';
import { TransportError } from '../types.js';

export const HTTP_TIMEOUT_MS = 10_000;

export interface JsonAnswer {
  status: number;
  body: Record<string, unknown>;
  headers: Record<string, string | string[] | undefined>;
}

export async function sendJson(url: string, body: unknown, opts: { method?: 'POST' | 'PUT' | 'GET'; headers?: Record<string, string>; timeoutMs?: number; signal?: AbortSignal } = {}): Promise<JsonAnswer> {
  const text = body === undefined ? undefined : JSON.stringify(body);
  let res;
  try {
    res = await request(url, {
      method: opts.method ?? 'POST',
      headers: { ...(text !== undefined ? { 'content-type': 'application/json; charset=utf-8' } : {}), ...(opts.headers ?? {}) },
      body: text,
      headersTimeout: opts.timeoutMs ?? HTTP_TIMEOUT_MS,
      bodyTimeout: opts.timeoutMs ?? HTTP_TIMEOUT_MS,
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
  } catch (err) {
    throw new TransportError(`${new URL(url).host}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, null);
  }
  const raw = await res.body.text();
  let parsed: Record<string, unknown> = {};
  try {
    const v = raw ? (JSON.parse(raw) as unknown) : {};
    parsed = typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : { value: v };
  } catch {
    parsed = { text: raw.slice(0, 500) };
  }
  if (res.statusCode === 429) {
    // Retry-After (seconds), or Matrix's retry_after_ms in the body.
    const after = Number(res.headers['retry-after']);
    const ms = typeof parsed.retry_after_ms === 'number' ? parsed.retry_after_ms : Number.isFinite(after) ? after * 1000 : 60_000;
    throw new TransportError(`${new URL(url).host}: 429 ${String(parsed.errcode ?? '')}`.trim(), ms);
  }
  if (res.statusCode >= 500) throw new TransportError(`${new URL(url).host}: HTTP ${res.statusCode}`, null);
  return { status: res.statusCode, body: parsed, headers: res.headers };
}

/** A 4xx that is not 429: the request is wrong and repeating it will not help. */
export function refusedBy(host: string, a: JsonAnswer, detail: string): TransportError {
  return new TransportError(`${host}: HTTP ${a.status} ${detail}`.slice(0, 500), null, a.status >= 400 && a.status < 500);
}

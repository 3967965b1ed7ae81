// Small HTTP helpers for the hub API: JSON bodies with a size cap, JSON
// replies, and errors rendered from the catalogue.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { z } from 'zod';
import { FerryError, asFerryError } from '../shared/errors.js';

export const MAX_BODY = 64 * 1024;

export async function readJson(req: IncomingMessage, limit = MAX_BODY): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit) throw new FerryError('FERRY_E_PAYLOAD_TOO_LARGE', `${declared} bytes, limit ${limit}`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new FerryError('FERRY_E_PAYLOAD_TOO_LARGE', `over ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return {};
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch (err) {
    throw new FerryError('FERRY_E_BAD_REQUEST', `body is not JSON: ${(err as Error).message}`);
  }
}

/** Validates a value against a schema, naming the first bad field. */
export function parseWith<S extends z.ZodType>(schema: S, value: unknown): z.infer<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const where = issue && issue.path.length ? issue.path.join('.') : 'body';
  throw new FerryError('FERRY_E_VALIDATION', `${where}: ${issue?.message ?? 'invalid'}`);
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}

export function sendError(res: ServerResponse, err: unknown): FerryError {
  const e = asFerryError(err);
  if (!res.headersSent) sendJson(res, e.status, { error: e.toJSON() });
  else res.destroy();
  return e;
}

// A chat platform's side of the wire, on loopback: records what the hub sends
// (robot webhooks, Slack's API and response_url, DingTalk's sessionWebhook)
// and answers as the platform would (or as a test says: errors, rate limits).
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';
import { request } from 'undici';

export interface Received {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingMessage['headers'];
  text: string;
  json: any;
  at: number;
}

export interface Platform {
  url: string;
  received: Received[];
  /** How the next requests are answered (default: 200 with the platform's "ok"). */
  answer: (r: Received) => { status: number; body: unknown; headers?: Record<string, string> };
  on(path: string): Received[];
}

export async function platformServer(t: TestContext, ok: unknown = { ok: true, errcode: 0, code: 0 }): Promise<Platform> {
  const received: Received[] = [];
  const p: Platform = {
    url: '',
    received,
    answer: () => ({ status: 200, body: ok }),
    on: (path) => received.filter((r) => r.path === path),
  };
  const server = createServer((req, res) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (text += c));
    req.on('end', () => {
      const u = new URL(req.url ?? '/', 'http://x');
      let json: unknown = null;
      try {
        json = text ? JSON.parse(text) : null;
      } catch {
        json = null;
      }
      const r: Received = { method: req.method ?? '', path: u.pathname, query: u.searchParams, headers: req.headers, text, json, at: Date.now() };
      received.push(r);
      const a = p.answer(r);
      res.writeHead(a.status, { 'content-type': 'application/json', ...(a.headers ?? {}) });
      res.end(JSON.stringify(a.body));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  p.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  return p;
}

/** POSTs a raw body to the hub as a platform would. */
export async function postRaw(url: string, body: string, headers: Record<string, string>): Promise<{ status: number; text: string; json: any }> {
  const res = await request(url, { method: 'POST', body, headers });
  const text = await res.body.text();
  let json: any = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = null;
  }
  return { status: res.statusCode, text, json };
}

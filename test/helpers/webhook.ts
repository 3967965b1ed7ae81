// A real HTTP server receiving the hub's alert webhook (hub/checks/webhook.ts),
// keeping each notice with its headers and the exact bytes received.
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';

export interface Notice {
  headers: IncomingHttpHeaders;
  raw: string;
  body: { id: number; event: string; state: string; key: string; summary: string; repeat: boolean; tenant: string | null; agentId: string | null; since: string; at: string; detail: Record<string, unknown> };
}

/** Listens on 127.0.0.1 (any free port); answers 503 to the first `refuse` POSTs, 204 after. */
export async function receiver(t: TestContext, refuse = 0): Promise<{ url: string; got: Notice[]; posts: () => number }> {
  const got: Notice[] = [];
  let posts = 0;
  const server = createServer((req, res) => {
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (raw += d));
    req.on('end', () => {
      posts++;
      if (posts <= refuse) return void res.writeHead(503).end('not now');
      got.push({ headers: req.headers, raw, body: JSON.parse(raw) as Notice['body'] });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/ferry-alerts`, got, posts: () => posts };
}

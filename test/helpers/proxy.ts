// A real HTTP CONNECT proxy on loopback, like a corporate egress proxy: it
// demands basic auth and records every tunnel it opens.
import { createServer, type Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';

export interface TestProxy {
  url: string;
  port: number;
  /** host:port of every tunnel requested, with whether auth passed. */
  tunnels: { target: string; authorised: boolean }[];
}

export async function startProxy(t: TestContext, creds?: { user: string; pass: string }): Promise<TestProxy> {
  const tunnels: TestProxy['tunnels'] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((_req, res) => {
    res.writeHead(405, { connection: 'close' }).end('this proxy only tunnels (CONNECT)\n');
  });
  server.on('connect', (req, client: Socket, head: Buffer) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => client.destroy());
    const expected = creds ? 'Basic ' + Buffer.from(`${creds.user}:${creds.pass}`).toString('base64') : undefined;
    const authorised = !expected || req.headers['proxy-authorization'] === expected;
    tunnels.push({ target: req.url ?? '', authorised });
    if (!authorised) {
      client.end('HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="corp"\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    const [host, port] = (req.url ?? '').split(':');
    const upstream = connect(Number(port), host!, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    sockets.add(upstream);
    upstream.on('close', () => (sockets.delete(upstream), client.destroy()));
    upstream.on('error', () => client.end('HTTP/1.1 502 Bad Gateway\r\n\r\n'));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  });
  const auth = creds ? `${encodeURIComponent(creds.user)}:${encodeURIComponent(creds.pass)}@` : '';
  return { url: `http://${auth}127.0.0.1:${port}`, port, tunnels };
}

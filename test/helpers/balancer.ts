// A small TCP load balancer for replica tests: each new connection goes to
// the next backend in turn that accepts it (as a TCP balancer with health
// checks would); existing connections are piped until either side closes.
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { TestContext } from 'node:test';

export interface Balancer {
  url: string;
  port: number;
  /** Connections sent to each backend so far. */
  counts: Map<number, number>;
  close(): Promise<void>;
}

export async function balancer(t: TestContext, backends: () => number[], listenPort = 0): Promise<Balancer> {
  let next = 0;
  const counts = new Map<number, number>();
  const sockets = new Set<Socket>();
  const tryBackend = (client: Socket, ports: number[], attempt: number) => {
    if (attempt >= ports.length) return void client.destroy();
    const port = ports[(next + attempt) % ports.length]!;
    const up = connect({ port, host: '127.0.0.1' });
    const failed = () => tryBackend(client, ports, attempt + 1);
    up.once('error', failed);
    up.once('connect', () => {
      up.off('error', failed);
      next = (next + attempt + 1) % Math.max(1, ports.length);
      counts.set(port, (counts.get(port) ?? 0) + 1);
      sockets.add(up);
      up.on('close', () => sockets.delete(up));
      client.pipe(up);
      up.pipe(client);
      up.on('error', () => client.destroy());
      client.on('error', () => up.destroy());
      up.on('close', () => client.destroy());
      client.on('close', () => up.destroy());
    });
  };
  const server: Server = createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    // A client that gives up (a reset) before a backend answers is simply gone.
    client.on('error', () => client.destroy());
    // Paused until piped to a backend (pipe resumes it): nothing it sent meanwhile is lost.
    client.pause();
    tryBackend(client, backends(), 0);
  });
  await new Promise<void>((r) => server.listen(listenPort, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  const close = () =>
    new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    });
  t.after(close);
  return { url: `http://127.0.0.1:${port}`, port, counts, close };
}

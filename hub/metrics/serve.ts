// Where Prometheus reads the hub's metrics: GET /metrics on the API (a token
// of a vendor-wide role with hub.read, e.g. a viewer's), or, with
// --metrics-listen, on a separate listener of its own with no credentials
// (for a monitoring network: bind it where only Prometheus reaches it).
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { FerryError } from '../../shared/errors.js';
import type { RouteDef } from '../http/app.js';
import type { HubMetrics } from './metrics.js';

type Route = <B, Q>(def: RouteDef<B, Q>) => void;

export function metricsRoutes(route: Route, metrics: HubMetrics): void {
  route({
    method: 'GET',
    url: '/metrics',
    access: { vendor: 'hub.read' },
    handler: async ({ reply }) => {
      const text = await metrics.text();
      void reply.type(metrics.contentType);
      return text;
    },
  });
}

/** A listener serving only GET /metrics. */
export async function serveMetrics(host: string, port: number, metrics: HubMetrics): Promise<{ server: Server; port: number; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics here\n');
      return;
    }
    metrics.text().then(
      (text) => res.writeHead(200, { 'content-type': metrics.contentType, 'cache-control': 'no-store' }).end(text),
      (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${(err as Error).message}\n`),
    );
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(new FerryError('FERRY_E_CONFIG_INVALID', `cannot listen on ${host}:${port} for --metrics-listen: ${err.code ?? err.message}`)));
    server.listen(port, host, () => resolve());
  });
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}

#!/usr/bin/env node
// ferry-hub: `init` creates the database and the first admin token; `serve`
// runs the hub until SIGINT/SIGTERM.
import { Command, Option } from 'commander';
import { runMain } from '../shared/exit.js';
import { createLogger } from '../shared/logger.js';
import { VERSION } from '../shared/version.js';
import { TICK_MAX_MS, TICK_MIN_MS, loadServeConfig, readPem, splitListen } from './config.js';
import { fingerprint } from '../shared/keys.js';
import { openDb } from './db.js';
import { HUB_KEY_FILE, loadOrCreateHubKey } from './hub-key.js';
import { createHub } from './server.js';
import { Store } from './store.js';

const program = new Command('ferry-hub')
  .description('The Ferry hub: tenants, agents, releases and rollouts over one outbound agent channel')
  .version(VERSION)
  .exitOverride();

const dataDir = () => new Option('--data-dir <dir>', 'directory holding the sqlite database').env('FERRY_HUB_DATA_DIR').makeOptionMandatory();

program
  .command('init')
  .description('create the database and print the first admin API token (shown once)')
  .addOption(dataDir())
  .option('--admin-name <name>', 'name recorded for the first admin token', 'admin')
  .option('--json', 'print the token as JSON')
  .action((o: { dataDir: string; adminName: string; json?: boolean }) => {
    const db = openDb(o.dataDir, { create: true });
    const { id, token } = new Store(db).createApiToken(o.adminName, 'admin', null, Date.now());
    db.close();
    const hubKey = loadOrCreateHubKey(o.dataDir);
    process.stderr.write(`Hub signing key ${fingerprint(hubKey.publicKey)} (${HUB_KEY_FILE}, mode 0600; back it up).\n`);
    if (o.json) process.stdout.write(JSON.stringify({ dataDir: o.dataDir, tokenId: id, token }) + '\n');
    else {
      process.stderr.write(`Initialised hub database in ${o.dataDir}.\nFirst admin API token (shown once; store it safely):\n`);
      process.stdout.write(token + '\n');
    }
  });

program
  .command('serve')
  .description('serve the agent endpoint, the HTTP API and the probes')
  .addOption(dataDir())
  .addOption(new Option('--listen <host:port>', 'address to listen on').env('FERRY_HUB_LISTEN').default('127.0.0.1:7443'))
  .addOption(new Option('--tls-cert <file>', 'PEM certificate chain (enables HTTPS/WSS; default: plain HTTP)').env('FERRY_HUB_TLS_CERT'))
  .addOption(new Option('--tls-key <file>', 'PEM private key for --tls-cert').env('FERRY_HUB_TLS_KEY'))
  .addOption(new Option('--public-url <url>', 'URL agents dial; handshakes must be signed for its host (default: the request\'s Host)').env('FERRY_HUB_PUBLIC_URL'))
  .addOption(new Option('--heartbeat-ms <ms>', 'ping interval; an agent missing one is dropped (default 15000)').env('FERRY_HUB_HEARTBEAT_MS'))
  .addOption(new Option('--checkpoint-ms <ms>', 'how often grown audit logs are checkpointed and sent to agents (default 60000)').env('FERRY_HUB_CHECKPOINT_MS'))
  .addOption(new Option('--tick <ms>', `how often rollouts are re-examined for bake times, retries and timeouts (${TICK_MIN_MS}-${TICK_MAX_MS}; default 1000)`).env('FERRY_HUB_TICK_MS'))
  .addOption(new Option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent (default info)').env('FERRY_HUB_LOG_LEVEL'))
  .action(async (o: Record<string, unknown>) => {
    const { tick, ...rest } = o;
    const cfg = loadServeConfig({ ...rest, tickMs: tick });
    const log = createLogger({ name: 'ferry-hub', level: cfg.logLevel });
    const { host, port } = splitListen(cfg.listen);
    const tls = cfg.tlsCert && cfg.tlsKey ? { cert: readPem(cfg.tlsCert, 'tls-cert'), key: readPem(cfg.tlsKey, 'tls-key') } : undefined;
    const hub = await createHub({ dataDir: cfg.dataDir, host, port, tls, publicUrl: cfg.publicUrl, heartbeatMs: cfg.heartbeatMs, checkpointMs: cfg.checkpointMs, rolloutTickMs: cfg.tickMs, log });
    process.stderr.write(`ferry-hub ${VERSION} listening on ${hub.url}\n`);
    await new Promise<void>((resolve) => {
      const stop = (sig: string) => {
        log.info({ signal: sig }, 'shutting down');
        void hub.close().then(resolve);
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
    log.flush();
  });

await runMain(() => program.parseAsync(process.argv).then(() => undefined));

#!/usr/bin/env node
// ferry-hub: `init` creates the store and the first admin; `serve` runs the
// hub until SIGINT/SIGTERM; `migrate` copies a sqlite hub into PostgreSQL.
import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { FerryError } from '../shared/errors.js';
import { runMain } from '../shared/exit.js';
import { usageOnError } from '../shared/usage.js';
import { fingerprint } from '../shared/keys.js';
import { createLogger } from '../shared/logger.js';
import { VERSION } from '../shared/version.js';
import { TICK_MAX_MS, TICK_MIN_MS, alertSettings, loadServeConfig, readPem, splitListen } from './config.js';
import { HUB_KEY_FILE, loadOrCreateHubKey } from './hub-key.js';
import { hashPassword } from './http/passwords.js';
import { loadRegistryCredentials } from './registry/upstream.js';
import { createHub } from './server.js';
import { migrateStore } from './store/migrate.js';
import { redactUrl } from './store/postgres.js';
import { openStore } from './store/store.js';

const program = new Command('ferry-hub')
  .description('The Ferry hub: tenants, agents, releases and rollouts over one outbound agent channel')
  .version(VERSION)
  .exitOverride();

const dataDir = () => new Option('--data-dir <dir>', 'directory holding the hub signing key, and the sqlite database unless --database is given').env('FERRY_HUB_DATA_DIR').makeOptionMandatory();
const database = () => new Option('--database <url>', 'PostgreSQL store shared by several replicas (postgres://user:pass@host:5432/db); default: sqlite in --data-dir').env('FERRY_HUB_DATABASE');

program
  .command('init')
  .description('create the store and the first admin (a person with the vendor-wide admin role); prints their API token once')
  .addOption(dataDir())
  .addOption(database())
  .option('--admin-name <name>', 'user name of the first admin', 'admin')
  .option('--admin-password-file <file>', 'a file holding the first admin\'s console password (at least 12 characters)')
  .option('--json', 'print the token as JSON')
  .action(async (o: { dataDir: string; database?: string; adminName: string; adminPasswordFile?: string; json?: boolean }) => {
    const password = o.adminPasswordFile ? readSecretFile(o.adminPasswordFile) : undefined;
    const passwordHash = password ? await hashPassword(password) : null;
    const store = await openStore({ dataDir: o.dataDir, database: o.database }, { create: true });
    let out: { userId: string; tokenId: string; token: string };
    try {
      out = await store.tx(async () => {
        const now = Date.now();
        const u = await store.people.createUser({ name: o.adminName, kind: 'person', vendorRole: 'admin', passwordHash }, null, now);
        const t = await store.people.createToken({ userId: u.id, name: `${o.adminName}-initial`, role: 'admin', tenants: null, expiresAt: null }, null, now);
        return { userId: u.id, tokenId: t.id, token: t.token };
      });
    } finally {
      await store.close();
    }
    const hubKey = loadOrCreateHubKey(o.dataDir);
    process.stderr.write(`Hub signing key ${fingerprint(hubKey.publicKey)} (${HUB_KEY_FILE}, mode 0600; back it up${o.database ? ', and give the same file to every replica' : ''}).\n`);
    if (o.json) process.stdout.write(JSON.stringify({ dataDir: o.dataDir, database: o.database ? redactUrl(o.database) : null, user: o.adminName, userId: out.userId, tokenId: out.tokenId, token: out.token }) + '\n');
    else {
      process.stderr.write(`Initialised the hub ${o.database ? `in ${redactUrl(o.database)}` : `database in ${o.dataDir}`}; first admin: ${o.adminName}${passwordHash ? ' (console password set)' : ''}.\nTheir API token (shown once; store it safely):\n`);
      process.stdout.write(out.token + '\n');
    }
  });

program
  .command('serve')
  .description('serve the agent endpoint, the HTTP API and the probes')
  .addOption(dataDir())
  .addOption(database())
  .addOption(new Option('--db-pool <n>', 'PostgreSQL connections per replica (default 10)').env('FERRY_HUB_DB_POOL'))
  .addOption(new Option('--db-statement-timeout <ms>', 'PostgreSQL per-statement limit in ms, 0 for none (default 30000)').env('FERRY_HUB_DB_STATEMENT_TIMEOUT'))
  .addOption(new Option('--db-ca <file>', 'CA certificate (PEM) to verify the PostgreSQL server with; turns on TLS (verify-full)').env('FERRY_HUB_DB_CA'))
  .addOption(new Option('--listen <host:port>', 'address to listen on; one other hosts can reach needs --public-url and TLS (or --insecure-http)').env('FERRY_HUB_LISTEN').default('127.0.0.1:7443'))
  .addOption(new Option('--tls-cert <file>', 'PEM certificate chain (enables HTTPS/WSS; default: plain HTTP, on a loopback address only)').env('FERRY_HUB_TLS_CERT'))
  .addOption(new Option('--tls-key <file>', 'PEM private key for --tls-cert').env('FERRY_HUB_TLS_KEY'))
  .addOption(new Option('--public-url <url>', 'URL agents and browsers use (https://hub.example.com:7443); agents must connect to and sign for its host').env('FERRY_HUB_PUBLIC_URL'))
  .addOption(new Option('--insecure-http', 'serve plain HTTP on an address other hosts can reach (closed lab networks only; warned at every start)').env('FERRY_HUB_INSECURE_HTTP'))
  .addOption(new Option('--rate-limit <n>', 'API requests per minute per token, session or address, 0 for none (default 3000)').env('FERRY_HUB_RATE_LIMIT'))
  .addOption(new Option('--heartbeat-ms <ms>', 'ping interval; an agent missing one is dropped (default 15000)').env('FERRY_HUB_HEARTBEAT_MS'))
  .addOption(new Option('--checkpoint-ms <ms>', 'how often grown audit logs are checkpointed and sent to agents (default 60000)').env('FERRY_HUB_CHECKPOINT_MS'))
  .addOption(new Option('--tick <ms>', `how often rollouts are re-examined for bake times, retries and timeouts (${TICK_MIN_MS}-${TICK_MAX_MS}; default 1000)`).env('FERRY_HUB_TICK_MS'))
  .addOption(new Option('--registry-credentials <file>', "the vendor registries' credentials for the image origin: a Docker config.json, or {\"host\": {\"username\", \"password\"}}").env('FERRY_HUB_REGISTRY_CREDENTIALS'))
  .addOption(new Option('--registry-insecure <hosts>', 'vendor registries spoken to over plain HTTP, comma-separated (loopback ones always are)').env('FERRY_HUB_REGISTRY_INSECURE'))
  .addOption(new Option('--registry-per-agent <n>', 'image requests in flight per agent (default 8)').env('FERRY_HUB_REGISTRY_PER_AGENT'))
  .addOption(new Option('--registry-per-hub <n>', 'image requests in flight for the hub (default 128)').env('FERRY_HUB_REGISTRY_PER_HUB'))
  .addOption(new Option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent (default info)').env('FERRY_HUB_LOG_LEVEL'))
  .addOption(new Option('--metrics-listen <host:port>', 'also serve GET /metrics here without credentials (a monitoring network); the API\'s /metrics takes a token with hub.read').env('FERRY_HUB_METRICS_LISTEN'))
  .addOption(new Option('--alert-webhook <url>', 'POST every alert notice here, signed (x-ferry-signature: HMAC-SHA256 over timestamp and body)').env('FERRY_HUB_ALERT_WEBHOOK'))
  .addOption(new Option('--alert-webhook-secret-file <file>', 'the webhook signing secret (at least 16 characters)').env('FERRY_HUB_ALERT_WEBHOOK_SECRET_FILE'))
  .addOption(new Option('--alert-offline <duration>', 'an agent disconnected this long raises agent.offline (default 5m)').env('FERRY_HUB_ALERT_OFFLINE'))
  .addOption(new Option('--alert-stuck <duration>', 'a running or paused rollout in which nothing moved this long raises rollout.stuck (default 30m)').env('FERRY_HUB_ALERT_STUCK'))
  .addOption(new Option('--alert-repeat <duration>', 'remind of alerts still firing this often, 0 for never (default 4h)').env('FERRY_HUB_ALERT_REPEAT'))
  .addOption(new Option('--check-history <duration>', 'keep check transitions this long (default 30d)').env('FERRY_HUB_CHECK_HISTORY'))
  .action(async (o: Record<string, unknown>) => {
    const { tick, dbPool, dbStatementTimeout, ...rest } = o;
    const cfg = loadServeConfig({ ...rest, tickMs: tick, dbPool, dbStatementTimeoutMs: dbStatementTimeout });
    const log = createLogger({ name: 'ferry-hub', level: cfg.logLevel });
    const { host, port } = splitListen(cfg.listen);
    if (cfg.insecureHttp && !cfg.tlsCert) log.warn({ listen: cfg.listen }, 'serving plain HTTP (--insecure-http): API tokens, passwords and sessions cross the network in clear');
    const tls = cfg.tlsCert && cfg.tlsKey ? { cert: readPem(cfg.tlsCert, 'tls-cert'), key: readPem(cfg.tlsKey, 'tls-key') } : undefined;
    const hub = await createHub({
      dataDir: cfg.dataDir,
      database: cfg.database,
      postgres: { poolSize: cfg.dbPool, statementTimeoutMs: cfg.dbStatementTimeoutMs, caFile: cfg.dbCa },
      host,
      port,
      tls,
      publicUrl: cfg.publicUrl,
      heartbeatMs: cfg.heartbeatMs,
      checkpointMs: cfg.checkpointMs,
      rolloutTickMs: cfg.tickMs,
      rateLimitPerMinute: cfg.rateLimit,
      ...alertSettings(cfg),
      ...(cfg.metricsListen && { metricsListen: splitListen(cfg.metricsListen) }),
      registry: {
        credentials: cfg.registryCredentials ? loadRegistryCredentials(cfg.registryCredentials) : new Map(),
        insecure: (cfg.registryInsecure ?? '').split(',').map((h) => h.trim().toLowerCase()).filter(Boolean),
        perAgent: cfg.registryPerAgent,
        perHub: cfg.registryPerHub,
      },
      log,
    });
    process.stderr.write(`ferry-hub ${VERSION} listening on ${hub.url} (store: ${hub.store.backend}${cfg.database ? ` ${redactUrl(cfg.database)}` : ''})\n`);
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

program
  .command('migrate')
  .description('copy a stopped sqlite hub (--data-dir) into an empty PostgreSQL database (--to); then serve with --database')
  .addOption(dataDir())
  .requiredOption('--to <url>', 'the PostgreSQL database (postgres://...); it must hold no hub yet')
  .option('--json', 'print what was copied as JSON')
  .action(async (o: { dataDir: string; to: string; json?: boolean }) => {
    const r = await migrateStore({ dataDir: o.dataDir }, { database: o.to }, (msg) => process.stderr.write(msg + '\n'));
    if (o.json) process.stdout.write(JSON.stringify({ to: redactUrl(o.to), tables: r.tables, audit: r.audit }) + '\n');
    else {
      for (const [t, n] of Object.entries(r.tables)) process.stdout.write(`${t.padEnd(20)} ${n}\n`);
      process.stderr.write(`Copied into ${redactUrl(o.to)}; audit logs re-verified there (${r.audit.map((a) => `${a.log}: ${a.size}`).join(', ') || 'none'}).\nServe with: ferry-hub serve --data-dir ${o.dataDir} --database '${redactUrl(o.to)}'\n`);
    }
  });

function readSecretFile(path: string): string {
  try {
    return readFileSync(path, 'utf8').replace(/\r?\n$/, '');
  } catch (err) {
    throw new FerryError('FERRY_E_CONFIG_INVALID', `--admin-password-file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

usageOnError(program);
await runMain(() => program.parseAsync(process.argv).then(() => undefined));

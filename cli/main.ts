#!/usr/bin/env node
// ferry: the operator CLI. Talks to the hub's HTTP API with an API token;
// `ferry login` saves hub + token as a context so later commands need neither.
//
// Output: data on stdout (tables for people, the API's JSON with --json),
// progress, notes and errors on stderr. An error prints `error CODE: message`
// and a hint (one JSON object `{"error":{code,message,hint}}` with --json).
//
// Exit codes (shared/exit.ts):
//   0  ok
//   1  failure: anything not listed below (FERRY_E_INTERNAL, FERRY_E_DB, ...)
//   2  usage: unknown command or option, missing argument, bad choice
//   3  auth: no token, token not valid, or its role does not allow this
//      (FERRY_E_AUTH_REQUIRED, FERRY_E_AUTH_INVALID, FERRY_E_FORBIDDEN)
//   4  not found: no such tenant, agent, API token or context (FERRY_E_NOT_FOUND)
//   5  conflict: it already exists (FERRY_E_CONFLICT)
//   6  unreachable: the hub cannot be reached or its TLS is not trusted
//      (FERRY_E_HUB_UNREACHABLE, FERRY_E_HUB_TLS, FERRY_E_UNAVAILABLE)
//   7  invalid input: a flag, field or config value is wrong
//      (FERRY_E_VALIDATION, FERRY_E_CONFIG_INVALID)
import { resolve } from 'node:path';
import { Command, Option } from 'commander';
import { FerryError } from '../shared/errors.js';
import { runMain } from '../shared/exit.js';
import { usageOnError } from '../shared/usage.js';
import { VERSION } from '../shared/version.js';
import { withHub } from './client.js';
import { CONTEXT_NAME, configPath, loadConfig, normaliseHub, resolveTarget, saveConfig, type GlobalOptions } from './contexts.js';
import { formatDuration, jsonText, parseDuration, table } from './format.js';
import { registerAuditCommands } from './audit-commands.js';
import { grantsText, registerPeopleCommands, type WhoAmI } from './people-commands.js';
import { registerReleaseCommands } from './release-commands.js';
import { registerImageCommands } from './image-commands.js';
import { registerCheckCommands } from './check-commands.js';
import { registerOperationCommands } from './operation-commands.js';
import { registerRolloutCommands } from './rollout-commands.js';
import { registerChatCommands } from './chat-commands.js';
import { registerUpgradeCommands } from './upgrade-commands.js';
import { agentDetail, agentTable, tenantTable } from './views.js';
import type { AgentView, EnrollmentTokenView, TenantView } from './views.js';

const TTL_MIN_S = 60;
const TTL_MAX_S = 30 * 86_400; // the hub's bounds; checked here too so the message names --ttl

const program = new Command('ferry')
  .description('Operate a Ferry hub: tenants, agents, trust roots, signed releases and deploys')
  .version(VERSION)
  .addOption(new Option('--hub <url>', 'hub URL, e.g. https://hub.example.com').env('FERRY_HUB'))
  .addOption(new Option('--token <token>', 'API token').env('FERRY_TOKEN'))
  .addOption(new Option('--context <name>', 'saved context to use (default: the current one)').env('FERRY_CONTEXT'))
  .addOption(new Option('--ca-file <file>', 'extra CA certificate (PEM) to trust for an https hub').env('FERRY_CA_FILE'))
  .configureHelp({ showGlobalOptions: true })
  .exitOverride();

const out = (text: string) => process.stdout.write(text);
const note = (text: string) => process.stderr.write(text + '\n');
const printJson = (value: unknown) => out(jsonText(value, process.stdout.isTTY === true));
const enc = encodeURIComponent;

/** The hub and token this invocation uses: flags > env > --context > current context. */
function target(cmd: Command) {
  return resolveTarget(cmd.optsWithGlobals<GlobalOptions>(), loadConfig(configPath()));
}

// ---- login and contexts -------------------------------------------------------------

program
  .command('login')
  .description('check an API token against the hub, save hub + token as a context and make it current')
  .option('--json', 'print the saved context as JSON')
  .addHelpText('after', '\nExample:\n  ferry login --hub https://hub.example.com --token "$TOKEN" --context prod')
  .action(async (o: { json?: boolean }, cmd: Command) => {
    const g = cmd.optsWithGlobals<GlobalOptions>();
    if (!g.hub || !g.token) cmd.error('error: login needs --hub URL and --token TOKEN (or FERRY_HUB and FERRY_TOKEN)');
    const hub = normaliseHub(g.hub);
    const name = g.context || new URL(hub).host;
    if (!CONTEXT_NAME.test(name)) throw new FerryError('FERRY_E_VALIDATION', `--context ${JSON.stringify(name)}: letters, digits and . _ : @ -, up to 63`);
    const caFile = g.caFile ? resolve(g.caFile) : undefined;
    const who = await withHub({ hub, token: g.token, caFile }, (h) => h.get<WhoAmI>('/v1/whoami'));
    const path = configPath();
    const cfg = loadConfig(path);
    cfg.contexts[name] = caFile ? { hub, token: g.token, caFile } : { hub, token: g.token };
    cfg.current = name;
    saveConfig(path, cfg);
    if (o.json) printJson({ context: name, hub, configFile: path, ...who });
    note(`Logged in to ${hub} as ${who.user} (${grantsText(who.vendorRole, who.tenants)}${who.token?.tenants ? `; this token: ${who.token.role} on ${who.token.tenants.join(', ')}` : ''}). Context ${name} saved in ${path} and made current.`);
  });

const context = program.command('context').description('list and choose saved contexts (hub + token)');
context
  .command('ls')
  .description('list saved contexts; * marks the current one')
  .option('--json', 'print as JSON (tokens are never shown)')
  .action((o: { json?: boolean }) => {
    const cfg = loadConfig(configPath());
    const rows = Object.entries(cfg.contexts).map(([name, c]) => ({ name, hub: c.hub, current: name === cfg.current, caFile: c.caFile ?? null }));
    if (o.json) return void printJson({ current: cfg.current, contexts: rows });
    out(table(['CURRENT', 'NAME', 'HUB'], rows.map((r) => [r.current ? '*' : '', r.name, r.hub])));
  });
context
  .command('use')
  .description('make a saved context the current one')
  .argument('<name>', 'context name, from `ferry context ls`')
  .action((name: string) => {
    const path = configPath();
    const cfg = loadConfig(path);
    if (!cfg.contexts[name]) throw new FerryError('FERRY_E_NOT_FOUND', `context ${name}; see \`ferry context ls\``);
    cfg.current = name;
    saveConfig(path, cfg);
    note(`Switched to context ${name} (${cfg.contexts[name].hub}).`);
  });

// ---- tenants and enrollment tokens ------------------------------------------------------

const tenant = program.command('tenant').description('institutions the hub serves');
tenant
  .command('create')
  .description('create a tenant (admin)')
  .argument('<name>', 'lowercase letters, digits and dashes')
  .option('--json', 'print the API answer as JSON')
  .action(async (name: string, o: { json?: boolean }, cmd: Command) => {
    const t = await withHub(target(cmd), (h) => h.post<TenantView>('/v1/tenants', { name }));
    if (o.json) return void printJson(t);
    out(`created tenant ${t.name} (${t.id})\n`);
  });
tenant
  .command('ls')
  .description('list tenants with their number of active agents')
  .option('--json', 'print the API answer as JSON')
  .action(async (o: { json?: boolean }, cmd: Command) => {
    const r = await withHub(target(cmd), (h) => h.get<{ tenants: TenantView[] }>('/v1/tenants'));
    if (o.json) return void printJson(r);
    out(tenantTable(r.tenants, Date.now()));
  });

program
  .command('token')
  .description('single-use enrollment tokens for agents')
  .command('create')
  .description('create an enrollment token; prints only the token, so TOKEN=$(ferry token create --tenant NAME) works')
  .requiredOption('--tenant <name>', 'tenant the enrolled agent will belong to')
  .option('--ttl <duration>', 'how long the token stays valid: 90s, 30m, 1h, 2d (1m to 30d)', '1h')
  .option('--json', 'print the API answer as JSON')
  .action(async (o: { tenant: string; ttl: string; json?: boolean }, cmd: Command) => {
    const ttlSeconds = parseDuration(o.ttl, '--ttl');
    if (ttlSeconds < TTL_MIN_S || ttlSeconds > TTL_MAX_S) throw new FerryError('FERRY_E_VALIDATION', `--ttl ${o.ttl}: must be between 1m and 30d`);
    const t = target(cmd);
    const tok = await withHub(t, (h) => h.post<EnrollmentTokenView>(`/v1/tenants/${enc(o.tenant)}/enrollment-tokens`, { ttlSeconds }));
    if (o.json) return void printJson(tok);
    out(tok.token + '\n');
    note(`Enrollment token for tenant ${tok.tenant}: single use, expires ${tok.expiresAt} (in ${formatDuration(ttlSeconds)}).`);
    note(`On the host: ferry-agent enroll --hub ${t.hub} --token TOKEN`);
  });

// ---- agents -----------------------------------------------------------------------

const agent = program.command('agent').description('enrolled agents');
agent
  .command('ls')
  .description('list agents with their connection status')
  .option('--tenant <name>', 'only this tenant\'s agents')
  .option('--json', 'print the API answer as JSON')
  .action(async (o: { tenant?: string; json?: boolean }, cmd: Command) => {
    const r = await withHub(target(cmd), (h) => h.get<{ agents: AgentView[] }>('/v1/agents', { tenant: o.tenant }));
    if (o.json) return void printJson(r);
    out(agentTable(r.agents, Date.now()));
  });
agent
  .command('show')
  .description('show one agent')
  .argument('<id>', 'agent id (agt_...)')
  .option('--json', 'print the API answer as JSON')
  .action(async (id: string, o: { json?: boolean }, cmd: Command) => {
    const a = await withHub(target(cmd), (h) => h.get<AgentView>(`/v1/agents/${enc(id)}`));
    if (o.json) return void printJson(a);
    out(agentDetail(a, Date.now()));
  });
agent
  .command('plan')
  .description('ask a connected agent what it would do now to match its accepted releases (changes nothing)')
  .argument('<id>', 'agent id (agt_...)')
  .option('--json', 'print the API answer as JSON')
  .action(async (id: string, o: { json?: boolean }, cmd: Command) => {
    const p = await withHub(target(cmd), (h) => h.get<{ steps: { kind: string; what: string }[]; waiting: string[] }>(`/v1/agents/${enc(id)}/plan`));
    if (o.json) return void printJson(p);
    if (!p.steps.length && !p.waiting.length) out('nothing to do: the engine matches the accepted releases\n');
    for (const s of p.steps) out(`${s.what}\n`);
    for (const w of p.waiting) out(`waiting: ${w}\n`);
  });
agent
  .command('revoke')
  .description('revoke an agent: its connection is closed and it can never reconnect (operator)')
  .argument('<id>', 'agent id (agt_...)')
  .option('--json', 'print the API answer as JSON')
  .action(async (id: string, o: { json?: boolean }, cmd: Command) => {
    const a = await withHub(target(cmd), (h) => h.post<AgentView>(`/v1/agents/${enc(id)}/revoke`));
    if (o.json) return void printJson(a);
    out(`revoked agent ${a.id} (${a.name}, tenant ${a.tenant})\n`);
  });

registerPeopleCommands(program, { target, out, note, printJson });
registerReleaseCommands(program, { target, out, note, printJson });
registerAuditCommands(program, { target, out, note, printJson });
registerRolloutCommands(program, { target, out, note, printJson });
registerImageCommands(program, { target, out, note, printJson });
registerChatCommands(program, { target, out, note, printJson });
registerCheckCommands(program, { target, out, note, printJson });
registerOperationCommands(program, { target, out, note, printJson });
registerUpgradeCommands(program, { target, out, note, printJson });

program
  .command('version')
  .description("show this CLI's version and the hub's (when a hub is configured)")
  .option('--json', 'print as JSON')
  .action(async (o: { json?: boolean }, cmd: Command) => {
    const g = cmd.optsWithGlobals<GlobalOptions>();
    const cfg = loadConfig(configPath());
    const ctx = g.context || cfg.current ? cfg.contexts[(g.context || cfg.current)!] : undefined;
    const hub = g.hub ? normaliseHub(g.hub) : ctx?.hub;
    let hubVersion: string | null = null;
    let why = hub ? '' : 'no hub configured (--hub, FERRY_HUB or ferry login)';
    if (hub) {
      try {
        // /livez needs no token: the hub's version is shown even before login.
        const live = await withHub({ hub, token: '', caFile: g.caFile ?? ctx?.caFile }, (h) => h.get<{ version?: string }>('/livez'));
        hubVersion = live.version ?? null;
        if (!hubVersion) why = 'the hub does not say (older than this CLI)';
      } catch (err) {
        const e = err as FerryError;
        why = `${e.code ?? 'error'}: ${e.message}`;
      }
    }
    if (o.json) return void printJson({ client: VERSION, hub: hub ?? null, hubVersion });
    out(`ferry ${VERSION}\n`);
    out(hub ? `hub   ${hubVersion ?? '-'} at ${hub}${why ? ` (${why})` : ''}\n` : `hub   - (${why})\n`);
  });

usageOnError(program);

await runMain(() => program.parseAsync(process.argv).then(() => undefined), { json: () => process.argv.includes('--json') });

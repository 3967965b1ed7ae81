#!/usr/bin/env node
// ferry-agent: enroll this host with a hub, run the agent, show its state,
// and install it as a systemd service.
import { hostname } from 'node:os';
import { Command, Option } from 'commander';
import { FerryError } from '../shared/errors.js';
import { runMain } from '../shared/exit.js';
import { createLogger } from '../shared/logger.js';
import { usageOnError } from '../shared/usage.js';
import { VERSION } from '../shared/version.js';
import { loadAgentConfig } from './config.js';
import { runAgent, targetsOf } from './runtime.js';
import { DockerEngine } from './engine/docker.js';
import { createTransport } from './proxy.js';
import { registerServiceCommands } from './service.js';
import { registerSecretCommands } from './secret-commands.js';
import { fileProvider } from './secrets.js';
import { loadIdentity, loadKey } from './state.js';
import { DEFAULT_POLICY_PATH, loadPolicy } from './policy.js';
import { currentRoot } from './verify.js';
import { readFileSync } from 'node:fs';
import { checkHeldEntry, loadWitness, readHeldEntries } from './witness.js';
import { REFUSALS_FILE, acknowledgeAlarms, loadTrust, readAlarms } from './trust-store.js';
import { Reconciler } from './reconcile/reconciler.js';
// enroll and status are imported by their commands, so the long-running `run` does not hold them.
import { describeStep } from './reconcile/execute.js';
import { LauncherLink, launchContext } from './upgrade/child.js';
import { EXIT_SWITCH } from './upgrade/launch-state.js';

const program = new Command('ferry-agent')
  .description('The Ferry agent: one outbound connection to the hub, signed desired state, reconciled against the local Docker engine')
  .version(VERSION)
  .exitOverride();

const stateDir = () =>
  new Option('--state-dir <dir>', 'directory holding the agent identity and private key').env('FERRY_AGENT_STATE_DIR').default('/var/lib/ferry-agent');
const configFile = () => new Option('--config <file>', 'YAML config file (proxy, CA, docker socket, reconnect)').env('FERRY_AGENT_CONFIG');
const caFile = () => new Option('--ca-file <file>', 'extra CA certificate (PEM) to trust for the hub').env('FERRY_AGENT_CA_FILE');
const policyFile = () => new Option('--policy <file>', `the institution's local policy (default ${DEFAULT_POLICY_PATH}, optional there)`).env('FERRY_AGENT_POLICY');

function collectLabel(value: string, prev: Record<string, string>): Record<string, string> {
  const i = value.indexOf('=');
  if (i <= 0) throw new FerryError('FERRY_E_VALIDATION', `--label ${value}: expected key=value`);
  return { ...prev, [value.slice(0, i)]: value.slice(i + 1) };
}

program
  .command('enroll')
  .description('generate this agent\'s key pair and register it with the hub using a single-use token')
  .addOption(new Option('--hub <url>', 'hub URL, e.g. https://hub.example.com').env('FERRY_AGENT_HUB').makeOptionMandatory())
  .addOption(new Option('--token <token>', 'enrollment token from `ferry token create`').env('FERRY_AGENT_TOKEN').makeOptionMandatory())
  .addOption(stateDir())
  .addOption(configFile())
  .addOption(caFile())
  .option('--name <name>', 'agent name shown to operators', hostname())
  .option('--label <key=value>', 'label for rollout selectors (repeatable)', collectLabel, {})
  .addOption(new Option('--root-fingerprint <fp>', 'expected fingerprint of the tenant trust root v1 (check it with the vendor out of band)').env('FERRY_AGENT_ROOT_FINGERPRINT'))
  .option('--json', 'print the result as JSON')
  .action(async (o: { hub: string; token: string; stateDir: string; config?: string; caFile?: string; name: string; label: Record<string, string>; rootFingerprint?: string; json?: boolean }) => {
    const cfg = loadAgentConfig({ stateDir: o.stateDir, configFile: o.config, caFile: o.caFile });
    const transport = createTransport(o.hub, cfg.proxy, cfg.caFile);
    try {
      const { enroll } = await import('./enroll.js');
      const { identity: id, root } = await enroll({ hubUrl: o.hub, token: o.token, stateDir: o.stateDir, name: o.name, labels: o.label, transport, rootFingerprint: o.rootFingerprint });
      if (o.json) process.stdout.write(JSON.stringify({ ...id, rootVersion: root?.version ?? null, rootFingerprint: root?.fingerprint ?? null }) + '\n');
      else {
        process.stdout.write(`enrolled agent ${id.agentId} (${id.name}) in tenant ${id.tenant}\nkey fingerprint ${id.fingerprint}\n`);
        process.stdout.write(root ? `trust root v${root.version}, fingerprint ${root.fingerprint}${o.rootFingerprint ? ' (matches the expected one)' : ' (not pinned: compare it with the vendor out of band)'}\n` : 'no trust root yet: it will be taken from the hub when the tenant has one\n');
        process.stdout.write(`state in ${o.stateDir}; start it with: ferry-agent run --state-dir ${o.stateDir}\n`);
      }
    } finally {
      await transport.close();
    }
  });

program
  .command('run')
  .description('connect to the hub and serve it until stopped (SIGTERM/SIGINT)')
  .addOption(stateDir())
  .addOption(configFile())
  .addOption(caFile())
  .addOption(policyFile())
  .addOption(new Option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent').env('FERRY_AGENT_LOG_LEVEL'))
  .action(async (o: { stateDir: string; config?: string; caFile?: string; policy?: string; logLevel?: string }) => {
    const cfg = loadAgentConfig({ stateDir: o.stateDir, configFile: o.config, caFile: o.caFile, logLevel: o.logLevel, policyFile: o.policy });
    const identity = loadIdentity(cfg.stateDir);
    const key = loadKey(cfg.stateDir);
    const policy = loadPolicy(cfg.policyFile);
    const log = createLogger({ name: 'ferry-agent', level: cfg.logLevel }).child({ agentId: identity.agentId, tenant: identity.tenant });
    const transport = createTransport(identity.hubUrl, cfg.proxy, cfg.caFile);
    const engine = new DockerEngine({ socketPath: cfg.dockerSocket });
    log.info({ policy: policy.source ?? 'none' }, 'local policy loaded');
    const ac = new AbortController();
    const stop = (sig: string) => {
      log.info({ signal: sig }, 'stopping');
      ac.abort();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    const launch = launchContext();
    // Started by the launcher: stop with it, so two versions never run at once.
    const link = launch ? new LauncherLink(() => stop('launcher gone')) : null;
    log.info({ version: VERSION, hub: identity.hubUrl, proxy: transport.proxy?.host ?? null, ...(launch ? { root: launch.root, trial: launch.trial } : {}) }, 'ferry-agent starting');
    try {
      const r = await runAgent({ cfg, identity, key, policy, engine, transport, log, signal: ac.signal, launch, link });
      if (r.switchTo) {
        log.info({ version: r.switchTo }, 'stopping for the launcher to start the new version');
        process.exitCode = EXIT_SWITCH;
      }
    } finally {
      await transport.close();
      log.flush();
    }
  });

program
  .command('status')
  .description('show this agent\'s identity and configuration')
  .addOption(stateDir())
  .addOption(configFile())
  .addOption(policyFile())
  .addOption(new Option('--root <dir>', 'where versions are installed (launch.json); default /opt/ferry-agent when it holds one').env('FERRY_AGENT_ROOT'))
  .option('--json', 'print as JSON')
  .action(async (o: { stateDir: string; config?: string; policy?: string; root?: string; json?: boolean }) => {
    const { describeTrust, formatTrust } = await import('./status.js');
    const { describeVersions, formatVersions } = await import('./upgrade/status.js');
    const cfg = loadAgentConfig({ stateDir: o.stateDir, configFile: o.config, policyFile: o.policy });
    const id = loadIdentity(cfg.stateDir);
    loadKey(cfg.stateDir);
    const trust = describeTrust(cfg.stateDir, loadPolicy(cfg.policyFile));
    const versions = describeVersions(o.root ?? launchContext()?.root);
    const status = { ...id, stateDir: cfg.stateDir, proxy: cfg.proxy, caFile: cfg.caFile ?? null, version: VERSION, versions, ...trust };
    if (o.json) process.stdout.write(JSON.stringify(status) + '\n');
    else {
      const rows: [string, string][] = [
        ['agent', `${id.agentId} (${id.name})`],
        ['tenant', id.tenant],
        ['hub', id.hubUrl],
        ['fingerprint', id.fingerprint],
        ['labels', Object.entries(id.labels).map(([k, v]) => `${k}=${v}`).join(',') || '-'],
        ['enrolled', id.enrolledAt],
        ['proxy', cfg.proxy.httpsProxy ? new URL(cfg.proxy.httpsProxy.includes('://') ? cfg.proxy.httpsProxy : `http://${cfg.proxy.httpsProxy}`).host : 'none'],
        ['version', VERSION],
      ];
      for (const [k, v] of rows) process.stdout.write(`${k.padEnd(12)} ${v}\n`);
      process.stdout.write(formatVersions(versions));
      process.stdout.write(formatTrust(trust));
    }
  });

program
  .command('plan')
  .description('show what the agent would do now to make the engine match the accepted releases (changes nothing)')
  .addOption(stateDir())
  .addOption(configFile())
  .addOption(policyFile())
  .option('--json', 'print as JSON')
  .action(async (o: { stateDir: string; config?: string; policy?: string; json?: boolean }) => {
    const cfg = loadAgentConfig({ stateDir: o.stateDir, configFile: o.config, policyFile: o.policy });
    const identity = loadIdentity(cfg.stateDir);
    const engine = new DockerEngine({ socketPath: cfg.dockerSocket });
    const files = fileProvider(cfg.stateDir, loadPolicy(cfg.policyFile).files);
    const r = new Reconciler({ engine, agentId: identity.agentId, stateDir: cfg.stateDir, files, log: createLogger({ name: 'ferry-agent', level: 'silent' }) });
    try {
      const desired = loadTrust(cfg.stateDir).desired;
      const p = await r.dryRun(targetsOf(desired), desired?.seq ?? 0);
      if (o.json) return void process.stdout.write(JSON.stringify({ steps: p.steps.map((s) => ({ kind: s.kind, what: describeStep(s) })), waiting: p.waiting }) + '\n');
      if (!p.steps.length && !p.waiting.length) process.stdout.write('nothing to do: the engine matches the accepted releases\n');
      for (const s of p.steps) process.stdout.write(`${describeStep(s)}\n`);
      for (const w of p.waiting) process.stdout.write(`waiting: ${w}\n`);
    } finally {
      r.close();
    }
  });

program
  .command('audit')
  .description('show the audit checkpoints this agent witnessed, the entries about it (verified offline) and any audit alarm; exits 5 while an alarm is not acknowledged')
  .addOption(stateDir())
  .option('--acknowledge', 'record that the institution has seen (and investigated) every alarm so far')
  .option('--json', 'print as JSON')
  .action((o: { stateDir: string; acknowledge?: boolean; json?: boolean }) => {
    loadIdentity(o.stateDir);
    if (o.acknowledge) {
      const n = acknowledgeAlarms(o.stateDir, Date.now());
      process.stderr.write(n ? `acknowledged ${n} alarm(s); they stay on record in ${REFUSALS_FILE}\n` : 'no alarm to acknowledge\n');
    }
    const state = loadWitness(o.stateDir);
    const entries = readHeldEntries(o.stateDir).map((e) => {
      const { entry, ok } = checkHeldEntry(e, state);
      return { ...entry, verified: ok, checkpointSize: e.size };
    });
    const checkpoints = state.checkpoints.map((c) => ({ size: c.checkpoint.size, root: c.checkpoint.root, signedAt: new Date(c.checkpoint.at).toISOString(), witnessedAt: c.witnessedAt }));
    const alarms = readAlarms(o.stateDir).filter((a) => a.code === 'FERRY_E_AUDIT_INCONSISTENT');
    const open = alarms.filter((a) => !a.acknowledged);
    if (o.json) process.stdout.write(JSON.stringify({ checkpoints, entries, alarms }) + '\n');
    else {
      for (const a of alarms) process.stdout.write(`${a.acknowledged ? 'alarm (acknowledged)' : 'ALARM'}  ${a.at}  ${a.code}: ${a.message}\n`);
      for (const c of checkpoints) process.stdout.write(`checkpoint  size ${c.size}  root ${c.root.slice(0, 16)}…  signed ${c.signedAt}  witnessed ${c.witnessedAt}\n`);
      for (const e of entries) {
        process.stdout.write(`entry ${String(e.index).padStart(6)}  ${new Date(e.at).toISOString()}  ${e.action.padEnd(20)} ${e.outcome.padEnd(8)} ${e.verified ? 'included' : 'NOT VERIFIED'}\n`);
      }
    }
    if (open.length) {
      // The entries above are in what this agent witnessed; the hub's log since is not.
      throw new FerryError('FERRY_E_AUDIT_INCONSISTENT', `${open.length} alarm(s) since ${open[0]!.at}: the hub presented a log that does not extend the checkpoints this agent witnessed (acknowledge with --acknowledge once investigated)`);
    }
    if (entries.some((e) => !e.verified)) process.exitCode = 1;
  });

program
  .command('policy')
  .description('the institution\'s local policy')
  .command('check')
  .description('show what the policy allows and what a release would need of this host, need by need; exits 0 when this agent would accept it')
  .requiredOption('--release <file>', 'the release: `ferry release show STACK@VERSION --json` output, its signed envelope, or the release document')
  .addOption(policyFile())
  .addOption(new Option('--state-dir <dir>', 'an enrolled agent\'s state directory: verify the release\'s signatures against its trust root'))
  .option('--json', 'print the review as JSON')
  .action(async (o: { release: string; policy?: string; stateDir?: string; json?: boolean }) => {
    const { formatReview, releaseFromFile, reviewRelease } = await import('./policy-review.js');
    let text: string;
    try {
      text = readFileSync(o.release, 'utf8');
    } catch (err) {
      throw new FerryError('FERRY_E_VALIDATION', `--release ${o.release}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    const policy = loadPolicy(o.policy);
    const { release, envelope } = releaseFromFile(text, o.release);
    const root = o.stateDir ? currentRoot(loadTrust(o.stateDir).state) : null;
    const review = reviewRelease(policy, release, envelope, root);
    if (o.json) process.stdout.write(JSON.stringify({ ...review, policy: { source: policy.source, containers: policy.containers } }) + '\n');
    else process.stdout.write(formatReview(review, policy));
    // the refusal this agent would answer a directive with, for the first need not met
    const first = review.needs.find((n) => !n.ok);
    if (first) throw new FerryError(first.code ?? 'FERRY_E_POLICY_CONTAINER', `${first.service ? `${review.stack}/${first.service}: ` : ''}${first.what}; ${first.why ?? 'not allowed'}`);
  });

registerServiceCommands(program);
registerSecretCommands(program, stateDir);
usageOnError(program);

await runMain(() => program.parseAsync(process.argv).then(() => undefined), { json: () => process.argv.includes('--json') });

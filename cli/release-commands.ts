// ferry key / trust / release / deploy: the signed-release workflow. Private
// keys stay on the machine running these commands; only public keys and
// signatures go to the hub.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { Command, Option } from 'commander';
import { PAYLOAD_TYPES, pae, payloadBytes, type Envelope } from '../shared/dsse.js';
import { FerryError, isErrorCode as isCode } from '../shared/errors.js';
import { writeFileAtomic } from '../shared/files.js';
import { encodePublicKey, fingerprint, generateKeyPair, keyId, privateKeyFromPem, privateKeyToPem, sign, type KeyPair } from '../shared/keys.js';
import { canonicalJson, parseRelease, type Release } from '../shared/release.js';
import { parseRoot } from '../shared/trust.js';
import { withHub } from './client.js';
import { buildAndPush, checkPushTo } from './compose-build.js';
import { ComposeRefused, importCompose, type ComposeImport } from './compose.js';
import type { HubTarget } from './contexts.js';
import { table } from './format.js';
import type { AgentView } from './views.js';
import { pinImages } from './registry.js';

export interface CliIo {
  target(cmd: Command): HubTarget;
  out(text: string): void;
  note(text: string): void;
  printJson(value: unknown): void;
}

interface RootView {
  version: number;
  root: ReturnType<typeof parseRoot>;
  envelope: Envelope;
  active: boolean;
  needs: { role: string; have: number; threshold: number }[];
}
interface TrustView {
  tenant: string;
  fingerprint: string | null;
  active: RootView | null;
  pending: RootView | null;
}
interface ReleaseView {
  stack: string;
  version: string;
  digest: string;
  floor: string | null;
  createdAt: string;
  services: Record<string, string>;
  signers: { keyid: string; name: string | null; signedAt: string }[];
  tenants: { tenant: string; met: boolean; have: number; threshold: number }[];
  envelope?: Envelope;
}
interface DirectiveView {
  agent: string;
  seq: number;
  digest: string;
  status: 'pending' | 'accepted' | 'refused';
  code: string | null;
  message: string | null;
  sent: boolean;
}

interface CreateOptions {
  compose: string;
  envFile: string[];
  profile: string[];
  projectDirectory?: string;
  build?: boolean;
  pushTo?: string;
  floor?: string;
  registryUser?: string;
  registryPassword?: string;
  insecureRegistry: string[];
  registry?: string;
  json?: boolean;
}

const enc = encodeURIComponent;

/** Reads an Ed25519 private key file; refuses one that others can read. */
export function readKeyFile(path: string): KeyPair {
  let mode: number;
  try {
    mode = statSync(path).mode;
  } catch (err) {
    throw new FerryError('FERRY_E_KEY_FILE', `${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if ((mode & 0o077) !== 0) throw new FerryError('FERRY_E_KEY_FILE', `${path} has mode ${(mode & 0o777).toString(8)}; run chmod 600 ${path}`);
  try {
    return privateKeyFromPem(readFileSync(path, 'utf8'));
  } catch {
    throw new FerryError('FERRY_E_KEY_FILE', `${path} is not a PEM Ed25519 private key`);
  }
}

/** A public key given as a .pub file (base64 inside) or as base64 itself; named after the file. */
function readPublicKey(arg: string): { public: string; name?: string } {
  if (existsSync(arg)) {
    const text = readFileSync(arg, 'utf8').trim();
    return { public: text.split(/\s+/)[0]!, name: basename(arg).replace(/\.pub$/, '').replace(/\.(key|pem)$/, '') };
  }
  return { public: arg };
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

function parseRef(ref: string): { stack: string; version: string } {
  const m = /^([a-z0-9][a-z0-9_-]{0,62})@(.+)$/.exec(ref);
  if (!m) throw new FerryError('FERRY_E_VALIDATION', `${JSON.stringify(ref)}: expected STACK@VERSION, e.g. payments@2.4.0`);
  return { stack: m[1]!, version: m[2]! };
}

function rootSummary(v: RootView, withNeeds = true): string {
  const r = v.root;
  const name = (id: string) => r.keys[id]?.name ?? id.slice(0, 12);
  return [
    `root v${r.version} for tenant ${r.tenant}${v.active ? ' (active)' : ' (pending signatures)'}`,
    ...(['root', 'release', 'hub'] as const).map((role) => `  ${role.padEnd(8)} ${r.roles[role].threshold} of ${r.roles[role].keyids.map(name).join(', ')}`),
    ...(withNeeds ? v.needs.map((n) => `  signed by ${n.have} of ${n.threshold} needed from ${n.role}`) : []),
  ].join('\n');
}

export function registerReleaseCommands(program: Command, io: CliIo): void {
  // ---- keys ----------------------------------------------------------------------
  program
    .command('key')
    .description('Ed25519 keys for release managers and root key holders')
    .command('generate')
    .description('generate a key pair: FILE (private, mode 0600) and FILE.pub (public, base64)')
    .requiredOption('--out <file>', 'where to write the private key')
    .option('--json', 'print the key id and public key as JSON')
    .action((o: { out: string; json?: boolean }) => {
      if (existsSync(o.out)) throw new FerryError('FERRY_E_CONFLICT', `${o.out} exists; choose another --out (keys are never overwritten)`);
      if (!existsSync(dirname(resolve(o.out)))) throw new FerryError('FERRY_E_VALIDATION', `--out ${o.out}: directory does not exist`);
      const kp = generateKeyPair();
      writeFileAtomic(o.out, privateKeyToPem(kp), 0o600);
      writeFileAtomic(`${o.out}.pub`, encodePublicKey(kp.publicKey) + '\n', 0o644);
      const info = { keyid: keyId(kp.publicKey), publicKey: encodePublicKey(kp.publicKey), fingerprint: fingerprint(kp.publicKey), privateKeyFile: o.out, publicKeyFile: `${o.out}.pub` };
      if (o.json) return void io.printJson(info);
      io.out(`${info.keyid}\n`);
      io.note(`Private key ${o.out} (mode 0600, never leaves this machine); public key ${o.out}.pub: ${info.publicKey}`);
    });

  // ---- trust roots ---------------------------------------------------------------------
  const trust = program.command('trust').description("tenants' trust roots: who may sign releases and roots");
  trust
    .command('show')
    .description('show the active root (and any pending one) with its v1 fingerprint')
    .requiredOption('--tenant <name>', 'tenant')
    .option('--json', 'print the API answer as JSON')
    .action(async (o: { tenant: string; json?: boolean }, cmd: Command) => {
      const v = await withHub(io.target(cmd), (h) => h.get<TrustView>(`/v1/tenants/${enc(o.tenant)}/trust`));
      if (o.json) return void io.printJson(v);
      io.out(`tenant ${v.tenant}\nfingerprint ${v.fingerprint ?? '(no active root)'}\n`);
      if (v.active) io.out(rootSummary(v.active) + '\n');
      if (v.pending) io.out(rootSummary(v.pending) + '\n');
    });
  trust
    .command('init')
    .description('draft root v1 for a tenant; it becomes active once its root keys sign it (`ferry trust sign`)')
    .requiredOption('--tenant <name>', 'tenant')
    .requiredOption('--root-key <pub>', 'root key holder: .pub file or base64 (repeatable)', collect)
    .requiredOption('--release-key <pub>', 'release manager: .pub file or base64 (repeatable)', collect)
    .option('--root-threshold <n>', 'root signatures needed', '1')
    .option('--release-threshold <n>', 'release signatures needed', '1')
    .option('--json', 'print the API answer as JSON')
    .action(async (o: { tenant: string; rootKey: string[]; releaseKey: string[]; rootThreshold: string; releaseThreshold: string; json?: boolean }, cmd: Command) => {
      const body = {
        root: o.rootKey.map(readPublicKey),
        rootThreshold: Number(o.rootThreshold),
        release: o.releaseKey.map(readPublicKey),
        releaseThreshold: Number(o.releaseThreshold),
      };
      const v = await withHub(io.target(cmd), (h) => h.post<RootView>(`/v1/tenants/${enc(o.tenant)}/trust/init`, body));
      if (o.json) return void io.printJson(v);
      io.out(rootSummary(v) + '\n');
      io.note(`Now each root key holder runs: ferry trust sign --tenant ${o.tenant} --key FILE`);
    });
  const propose = (name: string, description: string, build: (o: Record<string, string>) => unknown) =>
    trust
      .command(name)
      .description(description + '; drafts the next root version, to be signed with `ferry trust sign`')
      .requiredOption('--tenant <name>', 'tenant')
      .addOption(new Option('--role <role>', 'role to change').choices(['root', 'release']).makeOptionMandatory())
      .option('--key <pub>', '.pub file or base64 public key')
      .option('--keyid <id>', 'key id (for remove-key)')
      .option('--threshold <n>', 'new threshold (for set-threshold)')
      .option('--json', 'print the API answer as JSON')
      .action(async (o: Record<string, string>, cmd: Command) => {
        const v = await withHub(io.target(cmd), (h) => h.post<RootView>(`/v1/tenants/${enc(o.tenant!)}/trust/propose`, build(o)));
        if (o.json) return void io.printJson(v);
        io.out(rootSummary(v) + '\n');
        io.note(`Root v${v.version} needs the signatures of the current and of the new root keys: ferry trust sign --tenant ${o.tenant} --key FILE`);
      });
  propose('add-key', 'add a key to a role', (o) => {
    if (!o.key) throw new FerryError('FERRY_E_VALIDATION', 'add-key needs --key');
    return { add: [{ role: o.role, key: readPublicKey(o.key) }] };
  });
  propose('remove-key', 'remove a key from a role', (o) => {
    const id = o.keyid ?? (o.key ? keyId(Buffer.from(readPublicKey(o.key).public, 'base64')) : undefined);
    if (!id) throw new FerryError('FERRY_E_VALIDATION', 'remove-key needs --keyid or --key');
    return { remove: [{ role: o.role, keyid: id }] };
  });
  propose('set-threshold', "change a role's threshold", (o) => {
    const n = Number(o.threshold);
    if (!Number.isInteger(n) || n < 1) throw new FerryError('FERRY_E_VALIDATION', '--threshold must be a whole number >= 1');
    return { thresholds: { [o.role!]: n } };
  });
  trust
    .command('sign')
    .description('sign the pending root with your key (locally) and upload only the signature')
    .requiredOption('--tenant <name>', 'tenant')
    .requiredOption('--key <file>', 'your private key (from `ferry key generate`)')
    .option('--json', 'print the API answer as JSON')
    .action(async (o: { tenant: string; key: string; json?: boolean }, cmd: Command) => {
      const kp = readKeyFile(o.key);
      const r = await withHub(io.target(cmd), async (h) => {
        const v = await h.get<TrustView>(`/v1/tenants/${enc(o.tenant)}/trust`);
        if (!v.pending) throw new FerryError('FERRY_E_NOT_FOUND', `no pending root for tenant ${o.tenant}`);
        const payload = payloadBytes(v.pending.envelope);
        const root = parseRoot(payload); // what we sign is what we show
        io.note(`Signing:\n${rootSummary({ ...v.pending, root }, false)}`); // what we sign; its counts follow once signed
        const sig = Buffer.from(sign(pae(PAYLOAD_TYPES.root, payload), kp.secretKey)).toString('base64');
        return h.post<{ active: boolean; version: number; fingerprint: string | null; pending: RootView | null }>(`/v1/tenants/${enc(o.tenant)}/trust/signatures`, {
          version: root.version,
          keyid: keyId(kp.publicKey),
          sig,
        });
      });
      if (o.json) return void io.printJson(r);
      io.out(r.active ? `root v${r.version} is active; fingerprint of v1: ${r.fingerprint}\n` : `signed root v${r.version}; more signatures needed\n`);
      if (r.pending) io.note(r.pending.needs.map((n) => `${n.role}: ${n.have} of ${n.threshold}`).join('; '));
    });

  // ---- releases ------------------------------------------------------------------------
  const release = program.command('release').description('signed releases: a stack at a version, images pinned by digest');
  release
    .command('create')
    .description('import a compose file, pin every image to its registry digest, and upload the (unsigned) release')
    .argument('<stack-or-version>', 'stack name, then the version; or only the version when the compose file has name:')
    .argument('[version]', 'semver version')
    .requiredOption('--compose <file>', 'docker-compose.yml (the file your developers run)')
    .option('--env-file <file>', 'variables for ${VAR} interpolation (repeatable, later wins); default: the project directory\'s .env', collect, [])
    .option('--profile <name>', 'activate a compose profile (repeatable)', collect, [])
    .option('--project-directory <dir>', 'where relative paths resolve (default: the compose file\'s directory)')
    .option('--build', 'build services that have build: with the local Docker engine and push them (needs --push-to)')
    .option('--push-to <registry/prefix>', 'with --build: push to REGISTRY/PREFIX/<service>:<version> and pin those digests')
    .option('--floor <version>', 'refuse older releases of this stack on agents that see this one')
    .addOption(new Option('--registry-user <user>', 'registry user for digest lookups').env('FERRY_REGISTRY_USER'))
    .addOption(new Option('--registry-password <password>', 'registry password').env('FERRY_REGISTRY_PASSWORD'))
    .option('--insecure-registry <host>', 'registry host reached over plain http (repeatable)', collect, [])
    .option('--registry <host>', 'send the registry credentials only to this registry host[:port]')
    .option('--json', 'print the API answer as JSON')
    .action(async (first: string, second: string | undefined, o: CreateOptions, cmd: Command) => {
      if (o.build && !o.pushTo) throw new FerryError('FERRY_E_VALIDATION', '--build needs --push-to REGISTRY/PREFIX: where the built images are pushed');
      if (o.pushTo && !o.build) throw new FerryError('FERRY_E_VALIDATION', '--push-to goes with --build');
      if (o.pushTo) checkPushTo(o.pushTo);
      let imported: ComposeImport;
      try {
        imported = importCompose({ file: o.compose, env: process.env, envFiles: o.envFile, profiles: o.profile, projectDir: o.projectDirectory, build: !!o.build });
      } catch (err) {
        if (err instanceof ComposeRefused) for (const w of err.warnings) io.note(`warning: ${w}`);
        throw err;
      }
      const stack = second === undefined ? imported.name : first;
      const version = second ?? first;
      if (!stack) throw new FerryError('FERRY_E_VALIDATION', `give the stack name: ferry release create STACK ${version} (${o.compose} has no top-level name:)`);
      if (imported.name && imported.name !== stack) throw new FerryError('FERRY_E_VALIDATION', `${o.compose} names the stack ${imported.name} (name:), the command ${stack}; give one of them`);
      for (const w of imported.warnings) io.note(`warning: ${w}`);
      for (const s of imported.skipped) io.note(`note: service ${s} is left out: none of its profiles is active (--profile)`);
      if (imported.policyGated.length) {
        io.note("Each bank's agent policy has to allow these settings, or its agents refuse the release:");
        for (const p of imported.policyGated) io.note(`  ${p}`);
      }
      const compose = { ...imported.services };
      if (Object.keys(imported.builds).length) {
        const built = await buildAndPush(imported.builds, { pushTo: o.pushTo!, version, note: io.note });
        for (const [svc, ref] of Object.entries(built)) compose[svc] = { ...compose[svc]!, imageRef: ref };
      }
      io.note(`Resolving ${Object.keys(compose).length} image(s) to digests...`);
      const services = await pinImages(compose, {
        username: o.registryUser,
        password: o.registryPassword,
        credentialsFor: o.registry,
        insecure: o.insecureRegistry,
        imageAt: imported.imageAt,
      });
      const doc: Release = {
        _type: 'release',
        stack,
        version,
        ...(o.floor ? { floor: o.floor } : {}),
        createdAt: Date.now(),
        services,
        networks: imported.networks,
        volumes: imported.volumes,
        ...(imported.checks && { checks: imported.checks }),
      };
      const payload = canonicalJson(doc);
      parseRelease(payload); // refuse locally what the hub and agents would refuse
      const r = await withHub(io.target(cmd), (h) => h.post<ReleaseView>('/v1/releases', { payload: payload.toString('base64') }));
      if (o.json) return void io.printJson(r);
      io.out(`${r.stack}@${r.version} ${r.digest}\n`);
      for (const [svc, img] of Object.entries(r.services)) io.note(`  ${svc}: ${img}`);
      const secrets = [...new Set(Object.values(services).flatMap((x) => [...(x.secrets ?? []).map((f) => `secret ${f.name}`), ...(x.configs ?? []).map((f) => `config ${f.name}`)]))];
      if (secrets.length) io.note(`The bank provides on each agent host (values never pass the hub): ${secrets.join(', ')}`);
      io.note(`Release managers now sign it: ferry release sign ${r.stack}@${r.version} --key FILE`);
    });
  release
    .command('sign')
    .description('sign a release with your key (locally) and upload only the signature')
    .argument('<ref>', 'STACK@VERSION')
    .requiredOption('--key <file>', 'your private key (from `ferry key generate`)')
    .option('--json', 'print the API answer as JSON')
    .action(async (ref: string, o: { key: string; json?: boolean }, cmd: Command) => {
      const { stack, version } = parseRef(ref);
      const kp = readKeyFile(o.key);
      const r = await withHub(io.target(cmd), async (h) => {
        const v = await h.get<ReleaseView>(`/v1/releases/${enc(stack)}/${enc(version)}`);
        const payload = payloadBytes(v.envelope!);
        const rel = parseRelease(payload);
        if (rel.stack !== stack || rel.version !== version) throw new FerryError('FERRY_E_PAYLOAD_INVALID', `the hub served ${rel.stack}@${rel.version} for ${ref}`);
        io.note(`Signing ${stack}@${version}:`);
        for (const [svc, s] of Object.entries(rel.services)) io.note(`  ${svc}: ${s.image}`);
        const sig = Buffer.from(sign(pae(PAYLOAD_TYPES.release, payload), kp.secretKey)).toString('base64');
        const after = await h.post<ReleaseView>(`/v1/releases/${enc(stack)}/${enc(version)}/signatures`, { publicKey: encodePublicKey(kp.publicKey), sig });
        return { before: v, after };
      });
      const { before, after } = r;
      if (o.json) io.printJson(after);
      else {
        io.out(`signed ${after.stack}@${after.version}; ${after.signers.length} signature(s)\n`);
        for (const t of after.tenants) io.note(`  tenant ${t.tenant}: ${t.have} of ${t.threshold}${t.met ? ' — deployable' : ''}`);
      }
      // A key no tenant's root names raises no tenant's count: the signature is stored but counts for nobody.
      const keyid = keyId(kp.publicKey);
      const counted = after.tenants.some((t) => t.have > (before.tenants.find((b) => b.tenant === t.tenant)?.have ?? 0));
      if (!counted && !before.signers.some((s) => s.keyid === keyid)) {
        // Not an error: an institution's own approver signs with a key only its local policy names (cosigners).
        const w = new FerryError('FERRY_E_SIG_UNKNOWN_KEY', `key ${keyid.slice(0, 16)}… (${o.key}): this signature counts for no tenant${after.tenants.length ? ` (${after.tenants.map((t) => `${t.tenant} ${t.have} of ${t.threshold}`).join(', ')})` : ', no tenant has an active root'}; it counts only on agents whose local policy names this key as a co-signer`);
        io.note(`warning ${w.code}: ${w.message}\n  ${w.hint}`);
      }
    });
  release
    .command('offer')
    .description("offer a release to tenants: their people see it, and their approvers can co-sign it before it is deployed (release-manager)")
    .argument('<stack@version>', 'the release, e.g. payments@2.4.0')
    .requiredOption('--tenant <names...>', 'tenant(s) to offer it to')
    .option('--json', 'print the API answer as JSON')
    .action(async (ref: string, o: { tenant: string[]; json?: boolean }, cmd: Command) => {
      const { stack, version } = parseRef(ref);
      const r = await withHub(io.target(cmd), (h) => h.post<{ stack: string; version: string; tenants: string[] }>(`/v1/releases/${enc(stack)}/${enc(version)}/tenants`, { tenants: o.tenant }));
      if (o.json) return void io.printJson(r);
      io.out(`${r.stack}@${r.version} is offered to ${r.tenants.join(', ')}\n`);
    });
  release
    .command('ls')
    .description('list releases with their signers and, per tenant, whether the threshold is met')
    .option('--stack <name>', 'only this stack')
    .option('--json', 'print the API answer as JSON')
    .action(async (o: { stack?: string; json?: boolean }, cmd: Command) => {
      const r = await withHub(io.target(cmd), (h) => h.get<{ releases: ReleaseView[] }>('/v1/releases', { stack: o.stack }));
      if (o.json) return void io.printJson(r);
      io.out(
        table(
          ['STACK', 'VERSION', 'SIGNERS', 'DEPLOYABLE TO', 'DIGEST'],
          r.releases.map((x) => [
            x.stack,
            x.version,
            x.signers.map((s) => s.name ?? s.keyid.slice(0, 12)).join(',') || '-',
            x.tenants.filter((t) => t.met).map((t) => t.tenant).join(',') || '-',
            x.digest.slice(0, 19),
          ]),
        ),
      );
    });
  release
    .command('show')
    .description('show one release: images, signers, thresholds per tenant')
    .argument('<ref>', 'STACK@VERSION')
    .option('--json', 'print the API answer as JSON')
    .action(async (ref: string, o: { json?: boolean }, cmd: Command) => {
      const { stack, version } = parseRef(ref);
      const r = await withHub(io.target(cmd), (h) => h.get<ReleaseView>(`/v1/releases/${enc(stack)}/${enc(version)}`));
      if (o.json) return void io.printJson(r);
      io.out(`${r.stack}@${r.version}\ndigest   ${r.digest}\ncreated  ${r.createdAt}\nfloor    ${r.floor ?? '-'}\n`);
      for (const [svc, img] of Object.entries(r.services)) io.out(`service  ${svc}: ${img}\n`);
      for (const s of r.signers) io.out(`signer   ${s.name ?? '-'} ${s.keyid} at ${s.signedAt}\n`);
      for (const t of r.tenants) io.out(`tenant   ${t.tenant}: ${t.have} of ${t.threshold}${t.met ? ' (threshold met)' : ''}\n`);
    });

  // ---- deploy ----------------------------------------------------------------------------
  program
    .command('deploy')
    .description('send a signed directive putting STACK@VERSION on an agent')
    .argument('<ref>', 'STACK@VERSION')
    .requiredOption('--agent <id>', 'agent id (agt_...)')
    .option('--wait [seconds]', 'wait for the agent to accept or refuse (default 60 s)')
    .option('--json', 'print the API answer as JSON')
    .action(async (ref: string, o: { agent: string; wait?: string | boolean; json?: boolean }, cmd: Command) => {
      const { stack, version } = parseRef(ref);
      const wait = o.wait === undefined ? 0 : o.wait === true ? 60 : Number(o.wait);
      if (!Number.isInteger(wait) || wait < 0 || wait > 600) throw new FerryError('FERRY_E_VALIDATION', '--wait takes 0 to 600 seconds');
      const { d, seen } = await withHub(io.target(cmd), async (h) => {
        if (wait) {
          // Say we wait only for what exists: a missing release or agent is reported at once.
          await h.get(`/v1/releases/${enc(stack)}/${enc(version)}`);
          await h.get(`/v1/agents/${enc(o.agent)}`);
          io.note(`Waiting up to ${wait} s for agent ${o.agent} to acknowledge...`);
        }
        // The hub holds the answer until the agent acks or the wait ends: the client waits that long, and a little more.
        const d = await h.post<DirectiveView>('/v1/deploy', { stack, version, agent: o.agent, wait }, { timeoutMs: (wait + 30) * 1000 });
        const seen = wait && d.status === 'pending' ? await h.get<AgentView>(`/v1/agents/${enc(o.agent)}`).catch(() => undefined) : undefined;
        return { d, seen };
      });
      if (o.json) io.printJson(d);
      else io.out(`directive ${d.seq} for ${o.agent}: ${stack}@${version} ${d.status}${d.sent ? '' : ' (agent offline; delivered when it connects)'}\n`);
      if (d.status === 'refused') throw new FerryError(isCode(d.code) ? d.code : 'FERRY_E_INTERNAL', `agent ${o.agent} refused directive ${d.seq}: ${d.message ?? ''}`);
      if (wait && d.status === 'pending') {
        const state = !seen ? '' : seen.status === 'connected' ? ' (connected, but it did not acknowledge)' : ` (${seen.status}${seen.lastSeenAt ? `, last seen ${seen.lastSeenAt}` : ', never seen'})`;
        throw new FerryError('FERRY_E_AGENT_NO_ANSWER', `agent ${o.agent}${state} did not answer directive ${d.seq} within ${wait} s; it stays pending and is delivered when the agent connects`);
      }
    });
}


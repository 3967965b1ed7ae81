// ferry agent-bundle upload|sign|ls|show: agent bundles for self-upgrade.
// The archive is built by `npm run package`; the hub writes the statement
// about it (version, digests, tenants, floor) and release managers sign
// that statement on their own machines, as they sign releases.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { AgentBundle, parseAgentBundle } from '../shared/agent-bundle.js';
import { PAYLOAD_TYPES, pae, payloadBytes, type Envelope } from '../shared/dsse.js';
import { FerryError } from '../shared/errors.js';
import { encodePublicKey, sign } from '../shared/keys.js';
import { withHub } from './client.js';
import { table } from './format.js';
import { readKeyFile, type CliIo } from './release-commands.js';

interface BundleView {
  version: string;
  digest: string;
  size: number;
  statementDigest: string;
  floor: string | null;
  stateFormat: number;
  minStateFormat: number;
  node: string | null;
  files: number;
  createdAt: string;
  signers: { keyid: string; name: string | null; signedAt: string }[];
  tenants: { tenant: string; met: boolean; have: number; threshold: number }[];
  statement?: AgentBundle;
  envelope?: Envelope;
}

const enc = encodeURIComponent;
const collect = (v: string, prev: string[] = []) => [...prev, v];
const mb = (n: number) => `${(n / (1024 * 1024)).toFixed(1)} MB`;
const tenantsLine = (b: BundleView) => b.tenants.map((t) => `${t.tenant} ${t.have}/${t.threshold}${t.met ? ' ok' : ''}`).join(', ') || '-';

function detail(b: BundleView): string {
  const rows: [string, string][] = [
    ['version', b.version],
    ['archive', `${b.digest} (${mb(b.size)}, ${b.files} files${b.node ? `, Node ${b.node}` : ', runs on the host\'s node'})`],
    ['statement', b.statementDigest],
    ['state', `reads formats ${b.minStateFormat}..${b.stateFormat}`],
    ['floor', b.floor ?? '-'],
    ['created', b.createdAt],
    ['signers', b.signers.map((s) => s.name ?? s.keyid.slice(0, 12)).join(', ') || '-'],
    ...b.tenants.map((t) => ['tenant', `${t.tenant}: ${t.have} of ${t.threshold} release signatures${t.met ? ' — installable' : ''}`] as [string, string]),
  ];
  return rows.map(([k, v]) => `${k.padEnd(10)} ${v}`).join('\n') + '\n';
}

export function registerUpgradeCommands(program: Command, io: CliIo): void {
  const b = program.command('agent-bundle').description('ferry-agent bundles: upload, sign and list the versions agents upgrade themselves to');
  b.command('upload')
    .description('upload an agent bundle (.tar.gz from `npm run package`) for tenants; the hub writes the statement release managers then sign (release-manager)')
    .argument('<file>', 'the bundle archive, e.g. dist/package/ferry-agent-0.3.0.tar.gz')
    .requiredOption('--tenant <name>', 'a tenant whose agents may install it (repeatable)', collect)
    .option('--floor <version>', 'agents that install it refuse agent versions below this from then on')
    .option('--json', 'print the API answer as JSON')
    .action(async (file: string, o: { tenant: string[]; floor?: string; json?: boolean }, cmd: Command) => {
      let bytes: Buffer;
      try {
        bytes = readFileSync(file);
      } catch (err) {
        throw new FerryError('FERRY_E_VALIDATION', `${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
      const r = await withHub(io.target(cmd), (h) => h.postBytes<BundleView>('/v1/agent-bundles', bytes, 'application/gzip', { tenants: o.tenant.join(','), floor: o.floor }, { timeoutMs: 300_000 }));
      if (o.json) return void io.printJson(r);
      io.out(detail(r));
      io.note(`Release managers now sign it: ferry agent-bundle sign ${r.version} --key FILE; then: ferry rollout create --agent-version ${r.version} --to SELECTOR`);
    });
  b.command('sign')
    .description('sign an agent bundle\'s statement with your key (locally) and upload only the signature')
    .argument('<version>', 'the agent version')
    .requiredOption('--key <file>', 'your private key (from `ferry key generate`)')
    .option('--json', 'print the API answer as JSON')
    .action(async (version: string, o: { key: string; json?: boolean }, cmd: Command) => {
      const kp = readKeyFile(o.key);
      const r = await withHub(io.target(cmd), async (h) => {
        const v = await h.get<BundleView>(`/v1/agent-bundles/${enc(version)}`);
        const payload = payloadBytes(v.envelope!);
        const st = parseAgentBundle(payload); // what we sign is what we show
        if (st.version !== version) throw new FerryError('FERRY_E_PAYLOAD_INVALID', `the hub served the statement of ${st.version} for ${version}`);
        io.note(`Signing ferry-agent ${st.version}: archive ${st.archive.sha256} (${st.archive.size} bytes), for ${st.tenants.join(', ')}${st.floor ? `, floor ${st.floor}` : ''}`);
        const sig = Buffer.from(sign(pae(PAYLOAD_TYPES.agentBundle, payload), kp.secretKey)).toString('base64');
        return h.post<BundleView>(`/v1/agent-bundles/${enc(version)}/signatures`, { publicKey: encodePublicKey(kp.publicKey), sig });
      });
      if (o.json) return void io.printJson(r);
      io.out(`signed ferry-agent ${r.version}; ${r.signers.length} signature(s)\n`);
      for (const t of r.tenants) io.note(`  tenant ${t.tenant}: ${t.have} of ${t.threshold}${t.met ? ' — installable' : ''}`);
    });
  b.command('ls')
    .description('list agent bundles, their signers and, per tenant, whether its threshold is met')
    .option('--json', 'print the API answer as JSON')
    .action(async (o: { json?: boolean }, cmd: Command) => {
      const r = await withHub(io.target(cmd), (h) => h.get<{ bundles: BundleView[] }>('/v1/agent-bundles'));
      if (o.json) return void io.printJson(r);
      io.out(table(['VERSION', 'SIZE', 'NODE', 'FLOOR', 'SIGNERS', 'TENANTS (have/threshold)'], r.bundles.map((x) => [x.version, mb(x.size), x.node ?? 'host', x.floor ?? '-', String(x.signers.length), tenantsLine(x)])));
    });
  b.command('show')
    .description('show one agent bundle')
    .argument('<version>', 'the agent version')
    .option('--json', 'print the API answer as JSON')
    .action(async (version: string, o: { json?: boolean }, cmd: Command) => {
      const r = await withHub(io.target(cmd), (h) => h.get<BundleView>(`/v1/agent-bundles/${enc(version)}`));
      if (o.json) return void io.printJson(r);
      io.out(detail(r));
    });
}

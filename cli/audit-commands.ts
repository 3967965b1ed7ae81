// ferry audit ls / verify: read a tenant's (or the hub's) audit log, and
// verify it end to end here, trusting only the signing keys: the hub key as
// the tenant's trust root names it, and the agents' own keys.
import { Command } from 'commander';
import { HUB_LOG } from '../shared/audit.js';
import { verifyLog, type ExportedCheckpoint, type ExportedEntry, type VerifyReport } from '../shared/audit-verify.js';
import { FerryError } from '../shared/errors.js';
import { decodePublicKey, keyId } from '../shared/keys.js';
import { trustedKeys, type Root } from '../shared/trust.js';
import { withHub, type HubClient } from './client.js';
import { table } from './format.js';
import type { CliIo } from './release-commands.js';

interface EntryView {
  index: number;
  at: string;
  actor: { kind: string; id: string | null };
  surface: string;
  action: string;
  target: { type: string; id: string } | null;
  outcome: string;
  details: Record<string, unknown>;
  personalValues: Record<string, string | null>;
}

const enc = encodeURIComponent;

async function hubKeysFor(h: HubClient, log: string, io: CliIo): Promise<Map<string, Uint8Array>> {
  if (log !== HUB_LOG) {
    const t = await h.get<{ active: { root: Root } | null }>(`/v1/tenants/${enc(log)}/trust`);
    if (t.active) return trustedKeys(t.active.root, 'hub').keys as Map<string, Uint8Array>;
  }
  const a = await h.get<{ hubKey: string }>('/v1/audit');
  io.note(`note: log ${log} has no trust root to name the hub key; using the key the hub reports`);
  const pub = decodePublicKey(a.hubKey);
  return new Map([[keyId(pub), pub]]);
}

async function verifyOne(h: HubClient, log: string, io: CliIo): Promise<VerifyReport> {
  const keys = await hubKeysFor(h, log, io);
  const text = await h.getText(`/v1/audit/${enc(log)}/export`);
  const checkpoints: ExportedCheckpoint[] = [];
  const entries: ExportedEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const x = JSON.parse(line) as { kind: string } & Record<string, unknown>;
    if (x.kind === 'checkpoint') checkpoints.push(x as unknown as ExportedCheckpoint);
    else entries.push({ index: x.index as number, data: Buffer.from(x.data as string, 'base64'), leafHash: Buffer.from(x.leafHash as string, 'hex') });
  }
  return verifyLog(log, entries, checkpoints, keys);
}

/** What a failed report establishes, in a line: the entry a check singled out, else the range a checkpoint no longer vouches for. */
export function whatIsKnown(r: VerifyReport): string {
  if (r.firstBad !== null) return `${r.log}: first bad entry ${r.firstBad}`;
  const u = r.unvouched;
  if (u) {
    return `${r.log}: entries ${u.from}..${u.to} are no longer vouched for by the checkpoint of size ${u.checkpointSize}${u.witnessed ? ' that agents witnessed' : ''} (one of them was rewritten with its leaf hash; no single entry can be named)`;
  }
  const forked = r.problems.find((p) => p.kind === 'forked');
  if (forked) return `${r.log}: ${forked.message}`;
  return `${r.log}: ${r.problems[0]?.message ?? 'checkpoints do not verify'}`;
}

export function registerAuditCommands(program: Command, io: CliIo): void {
  const audit = program.command('audit').description('the tamper-evident operation record');
  audit
    .command('ls')
    .description('list operations on a tenant (or hub-wide with --hub-log): who, what, on what, from where, outcome')
    .option('--tenant <name>', 'tenant whose log to read')
    .option('--hub-log', 'read the hub-wide log (tenants, API tokens, releases, logins)')
    .option('--since <time>', 'only entries at or after this ISO time')
    .option('--limit <n>', 'at most this many entries', '500')
    .option('--json', 'print the API answer as JSON')
    .action(async (o: { tenant?: string; hubLog?: boolean; since?: string; limit: string; json?: boolean }, cmd: Command) => {
      const log = o.hubLog ? HUB_LOG : o.tenant;
      if (!log) throw new FerryError('FERRY_E_VALIDATION', 'give --tenant NAME or --hub-log');
      const r = await withHub(io.target(cmd), async (h) => {
        const got = await h.get<{ log: string; size: number; entries: EntryView[] }>(`/v1/audit/${enc(log)}/entries`, { since: o.since, limit: o.limit });
        // The hub answers an empty log for a name it does not know: an empty log of no tenant is a typo, not a quiet tenant.
        if (got.size === 0 && log !== HUB_LOG) {
          const { tenants } = await h.get<{ tenants: { name: string }[] }>('/v1/tenants');
          if (!tenants.some((t) => t.name === log)) throw new FerryError('FERRY_E_NOT_FOUND', `tenant ${log}; see \`ferry tenant ls\``);
        }
        return got;
      });
      if (o.json) return void io.printJson(r);
      io.out(
        table(
          ['#', 'AT', 'WHO', 'FROM', 'ACTION', 'ON', 'OUTCOME'],
          r.entries.map((e) => [
            String(e.index),
            e.at,
            e.personalValues.operator ?? (e.actor.id ? `${e.actor.kind}:${e.actor.id}` : e.actor.kind),
            e.surface,
            e.action,
            e.target ? `${e.target.type}:${e.target.id}` : '-',
            e.outcome + (e.details.code ? ` ${String(e.details.code)}` : ''),
          ]),
        ),
      );
    });
  audit
    .command('verify')
    .description('verify logs end to end against signed, agent-witnessed checkpoints; names the first bad entry')
    .option('--tenant <name>', 'only this tenant\'s log (default: every log)')
    .option('--json', 'print the reports as JSON')
    .action(async (o: { tenant?: string; json?: boolean }, cmd: Command) => {
      const reports = await withHub(io.target(cmd), async (h) => {
        const logs = o.tenant ? [o.tenant] : (await h.get<{ logs: { log: string }[] }>('/v1/audit')).logs.map((l) => l.log);
        const out: VerifyReport[] = [];
        for (const log of logs) out.push(await verifyOne(h, log, io));
        return out;
      });
      if (o.json) io.printJson({ ok: reports.every((r) => r.ok), reports });
      else {
        for (const r of reports) {
          io.out(`${r.ok ? 'ok  ' : 'FAIL'} ${r.log}: ${r.entries} entries, ${r.checkpoints} checkpoints (${r.witnessed} witnessed by agents), verified through ${r.verifiedSize}\n`);
          for (const p of r.problems) io.out(`     ${p.kind}${p.index !== null ? ` at entry ${p.index}` : p.range ? ` in entries ${p.range.from}..${p.range.to}` : ''}: ${p.message}\n`);
          if (r.entries > r.verifiedSize && r.ok) io.note(`     ${r.entries - r.verifiedSize} newest entries are not yet covered by a checkpoint`);
        }
      }
      const bad = reports.filter((r) => !r.ok);
      if (bad.length) throw new FerryError('FERRY_E_AUDIT_INCONSISTENT', bad.map(whatIsKnown).join('; '));
    });
}

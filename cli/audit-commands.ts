// ferry audit ls / verify: read a tenant's (or the hub's) audit log, and
// verify it end to end here, trusting only the signing keys: the hub key as
// the tenant's trust root names it, and the agents' own keys.
import { readFileSync } from 'node:fs';
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

/** A log's export (GET /v1/audit/:log/export, the console's evidence pack): NDJSON, checkpoints then entries. */
function parseExport(text: string, where: string): { checkpoints: ExportedCheckpoint[]; entries: ExportedEntry[] } {
  const checkpoints: ExportedCheckpoint[] = [];
  const entries: ExportedEntry[] = [];
  text.split('\n').forEach((line, i) => {
    if (!line) return;
    let x: { kind?: unknown } & Record<string, unknown>;
    try {
      x = JSON.parse(line) as typeof x;
    } catch {
      throw new FerryError('FERRY_E_VALIDATION', `${where} line ${i + 1}: not JSON; an export of \`GET /v1/audit/LOG/export\` (the console's evidence pack) has one JSON object a line`);
    }
    if (x.kind === 'checkpoint') checkpoints.push(x as unknown as ExportedCheckpoint);
    else if (x.kind === 'entry' && typeof x.index === 'number' && typeof x.data === 'string' && typeof x.leafHash === 'string') entries.push({ index: x.index, data: Buffer.from(x.data, 'base64'), leafHash: Buffer.from(x.leafHash, 'hex') });
    else throw new FerryError('FERRY_E_VALIDATION', `${where} line ${i + 1}: neither a checkpoint nor an entry of an audit export`);
  });
  return { checkpoints, entries };
}

async function verifyOne(h: HubClient, log: string, io: CliIo): Promise<VerifyReport> {
  const keys = await hubKeysFor(h, log, io);
  const { entries, checkpoints } = parseExport(await h.getText(`/v1/audit/${enc(log)}/export`), `the export of ${log}`);
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
    .option('--file <export.ndjson>', "verify an evidence pack (the console's download, or GET /v1/audit/LOG/export) instead of the hub's log; needs --tenant")
    .option('--hub-key <public-key>', 'with --file: the hub key to trust (base64, as the tenant\'s trust root names it), so nothing is asked of the hub')
    .option('--json', 'print the reports as JSON')
    .action(async (o: { tenant?: string; file?: string; hubKey?: string; json?: boolean }, cmd: Command) => {
      if ((o.file || o.hubKey) && !o.tenant) throw new FerryError('FERRY_E_VALIDATION', '--file and --hub-key: give --tenant NAME too (the log the pack is of)');
      if (o.hubKey && !o.file) throw new FerryError('FERRY_E_VALIDATION', '--hub-key: only with --file (a hub\'s own log is verified against the key its trust root names)');
      let reports: VerifyReport[];
      if (o.file) {
        const file = o.file;
        let text: string;
        try {
          text = readFileSync(file, 'utf8');
        } catch (err) {
          throw new FerryError('FERRY_E_VALIDATION', `--file ${file}: ${(err as Error).message}`);
        }
        const { entries, checkpoints } = parseExport(text, file);
        const keys = o.hubKey ? new Map([[keyId(decodePublicKey(o.hubKey)), decodePublicKey(o.hubKey)]]) : await withHub(io.target(cmd), (h) => hubKeysFor(h, o.tenant!, io));
        reports = [verifyLog(o.tenant!, entries, checkpoints, keys)];
      } else {
        reports = await withHub(io.target(cmd), async (h) => {
          const logs = o.tenant ? [o.tenant] : (await h.get<{ logs: { log: string }[] }>('/v1/audit')).logs.map((l) => l.log);
          const out: VerifyReport[] = [];
          for (const log of logs) out.push(await verifyOne(h, log, io));
          return out;
        });
      }
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

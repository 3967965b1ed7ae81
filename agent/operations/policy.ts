// What the institution allows of remote operations, from the `operations`
// section of its local policy (agent/policy.ts reads the file). Pure.
//
//   operations:
//     deny: [exec]                    # kinds refused everywhere
//     allow: [restart, logs, stats]   # when given: only these kinds, everywhere
//     anytime: [logs, stats, networks]   # kinds allowed outside maintenance windows (default: the ones that only read)
//     services:                       # per stack or per stack/service: both entries that apply must allow the kind
//       payments/api: { deny: [stop, scale] }
//       payments: { allow: [restart, logs] }
//     exec:                           # the only commands `ferry exec` runs, per stack/service (or stack)
//       payments/api:
//         commands:
//           migrate-status: { argv: [/app/bin/migrate, status] }
//           tail-log: { argv: [tail, -n], args: ['[0-9]{1,4}', '/var/log/app/[a-z0-9._-]+'], timeout: 30s }
//         shell: false                # true: also `ferry exec --shell 'command line'` (sh -c) in this service
//
// An operation is refused (each with its code) when its kind is denied or not
// allowed, by the global lists or by an entry for its stack or service;
// when it changes something outside the maintenance windows; and, for exec,
// when the command is not listed for the service, an argument does not match
// its pattern, or a shell is asked for where none is allowed.
import { z } from 'zod';
import { FerryError } from '../../shared/errors.js';
import { durationMs } from '../../shared/duration.js';
import { CHANGING_KINDS, OPERATION_KINDS, targetText, type Operation, type OperationKind } from '../../shared/operation.js';

const TARGET = /^[a-z0-9][a-z0-9_-]{0,62}(\/[a-z0-9][a-z0-9_-]{0,62})?$/;
const Kinds = z.array(z.enum(OPERATION_KINDS)).max(OPERATION_KINDS.length);
/** Kinds the top-level lists name: the operations below, and the directive's deploy and rollback. */
const TOP_KINDS = ['deploy', 'rollback', ...OPERATION_KINDS] as const;

const ExecCommand = z.strictObject({
  argv: z.array(z.string().min(1).max(1024)).min(1).max(64),
  /** Patterns for the arguments that may follow, by position (each must match the whole argument). */
  args: z.array(z.string().min(1).max(512)).max(32).optional(),
  /** How long it may run (default 60s, at most 1h). */
  timeout: z.string().max(16).optional(),
});

export const OperationsSection = z.strictObject({
  allow: z.array(z.enum(TOP_KINDS)).optional(),
  deny: z.array(z.enum(TOP_KINDS)).optional(),
  anytime: Kinds.optional(),
  services: z.record(z.string().regex(TARGET, 'stack or stack/service'), z.strictObject({ allow: Kinds.optional(), deny: Kinds.optional() })).optional(),
  exec: z
    .record(
      z.string().regex(TARGET, 'stack or stack/service'),
      z.strictObject({ commands: z.record(z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'a command name: letters, digits, . _ -'), ExecCommand).optional(), shell: z.boolean().optional() }),
    )
    .optional(),
});
export type OperationsSection = z.infer<typeof OperationsSection>;

export interface ExecRule {
  argv: readonly string[];
  args: readonly RegExp[];
  /** The patterns as the policy writes them (for refusals). */
  argText: readonly string[];
  timeoutMs: number;
}

export interface OperationLimits {
  readonly allow: readonly string[] | null;
  readonly deny: readonly string[];
  readonly anytime: readonly OperationKind[];
  readonly services: ReadonlyMap<string, { allow: readonly OperationKind[] | null; deny: readonly OperationKind[] }>;
  readonly exec: ReadonlyMap<string, { commands: ReadonlyMap<string, ExecRule>; shell: boolean }>;
}

export const DEFAULT_EXEC_TIMEOUT_MS = 60_000;
export const MAX_EXEC_TIMEOUT_MS = 3_600_000;
/** Without `anytime`: the kinds that only read run outside maintenance windows too. */
export const DEFAULT_ANYTIME: readonly OperationKind[] = OPERATION_KINDS.filter((k) => !CHANGING_KINDS.includes(k));

export const DEFAULT_OPERATION_LIMITS: OperationLimits = Object.freeze({ allow: null, deny: [], anytime: DEFAULT_ANYTIME, services: new Map(), exec: new Map() });

/** The section as rules; `source` names the file in errors. Throws FERRY_E_POLICY_INVALID. */
export function operationLimits(s: OperationsSection | undefined, source: string): OperationLimits {
  if (!s) return DEFAULT_OPERATION_LIMITS;
  const bad = (why: string) => new FerryError('FERRY_E_POLICY_INVALID', `${source}: operations.${why}`);
  const exec = new Map<string, { commands: Map<string, ExecRule>; shell: boolean }>();
  for (const [target, e] of Object.entries(s.exec ?? {})) {
    const commands = new Map<string, ExecRule>();
    for (const [name, c] of Object.entries(e.commands ?? {})) {
      const args = (c.args ?? []).map((p, i) => {
        try {
          return new RegExp(`^(?:${p})$`, 'u');
        } catch (err) {
          throw bad(`exec.${target}.commands.${name}.args[${i}]: not a regular expression (${(err as Error).message})`);
        }
      });
      let timeoutMs = DEFAULT_EXEC_TIMEOUT_MS;
      if (c.timeout !== undefined) {
        try {
          timeoutMs = durationMs(c.timeout, 'timeout');
        } catch {
          throw bad(`exec.${target}.commands.${name}.timeout: a duration like 30s or 5m`);
        }
        if (timeoutMs < 1000 || timeoutMs > MAX_EXEC_TIMEOUT_MS) throw bad(`exec.${target}.commands.${name}.timeout: between 1s and 1h`);
      }
      commands.set(name, { argv: c.argv, args, argText: c.args ?? [], timeoutMs });
    }
    exec.set(target, { commands, shell: e.shell === true });
  }
  return Object.freeze({
    allow: s.allow ?? null,
    deny: s.deny ?? [],
    anytime: s.anytime ?? DEFAULT_ANYTIME,
    services: new Map(Object.entries(s.services ?? {}).map(([t, e]) => [t, { allow: e.allow ?? null, deny: e.deny ?? [] }])),
    exec,
  });
}

/** What `exec` runs once the policy allowed it: the argv, and how long it may take. */
export interface ExecPlan {
  argv: string[];
  timeoutMs: number;
}

/**
 * The policy's decision on one verified operation at `now`. `inWindow` says
 * whether `now` falls in a maintenance window (agent/policy.ts). Returns what
 * exec runs (null for other kinds); throws FERRY_E_POLICY_OPERATION,
 * FERRY_E_POLICY_WINDOW or FERRY_E_POLICY_EXEC naming the rule that decided.
 */
export function checkOperation(l: OperationLimits, op: Pick<Operation, 'kind' | 'stack' | 'service' | 'args'>, inWindow: boolean, source: string | null): ExecPlan | null {
  const where = source ?? 'the local policy';
  const target = targetText(op);
  const refuse = (rule: string) => new FerryError('FERRY_E_POLICY_OPERATION', `${op.kind} on ${target}: ${rule} (${where})`);
  if (l.deny.includes(op.kind)) throw refuse('denied by operations.deny');
  if (l.allow && !l.allow.includes(op.kind)) throw refuse(`not in operations.allow (${l.allow.join(', ') || 'empty'})`);
  for (const key of entriesFor(op)) {
    const e = l.services.get(key);
    if (!e) continue;
    if (e.deny.includes(op.kind)) throw refuse(`denied by operations.services.${key}.deny`);
    if (e.allow && !e.allow.includes(op.kind)) throw refuse(`not in operations.services.${key}.allow (${e.allow.join(', ') || 'empty'})`);
  }
  if (!inWindow && !l.anytime.includes(op.kind)) {
    throw new FerryError('FERRY_E_POLICY_WINDOW', `${op.kind} on ${target} changes what runs and is allowed only in a maintenance window (maintenanceWindows; operations.anytime lists what runs outside them: ${l.anytime.join(', ') || 'nothing'}) (${where})`);
  }
  return op.kind === 'exec' ? execPlan(l, op, where) : null;
}

/** The policy entries that apply to an operation's target: stack/service, then stack. */
function entriesFor(op: Pick<Operation, 'stack' | 'service'>): string[] {
  if (!op.stack) return [];
  return op.service ? [`${op.stack}/${op.service}`, op.stack] : [op.stack];
}

function execPlan(l: OperationLimits, op: Pick<Operation, 'stack' | 'service' | 'args'>, where: string): ExecPlan {
  const target = targetText(op);
  const keys = entriesFor(op).filter((k) => l.exec.has(k));
  const refuse = (why: string) => new FerryError('FERRY_E_POLICY_EXEC', `${target}: ${why} (${where})`);
  if (!keys.length) throw refuse('operations.exec lists no commands for this service');
  if (op.args.shell !== undefined) {
    const allowing = keys.find((k) => l.exec.get(k)!.shell);
    if (!allowing) throw refuse(`a shell is not allowed here (operations.exec.${keys[0]}.shell is not true)`);
    return { argv: ['/bin/sh', '-c', op.args.shell], timeoutMs: DEFAULT_EXEC_TIMEOUT_MS };
  }
  const name = op.args.command!;
  const key = keys.find((k) => l.exec.get(k)!.commands.has(name));
  if (!key) {
    const listed = keys.flatMap((k) => [...l.exec.get(k)!.commands.keys()]);
    throw refuse(`command ${JSON.stringify(name)} is not listed (operations.exec lists: ${listed.join(', ') || 'none'})`);
  }
  const rule = l.exec.get(key)!.commands.get(name)!;
  const extra = op.args.argv ?? [];
  if (extra.length > rule.args.length) throw refuse(`${name} takes at most ${rule.args.length} argument(s) after ${JSON.stringify(rule.argv)}, got ${extra.length}`);
  extra.forEach((a, i) => {
    if (!rule.args[i]!.test(a)) throw refuse(`${name}: argument ${i + 1} ${JSON.stringify(a.slice(0, 80))} does not match ${rule.argText[i]!} (operations.exec.${key}.commands.${name}.args[${i}])`);
  });
  return { argv: [...rule.argv, ...extra], timeoutMs: rule.timeoutMs };
}

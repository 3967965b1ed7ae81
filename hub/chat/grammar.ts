// The one chat grammar, parsed on the hub for every transport. Pure.
//
// A command is a row of COMMANDS: its words (the CLI's own: `rollout pause`,
// `agent ls`, `release show`), aliases, typed parameters, flags, the action
// it needs (shared/roles.ts, for help and the first check) and whether it is
// dangerous (it then shows a plan and waits for a confirmation). A new verb
// is one row here and one executor in hub/chat/commands.ts (a mapped type: a
// row without its executor does not compile). Help is generated from the
// rows and filtered to what the asker may run.
//
//   message  := ["ferry" | "/ferry"] words params flags
//   params   := positional values; `to SELECTOR` where a parameter has a keyword
//   flags    := --name value | --name=value | --dry-run (any command)
// Quotes ("…", '…', “…”) keep spaces in one value.
import { FerryError } from '../../shared/errors.js';
import type { Action } from '../../shared/roles.js';

export type ParamKind = 'release' | 'rollout' | 'agent' | 'stack' | 'selector' | 'text' | 'code' | 'lock' | 'choice' | 'tenant';

export interface ParamSpec {
  readonly name: string;
  readonly kind: ParamKind;
  readonly optional?: true;
  /** A word that introduces it (`deploy payments@2.4.0 to env=prod`). */
  readonly keyword?: string;
  readonly choices?: readonly string[];
  /** Takes the last value left (a quoted reason after a selector). */
  readonly last?: true;
  readonly help: string;
}

export interface FlagSpec {
  readonly name: string;
  readonly kind: 'duration' | 'int' | 'text' | 'choice' | 'selector' | 'agent' | 'tenant';
  readonly choices?: readonly string[];
  readonly help: string;
}

export interface CommandSpec {
  readonly id: string;
  readonly words: readonly string[];
  readonly aliases?: readonly (readonly string[])[];
  readonly params: readonly ParamSpec[];
  readonly flags?: readonly FlagSpec[];
  readonly summary: string;
  readonly example: string;
  /** What it needs (help shows it only to who may); null: any linked person; 'anyone': unlinked accounts too. */
  readonly action: Action | null | 'anyone';
  /** Shows a plan and waits for the requester's confirmation (and an approver's where the tenant says so). */
  readonly danger?: true;
}

const RELEASE: ParamSpec = { name: 'release', kind: 'release', help: 'STACK@VERSION' };
const ROLLOUT: ParamSpec = { name: 'id', kind: 'rollout', help: 'R-<n>' };
const AGENT: ParamSpec = { name: 'id', kind: 'agent', help: 'agent id (agt_…)' };
const CODE: ParamSpec = { name: 'code', kind: 'code', help: 'the code the bot gave' };
const TO: ParamSpec = { name: 'selector', kind: 'selector', keyword: 'to', optional: true, help: "which agents: env=prod, tenant in (bank-a,bank-b), id=agt_…" };
const ROLLOUT_FLAGS: readonly FlagSpec[] = [
  { name: 'to', kind: 'selector', help: 'which agents (the same as `to SELECTOR`)' },
  { name: 'waves', kind: 'text', help: 'cumulative waves, e.g. 1,10%,50%,100%' },
  { name: 'bake', kind: 'duration', help: 'how long each agent stays healthy before the next wave, e.g. 10m' },
  { name: 'max-failures', kind: 'int', help: 'failures tolerated' },
  { name: 'on-failure', kind: 'choice', choices: ['pause', 'rollback'], help: 'what a failure beyond --max-failures does' },
];

const rolloutCommand = <V extends 'pause' | 'resume' | 'promote' | 'abort' | 'rollback'>(verb: V, summary: string, danger: boolean): CommandSpec & { id: `rollout ${V}` } => ({
  id: `rollout ${verb}`,
  words: ['rollout', verb],
  params: [ROLLOUT],
  summary,
  example: `ferry rollout ${verb} R-12`,
  action: 'deploy',
  ...(danger ? { danger: true as const } : {}),
});

export const COMMANDS = [
  { id: 'help', words: ['help'], params: [{ name: 'topic', kind: 'text', optional: true, help: 'a command' }], summary: 'what you may run here', example: 'ferry help rollout', action: 'anyone' },
  { id: 'link', words: ['link'], params: [CODE], summary: 'link this chat account to your Ferry person (code from `ferry user link-chat` or the console)', example: 'ferry link 7KQ2-XD9P', action: 'anyone' },
  { id: 'whoami', words: ['whoami'], params: [], summary: 'who you are here: person, roles, this room’s tenants', example: 'ferry whoami', action: null },
  {
    id: 'deploy',
    words: ['deploy'],
    params: [RELEASE, TO],
    flags: [{ name: 'agent', kind: 'agent', help: 'one agent (as `ferry deploy --agent`)' }],
    summary: 'deploy a release: to one agent (--agent) or to the agents a selector picks, all at once',
    example: 'ferry deploy payments@2.4.0 to env=prod',
    action: 'deploy',
    danger: true,
  },
  { id: 'rollout create', words: ['rollout', 'create'], params: [RELEASE, TO], flags: ROLLOUT_FLAGS, summary: 'a canary rollout in waves', example: 'ferry rollout create payments@2.4.0 to env=prod --waves 1,25%,100% --bake 10m', action: 'deploy', danger: true },
  { id: 'rollout status', words: ['rollout', 'status'], params: [ROLLOUT], summary: 'state, waves and failures of a rollout', example: 'ferry rollout status R-12', action: 'read' },
  { id: 'rollout ls', words: ['rollout', 'ls'], aliases: [['rollouts']], params: [], summary: 'recent rollouts', example: 'ferry rollout ls', action: 'read' },
  rolloutCommand('pause', 'pause a rollout (no new wave starts)', false),
  rolloutCommand('resume', 'resume a paused rollout', false),
  rolloutCommand('promote', 'start the next wave now, without waiting for the bake time', true),
  rolloutCommand('abort', 'stop a rollout where it is', true),
  rolloutCommand('rollback', 'put the agents a rollout reached back on their previous release', true),
  {
    id: 'agent ls',
    words: ['agent', 'ls'],
    aliases: [['agents']],
    params: [
      { name: 'selector', kind: 'selector', optional: true, help: 'which agents, e.g. env=prod' },
      { name: 'state', kind: 'choice', optional: true, choices: ['online', 'offline'], help: 'online or offline only' },
    ],
    summary: 'agents, their connection and what they run',
    example: 'ferry agents env=prod offline',
    action: 'read',
  },
  { id: 'agent show', words: ['agent', 'show'], params: [AGENT], summary: 'one agent', example: 'ferry agent show agt_3f…', action: 'read' },
  { id: 'agent revoke', words: ['agent', 'revoke'], params: [AGENT], summary: 'revoke an agent: its socket is cut and it never comes back', example: 'ferry agent revoke agt_3f…', action: 'agent.manage', danger: true },
  { id: 'release ls', words: ['release', 'ls'], aliases: [['releases']], params: [{ name: 'stack', kind: 'stack', optional: true, help: 'only this stack' }], summary: 'releases and their signatures', example: 'ferry release ls payments', action: 'read' },
  { id: 'release show', words: ['release', 'show'], params: [RELEASE], summary: 'one release: digest, images, signers', example: 'ferry release show payments@2.4.0', action: 'read' },
  { id: 'audit verify', words: ['audit', 'verify'], params: [], flags: [{ name: 'tenant', kind: 'tenant', help: 'only this tenant’s log' }], summary: 'check the audit logs against their signed, witnessed checkpoints', example: 'ferry audit verify', action: 'read' },
  {
    id: 'lock',
    words: ['lock'],
    params: [
      { name: 'stack', kind: 'stack', help: 'the stack, or * for every stack' },
      { name: 'selector', kind: 'selector', optional: true, help: 'which agents (default: all of this room’s)' },
      { name: 'reason', kind: 'text', last: true, help: 'why, in quotes' },
    ],
    summary: 'stop deploys of a stack to some agents until unlocked',
    example: 'ferry lock payments env=prod "quarter close"',
    action: 'deploy',
  },
  { id: 'unlock', words: ['unlock'], params: [{ name: 'id', kind: 'lock', help: 'L-<n> from `ferry lock ls`' }], summary: 'lift a lock', example: 'ferry unlock L-3', action: 'deploy' },
  { id: 'lock ls', words: ['lock', 'ls'], aliases: [['locks']], params: [], summary: 'locks in force: who, why, on what', example: 'ferry lock ls', action: 'read' },
  {
    id: 'subscribe',
    words: ['subscribe'],
    params: [{ name: 'notices', kind: 'text', optional: true, help: 'rollouts,agents,alarms,releases (default: all)' }],
    summary: 'the release bot posts these notices here from now on',
    example: 'ferry subscribe rollouts,alarms',
    action: 'chat.manage',
  },
  {
    id: 'unsubscribe',
    words: ['unsubscribe'],
    params: [{ name: 'notices', kind: 'text', optional: true, help: 'rollouts,agents,alarms,releases (default: all)' }],
    summary: 'the release bot stops posting these notices here',
    example: 'ferry unsubscribe agents',
    action: 'chat.manage',
  },
  { id: 'subscriptions', words: ['subscriptions'], params: [], summary: 'which notices the release bot posts here', example: 'ferry subscriptions', action: 'read' },
  { id: 'confirm', words: ['confirm'], params: [CODE, { name: 'hash', kind: 'text', optional: true, help: 'the plan hash shown (optional)' }], summary: 'confirm your own request (the plan shown, unchanged)', example: 'ferry confirm K7Q2XD', action: null },
  { id: 'approve', words: ['approve'], params: [CODE], summary: "approve someone else's confirmed request (maker-checker)", example: 'ferry approve K7Q2XD', action: 'approve' },
  { id: 'cancel', words: ['cancel'], params: [CODE], summary: 'cancel a request waiting for confirmation', example: 'ferry cancel K7Q2XD', action: null },
] as const satisfies readonly CommandSpec[];

export type CommandId = (typeof COMMANDS)[number]['id'];
const SPECS: readonly CommandSpec[] = COMMANDS;

export interface Parsed {
  spec: CommandSpec & { id: CommandId };
  args: Record<string, string>;
  flags: Record<string, string>;
  dryRun: boolean;
  /** The command as understood, in canonical form (echoed back, hashed into plans). */
  canonical: string;
}

const bad = (detail: string) => new FerryError('FERRY_E_CHAT_USAGE', detail);

/** Splits on whitespace, keeping quoted runs together; a missing closing quote is an error. */
export function tokenize(text: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quote: string | null = null;
  let any = false;
  const closing: Record<string, string> = { '"': '"', "'": "'", '“': '”', '‘': '’', '「': '」' };
  for (const ch of text.normalize('NFC')) {
    if (quote) {
      if (ch === quote) quote = null;
      else cur += ch;
      continue;
    }
    if (Object.hasOwn(closing, ch)) {
      quote = closing[ch]!;
      any = true;
      continue;
    }
    if (/\s/.test(ch)) {
      if (cur || any) out.push(cur);
      cur = '';
      any = false;
      continue;
    }
    cur += ch;
  }
  if (quote) throw bad(`a quote (${quote}) is never closed`);
  if (cur || any) out.push(cur);
  return out;
}

/** Whether a message is meant for the bot, and its words without the leading `ferry`. */
export function addressed(text: string): string | null {
  const t = text
    .trim()
    .replace(/^(@\S+\s+)+/, '')
    .trim();
  const m = /^\/?ferry(?:\s+|$)([\s\S]*)$/i.exec(t);
  return m ? m[1]!.trim() : null;
}

const KIND: Record<Exclude<ParamKind, 'selector' | 'text' | 'choice'>, { re: RegExp; what: string; upper?: true }> = {
  release: { re: /^[a-z0-9][a-z0-9-]{0,62}@[0-9A-Za-z.+-]{1,64}$/, what: 'STACK@VERSION, e.g. payments@2.4.0' },
  rollout: { re: /^R-\d{1,9}$/i, what: 'a rollout id, R-<n>', upper: true },
  agent: { re: /^agt_[A-Za-z0-9]{1,60}$/, what: 'an agent id, agt_…' },
  stack: { re: /^([a-z0-9][a-z0-9-]{0,62}|\*)$/, what: 'a stack name (or *)' },
  code: { re: /^[A-Za-z0-9-]{4,16}$/, what: 'the code the bot gave', upper: true },
  lock: { re: /^L-\d{1,9}$/i, what: 'a lock id, L-<n>', upper: true },
  tenant: { re: /^[a-z0-9][a-z0-9-]{0,62}$/, what: 'a tenant name' },
};

function checkValue(kind: ParamKind | FlagSpec['kind'], name: string, v: string, choices?: readonly string[]): string {
  if (kind === 'choice') {
    if (!choices?.includes(v)) throw bad(`${name}: ${JSON.stringify(v)} is not one of ${choices?.join(', ')}`);
    return v;
  }
  if (kind === 'duration') {
    if (!/^\d{1,7}(ms|s|m|h|d)?$/.test(v)) throw bad(`--${name} ${JSON.stringify(v)}: a duration such as 30s, 10m, 2h`);
    return v;
  }
  if (kind === 'int') {
    if (!/^\d{1,6}$/.test(v)) throw bad(`--${name} ${JSON.stringify(v)}: a whole number`);
    return v;
  }
  if (kind === 'selector' || kind === 'text') {
    if (!v.trim()) throw bad(`${name}: empty`);
    if (v.length > 2000) throw bad(`${name}: longer than 2000 characters`);
    return v.trim();
  }
  const k = KIND[kind];
  if (!k.re.test(v)) throw bad(`${name} ${JSON.stringify(v.slice(0, 80))}: expected ${k.what}`);
  return k.upper ? v.toUpperCase() : v;
}

/** Command phrases (words and aliases) with their spec, longest first. */
const PHRASES: { words: readonly string[]; spec: CommandSpec }[] = SPECS.flatMap((s) => [s.words, ...(s.aliases ?? [])].map((words) => ({ words, spec: s }))).sort((a, b) => b.words.length - a.words.length);

export function usage(s: CommandSpec): string {
  const params = s.params.map((p) => {
    const v = p.kind === 'choice' ? p.choices!.join('|') : p.name.toUpperCase();
    const body = p.keyword ? `${p.keyword} ${v}` : v;
    return p.optional ? `[${body}]` : body;
  });
  const flags = (s.flags ?? []).map((f) => `[--${f.name} ${f.kind === 'choice' ? f.choices!.join('|') : f.name.toUpperCase()}]`);
  return ['ferry', ...s.words, ...params, ...flags].join(' ');
}

export function parse(text: string): Parsed {
  if (text.length > 4000) throw bad('a command is at most 4000 characters');
  const tokens = tokenize(text);
  const head = tokens[0]?.toLowerCase();
  if (head === 'ferry' || head === '/ferry') tokens.shift();
  if (!tokens.length) tokens.push('help');
  // Flags first: they may stand anywhere.
  const flags: Record<string, string> = {};
  let dryRun = false;
  const words: string[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (!t.startsWith('--') || t.length < 3) {
      words.push(t);
      continue;
    }
    const eq = t.indexOf('=');
    const name = (eq > 0 ? t.slice(2, eq) : t.slice(2)).toLowerCase();
    if (name === 'dry-run') {
      dryRun = true;
      continue;
    }
    const value = eq > 0 ? t.slice(eq + 1) : tokens[++i];
    if (value === undefined) throw bad(`--${name} needs a value`);
    if (Object.hasOwn(flags, name)) throw bad(`--${name} given twice`);
    flags[name] = value;
  }
  const lower = words.map((w) => w.toLowerCase());
  const hit = PHRASES.find((p) => p.words.every((w, i) => lower[i] === w));
  if (!hit) throw unknown(words);
  const spec = hit.spec as Parsed['spec'];
  for (const [name, v] of Object.entries(flags)) {
    const f = spec.flags?.find((x) => x.name === name);
    if (!f) throw bad(`${spec.id} has no --${name}${spec.flags?.length ? ` (it takes ${spec.flags.map((x) => `--${x.name}`).join(', ')}, and --dry-run)` : ' (only --dry-run)'}; usage: ${usage(spec)}`);
    flags[name] = checkValue(f.kind, name, v, f.choices);
  }
  const args = bindParams(spec, words.slice(hit.words.length));
  const canonical = [
    'ferry',
    ...spec.words,
    ...spec.params.filter((p) => args[p.name] !== undefined).map((p) => `${p.keyword ? `${p.keyword} ` : ''}${/\s/.test(args[p.name]!) && p.kind !== 'selector' ? JSON.stringify(args[p.name]) : args[p.name]}`),
    ...Object.entries(flags).map(([k, v]) => `--${k} ${v}`),
    ...(dryRun ? ['--dry-run'] : []),
  ].join(' ');
  return { spec, args, flags, dryRun, canonical };
}

function bindParams(spec: CommandSpec, rest: string[]): Record<string, string> {
  const args: Record<string, string> = {};
  let i = 0;
  const ps = spec.params;
  // A parameter marked `last` takes the final value; what comes before is bound in order.
  const lastP = ps.find((p) => p.last);
  let tail = rest;
  if (lastP) {
    if (rest.length > ps.filter((p) => !p.optional && !p.last).length) {
      args[lastP.name] = checkValue(lastP.kind, lastP.name, rest[rest.length - 1]!);
      tail = rest.slice(0, -1);
    }
  }
  for (let k = 0; k < ps.length; k++) {
    const p = ps[k]!;
    if (p.last) continue;
    const later = ps.slice(k + 1);
    const stops = (t: string) => later.some((q) => (q.keyword && t.toLowerCase() === q.keyword) || (q.kind === 'choice' && q.choices!.includes(t.toLowerCase())));
    if (p.keyword) {
      if (tail[i]?.toLowerCase() !== p.keyword) {
        if (!p.optional) throw bad(`expected \`${p.keyword} ${p.name.toUpperCase()}\`; usage: ${usage(spec)}`);
        continue;
      }
      i++;
    }
    if (p.kind === 'selector' || p.kind === 'text') {
      const start = i;
      while (i < tail.length && !stops(tail[i]!)) i++;
      const v = tail.slice(start, i).join(' ');
      if (v) args[p.name] = checkValue(p.kind, p.name, v);
      else if (!p.optional || p.keyword) {
        if (!p.optional || p.keyword) throw bad(`${p.name} is missing (${p.help}); usage: ${usage(spec)}`);
      }
      continue;
    }
    const t = tail[i];
    if (p.kind === 'choice') {
      if (t !== undefined && p.choices!.includes(t.toLowerCase())) {
        args[p.name] = t.toLowerCase();
        i++;
      } else if (!p.optional) throw bad(`${p.name}: one of ${p.choices!.join(', ')}; usage: ${usage(spec)}`);
      continue;
    }
    if (t === undefined) {
      if (!p.optional) throw bad(`${p.name} is missing (${p.help}); usage: ${usage(spec)}`);
      continue;
    }
    args[p.name] = checkValue(p.kind, p.name, t);
    i++;
  }
  if (lastP && args[lastP.name] === undefined) throw bad(`${lastP.name} is missing (${lastP.help}); usage: ${usage(spec)}`);
  if (i < tail.length) throw bad(`did not expect ${JSON.stringify(tail.slice(i).join(' ').slice(0, 80))}; usage: ${usage(spec)}`);
  return args;
}

// ---- typos ------------------------------------------------------------------------

export function distance(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0]!;
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = d[j]!;
      d[j] = Math.min(d[j]! + 1, d[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return d[b.length]!;
}

/** The phrase closest to what was typed, when close enough to be a typo. */
export function suggest(words: readonly string[]): CommandSpec | null {
  let best: { spec: CommandSpec; d: number } | null = null;
  for (const p of PHRASES) {
    const typed = words.slice(0, p.words.length).join(' ').toLowerCase();
    const d = distance(typed, p.words.join(' '));
    if (!best || d < best.d) best = { spec: p.spec, d };
  }
  return best && best.d <= Math.max(2, Math.floor(words.slice(0, 2).join(' ').length / 4)) ? best.spec : null;
}

function unknown(words: readonly string[]): FerryError {
  const s = suggest(words);
  const typed = words.slice(0, 2).join(' ');
  return new FerryError('FERRY_E_CHAT_UNKNOWN', `${JSON.stringify(typed.slice(0, 60))}${s ? `; did you mean \`${usage(s)}\`?` : '; `ferry help` lists the commands'}`);
}

// ---- help -------------------------------------------------------------------------------

/** Help for the commands `may` allows, or for one command or group (`help rollout`). */
export function help(may: (s: CommandSpec) => boolean, topic?: string): string {
  const visible = SPECS.filter(may);
  const t = topic?.trim().toLowerCase().replace(/^ferry\s+/, '');
  if (t) {
    const exact = visible.filter((s) => s.id === t || (s.aliases ?? []).some((a) => a.join(' ') === t));
    const group = exact.length ? exact : visible.filter((s) => s.words[0] === t);
    if (!group.length) {
      const s = suggest(t.split(/\s+/));
      return `No command ${JSON.stringify(t)} you may run here.${s && may(s) ? ` Did you mean \`${usage(s)}\`?` : ''} \`ferry help\` lists yours.`;
    }
    return group
      .map((s) => [`${usage(s)}`, `  ${s.summary}${s.danger ? ' (shows the plan and asks for a confirmation)' : ''}`, ...s.params.map((p) => `  ${p.name}: ${p.help}`), ...(s.flags ?? []).map((f) => `  --${f.name}: ${f.help}`), `  e.g. ${s.example}`].join('\n'))
      .join('\n\n');
  }
  const lines = visible.map((s) => `${usage(s)} — ${s.summary}`);
  return [`Commands you may run here (add --dry-run to any to see its plan and change nothing):`, ...lines].join('\n');
}

export function specOf(id: CommandId): CommandSpec {
  return SPECS.find((s) => s.id === id)!;
}

export { SPECS };

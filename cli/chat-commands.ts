// ferry chat transport|room|policy, ferry user link-chat, ferry lock|unlock:
// ChatOps settings from the CLI. Secrets never come from a flag's value (flags
// end up in shell history and `ps`): --secret-file KEY=PATH reads one here,
// --secret-stdin KEY reads one line from standard input, --hub-file KEY=PATH
// names a file the hub reads on its own host. The hub stores them encrypted
// and never answers them.
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { FerryError } from '../shared/errors.js';
import { withHub } from './client.js';
import type { HubTarget } from './contexts.js';
import { ago, table } from './format.js';

interface Io {
  target(cmd: Command): HubTarget;
  out(text: string): void;
  note(text: string): void;
  printJson(value: unknown): void;
}

interface TransportView {
  name: string;
  platform: string;
  config: Record<string, unknown>;
  createdAt?: string;
  hooks?: string[];
}

interface RoomView {
  id: string;
  transport: string;
  room: string;
  tenants: string[] | null;
  vendor: boolean;
  subscribe: string[];
  config: Record<string, unknown>;
  createdAt: string;
}

interface LockView {
  id: string;
  text: string;
}

const enc = encodeURIComponent;
const collect = (v: string, prev: string[] = []) => [...prev, v];

/** `KEY=VALUE` (split at the first `=`). */
function pair(flag: string, v: string): [string, string] {
  const i = v.indexOf('=');
  if (i <= 0 || i === v.length - 1) throw new FerryError('FERRY_E_VALIDATION', `${flag} ${v}: KEY=VALUE, e.g. ${flag} ${flag === '--set' ? 'homeserver=https://matrix.example' : 'secret=/run/secrets/ferry-hook'}`);
  return [v.slice(0, i), v.slice(i + 1)];
}

async function stdinLine(): Promise<string> {
  let text = '';
  for await (const chunk of process.stdin) {
    text += String(chunk);
    if (text.length > 8192) break;
  }
  const line = (text.split(/\r?\n|\r/)[0] ?? '').trim();
  if (!line) throw new FerryError('FERRY_E_VALIDATION', '--secret-stdin: nothing on standard input (pipe the secret in)');
  return line;
}

interface SettingFlags {
  set?: string[];
  secretFile?: string[];
  secretStdin?: string;
  hubFile?: string[];
}

/** The settings object the API takes: plain values, and secrets as {value} (read here) or {file} (read by the hub). */
export async function settingsFrom(o: SettingFlags): Promise<Record<string, unknown>> {
  const cfg: Record<string, unknown> = {};
  const put = (k: string, v: unknown) => {
    if (Object.hasOwn(cfg, k)) throw new FerryError('FERRY_E_VALIDATION', `${k} is given twice`);
    cfg[k] = v;
  };
  for (const s of o.set ?? []) put(...pair('--set', s));
  for (const s of o.secretFile ?? []) {
    const [k, path] = pair('--secret-file', s);
    let value: string;
    try {
      value = readFileSync(path, 'utf8').trim();
    } catch (err) {
      throw new FerryError('FERRY_E_VALIDATION', `--secret-file ${k}=${path}: ${(err as Error).message}`);
    }
    if (!value) throw new FerryError('FERRY_E_VALIDATION', `--secret-file ${k}=${path}: the file is empty`);
    put(k, { value });
  }
  for (const s of o.hubFile ?? []) {
    const [k, path] = pair('--hub-file', s);
    put(k, { file: path });
  }
  if (o.secretStdin) put(o.secretStdin, { value: await stdinLine() });
  return cfg;
}

const settingOptions = (c: Command) =>
  c
    .option('--set <key=value>', 'a plain setting (repeatable), e.g. homeserver=https://matrix.example', collect)
    .option('--secret-file <key=path>', 'a secret read from a file here (repeatable)', collect)
    .option('--secret-stdin <key>', 'a secret read from standard input (one line)')
    .option('--hub-file <key=path>', "a secret the hub reads from a file on its own host (repeatable)", collect);

/** Settings as the hub shows them (secrets only as how they are kept). */
const configText = (c: Record<string, unknown>) =>
  Object.entries(c)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ') || '-';

export function registerChatCommands(program: Command, io: Io): void {
  const chat = program.command('chat').description('ChatOps: platform transports, rooms bound to tenants, approval rules');

  // ---- transports ------------------------------------------------------------------------
  const transport = chat.command('transport').description('chat platforms the hub talks to (vendor admin)');
  settingOptions(
    transport
      .command('add')
      .description('add a platform transport (matrix, slack, dingtalk, feishu, wecom, webhook); prints the callback paths to give the platform')
      .argument('<name>', 'lowercase letters, digits and dashes')
      .requiredOption('--platform <platform>', 'matrix, slack, dingtalk, feishu, wecom or webhook'),
  )
    .option('--replace', 'change the settings of an existing transport')
    .option('--json', 'print the API answer as JSON')
    .action(async (name: string, o: SettingFlags & { platform: string; replace?: boolean; json?: boolean }, cmd: Command) => {
      const config = await settingsFrom(o);
      const r = await withHub(io.target(cmd), (h) => h.post<TransportView>('/v1/chat/transports', { name, platform: o.platform, config, replace: o.replace === true }));
      if (o.json) return void io.printJson(r);
      io.out(`${o.replace ? 'updated' : 'added'} ${r.platform} transport ${r.name}: ${configText(r.config)}\n`);
      for (const p of r.hooks ?? []) io.note(`the platform calls: ${io.target(cmd).hub}${p}`);
    });
  transport
    .command('ls')
    .description('list transports (secrets shown only as how they are kept)')
    .option('--json', 'print the API answer as JSON')
    .action(async (o: { json?: boolean }, cmd: Command) => {
      const r = await withHub(io.target(cmd), (h) => h.get<{ transports: TransportView[] }>('/v1/chat/transports'));
      if (o.json) return void io.printJson(r);
      const now = Date.now();
      io.out(table(['NAME', 'PLATFORM', 'SETTINGS', 'ADDED'], r.transports.map((t) => [t.name, t.platform, configText(t.config), ago(t.createdAt, now)])));
    });
  transport
    .command('rm')
    .description('remove a transport (its rooms stop receiving notices)')
    .argument('<name>')
    .option('--json', 'print the API answer as JSON')
    .action(async (name: string, o: { json?: boolean }, cmd: Command) => {
      const r = await withHub(io.target(cmd), (h) => h.delete<{ removed: string }>(`/v1/chat/transports/${enc(name)}`));
      if (o.json) return void io.printJson(r);
      io.out(`removed transport ${r.removed}\n`);
    });

  // ---- rooms -----------------------------------------------------------------------------
  const room = chat.command('room').description("rooms bound to tenants (that tenant's admins) or to the vendor");
  settingOptions(
    room
      .command('bind')
      .description('bind a room: commands in it act within its tenants only; notices it subscribes to are posted there')
      .requiredOption('--transport <name>', 'the transport (console: the console’s own chat)')
      .requiredOption('--room <id>', "the platform's room id (Matrix !room:server, Slack channel id, DingTalk conversationId, ...)")
      .option('--tenant <names...>', 'the tenants it acts for')
      .option('--vendor', "the vendor's room: every tenant, as the person speaking may")
      .option('--subscribe <list>', 'notices: rollouts,agents,alarms,releases (default all)'),
  )
    .option('--json', 'print the API answer as JSON')
    .action(async (o: SettingFlags & { transport: string; room: string; tenant?: string[]; vendor?: boolean; subscribe?: string; json?: boolean }, cmd: Command) => {
      if (!!o.tenant?.length === !!o.vendor) throw new FerryError('FERRY_E_VALIDATION', 'give --tenant T (one or more) or --vendor');
      const config = await settingsFrom(o);
      const subscribe = o.subscribe === undefined ? undefined : o.subscribe.split(',').map((s) => s.trim()).filter(Boolean);
      const r = await withHub(io.target(cmd), (h) => h.post<RoomView>('/v1/chat/rooms', { transport: o.transport, room: o.room, ...(o.vendor ? { vendor: true } : { tenants: o.tenant }), ...(subscribe ? { subscribe } : {}), config }));
      if (o.json) return void io.printJson(r);
      io.out(`bound ${r.transport} room ${r.room} (${r.id}) to ${r.vendor ? 'the vendor' : r.tenants!.join(', ')}; notices: ${r.subscribe.join(', ') || 'none'}\n`);
    });
  room
    .command('ls')
    .description('list the rooms you manage')
    .option('--json', 'print the API answer as JSON')
    .action(async (o: { json?: boolean }, cmd: Command) => {
      const r = await withHub(io.target(cmd), (h) => h.get<{ rooms: RoomView[] }>('/v1/chat/rooms'));
      if (o.json) return void io.printJson(r);
      io.out(table(['ID', 'TRANSPORT', 'ROOM', 'FOR', 'NOTICES', 'SETTINGS'], r.rooms.map((x) => [x.id, x.transport, x.room, x.vendor ? 'vendor' : x.tenants!.join(','), x.subscribe.join(',') || '-', configText(x.config)])));
    });
  room
    .command('unbind')
    .description('unbind a room: the bot no longer answers or posts there')
    .argument('<id>', 'room id (room_...)')
    .option('--json', 'print the API answer as JSON')
    .action(async (id: string, o: { json?: boolean }, cmd: Command) => {
      const r = await withHub(io.target(cmd), (h) => h.delete<{ removed: string }>(`/v1/chat/rooms/${enc(id)}`));
      if (o.json) return void io.printJson(r);
      io.out(`unbound room ${r.removed}\n`);
    });

  chat
    .command('policy')
    .description("a tenant's maker-checker rule: deploys touching the agents it selects need a second person with the approver role")
    .argument('<tenant>')
    .option('--approval <selector>', 'which agents, e.g. env=prod')
    .option('--none', 'no deploy needs an approver')
    .option('--json', 'print the API answer as JSON')
    .action(async (tenant: string, o: { approval?: string; none?: boolean; json?: boolean }, cmd: Command) => {
      if (!!o.approval === !!o.none) throw new FerryError('FERRY_E_VALIDATION', 'give --approval SELECTOR or --none');
      const r = await withHub(io.target(cmd), (h) => h.post<{ tenant: string; approval: string | null }>(`/v1/chat/policies/${enc(tenant)}`, { approval: o.approval ?? null }));
      if (o.json) return void io.printJson(r);
      io.out(r.approval ? `${r.tenant}: deploys to ${r.approval} need a different person with the approver role\n` : `${r.tenant}: no deploy needs an approver\n`);
    });

  // ---- linking a chat account --------------------------------------------------------------
  const user = program.commands.find((c) => c.name() === 'user') ?? program.command('user');
  user
    .command('link-chat')
    .description('a one-time code that links a chat account to you: send `ferry link CODE` to the bot (10 minutes)')
    .option('--json', 'print the API answer as JSON')
    .action(async (o: { json?: boolean }, cmd: Command) => {
      const r = await withHub(io.target(cmd), (h) => h.post<{ code: string; expiresAt: string; send: string }>('/v1/chat/link-codes', {}));
      if (o.json) return void io.printJson(r);
      io.out(`${r.send}\n`);
      io.note(`Send this to the bot from your chat account before ${r.expiresAt}; it works once.`);
    });

  // ---- locks (the same words as in chat) ----------------------------------------------------
  program
    .command('lock')
    .description('stop deploys of a stack (or *) to the agents a selector picks, until unlocked; `ferry lock ls` lists locks')
    .argument('<stack>', 'a stack, * for every stack, or ls')
    .argument('[selector]', 'which agents (default: all you may deploy to)')
    .argument('[reason]', 'why, in quotes (shown to whoever is stopped)')
    .option('--json', 'print the API answer as JSON')
    .action(async (stack: string, a: string | undefined, b: string | undefined, o: { json?: boolean }, cmd: Command) => {
      if (stack === 'ls') {
        const r = await withHub(io.target(cmd), (h) => h.get<{ locks: LockView[] }>('/v1/locks'));
        if (o.json) return void io.printJson(r);
        return void io.out(r.locks.length ? r.locks.map((l) => `${l.text}\n`).join('') : 'no locks\n');
      }
      // As in chat: the last value is the reason.
      const [selector, reason] = b === undefined ? [undefined, a] : [a, b];
      if (!reason) throw new FerryError('FERRY_E_VALIDATION', 'say why: ferry lock STACK [SELECTOR] "REASON"');
      const r = await withHub(io.target(cmd), (h) => h.post<LockView>('/v1/locks', { stack, ...(selector ? { selector } : {}), reason }));
      if (o.json) return void io.printJson(r);
      io.out(`locked: ${r.text}\n`);
    });
  program
    .command('unlock')
    .description('lift a lock')
    .argument('<id>', 'L-<n> from `ferry lock ls`')
    .option('--json', 'print the API answer as JSON')
    .action(async (id: string, o: { json?: boolean }, cmd: Command) => {
      const r = await withHub(io.target(cmd), (h) => h.post<{ removed: string }>(`/v1/locks/${enc(id.toUpperCase())}/unlock`));
      if (o.json) return void io.printJson(r);
      io.out(`unlocked ${r.removed}\n`);
    });
}

// ferry whoami / user / api-token: people, their grants, and their API
// tokens. Passwords are read from standard input (never a flag: flags end up
// in shell history and `ps`).
import { Command, Option } from 'commander';
import { FerryError } from '../shared/errors.js';
import { ROLES, TENANT_ROLES, VENDOR_ROLES } from '../shared/roles.js';
import { withHub } from './client.js';
import type { HubTarget } from './contexts.js';
import { ago, formatDuration, keyValues, parseDuration, table, when } from './format.js';

interface Io {
  target(cmd: Command): HubTarget;
  out(text: string): void;
  note(text: string): void;
  printJson(value: unknown): void;
}

export interface WhoAmI {
  user: string;
  userId: string;
  kind: 'person' | 'service';
  vendorRole: string | null;
  tenants: Record<string, string>;
  token: { id: string; role: string | null; tenants: string[] | null } | null;
  surface: string;
}

interface UserView {
  id: string;
  name: string;
  kind: string;
  vendorRole: string | null;
  tenants: Record<string, string>;
  hasPassword: boolean;
  disabledAt: string | null;
  lockedUntil: string | null;
  createdAt: string;
}

export interface ApiTokenView {
  id: string;
  user: string;
  name: string;
  role: string;
  tenants: string[] | null;
  createdAt: string;
  expiresAt: string | null;
  revokedAt: string | null;
  lastUsedAt: string | null;
}

const enc = encodeURIComponent;
const MAX_TTL_S = 366 * 86_400;

/** Grants as one line: `admin (vendor-wide), operator on bank-a`. */
export function grantsText(vendorRole: string | null, tenants: Record<string, string>): string {
  const parts = [vendorRole ? `${vendorRole} (vendor-wide)` : null, ...Object.entries(tenants).map(([t, r]) => `${r} on ${t}`)].filter(Boolean);
  return parts.length ? parts.join(', ') : 'no grants';
}

function userTable(users: readonly UserView[], now: number): string {
  return table(
    ['NAME', 'KIND', 'ROLES', 'STATUS', 'CREATED'],
    users.map((u) => [u.name, u.kind, grantsText(u.vendorRole, u.tenants), u.disabledAt ? 'disabled' : u.lockedUntil && Date.parse(u.lockedUntil) > now ? 'locked' : 'active', ago(u.createdAt, now)]),
  );
}

function tokenTable(tokens: readonly ApiTokenView[], now: number): string {
  return table(
    ['ID', 'USER', 'NAME', 'ROLE', 'TENANTS', 'STATUS', 'EXPIRES', 'LAST USED'],
    tokens.map((t) => [
      t.id,
      t.user,
      t.name,
      t.role,
      t.tenants ? t.tenants.join(',') : 'all',
      t.revokedAt ? 'revoked' : t.expiresAt && Date.parse(t.expiresAt) <= now ? 'expired' : 'active',
      t.expiresAt ? when(t.expiresAt, now) : 'never',
      ago(t.lastUsedAt, now),
    ]),
  );
}

/** A password from standard input (one line), with a prompt when it is a terminal. */
async function readPassword(note: (s: string) => void, prompt: string): Promise<string> {
  const stdin = process.stdin;
  if (stdin.isTTY) {
    note(prompt);
    stdin.setRawMode?.(true);
  }
  let text = '';
  try {
    for await (const chunk of stdin) {
      text += String(chunk);
      if (stdin.isTTY && /[\r\n]/.test(text)) break;
      if (text.length > 4096) break;
    }
  } finally {
    if (stdin.isTTY) stdin.setRawMode?.(false);
  }
  const line = text.split(/\r?\n|\r/)[0] ?? '';
  if (!line) throw new FerryError('FERRY_E_VALIDATION', 'no password on standard input (pipe it in, e.g. `ferry user passwd alice < file`)');
  return line;
}

export function registerPeopleCommands(program: Command, io: Io): void {
  program
    .command('whoami')
    .description('show who you are on the hub: your roles, and the scope of the token in use')
    .option('--json', 'print as JSON')
    .action(async (o: { json?: boolean }, cmd: Command) => {
      const t = io.target(cmd);
      const who = await withHub(t, (h) => h.get<WhoAmI>('/v1/whoami'));
      if (o.json) return void io.printJson(who);
      io.out(
        keyValues([
          ['user', `${who.user} (${who.kind})`],
          ['hub', t.hub],
          ['roles', grantsText(who.vendorRole, who.tenants)],
          ['token', who.token ? `${who.token.id}: ${who.token.role}${who.token.tenants ? ` on ${who.token.tenants.join(', ')}` : ', all you may see'}` : '-'],
          ['surface', who.surface],
        ]),
      );
    });

  // ---- users ---------------------------------------------------------------------------
  const user = program.command('user').description('people and service accounts, and what they may do (admin)');
  user
    .command('create')
    .description('create a person (or, with --service, an account for automation that has only API tokens)')
    .argument('<name>', 'lowercase letters, digits and . _ @ -')
    .option('--service', 'a service account (CI): no password, API tokens only')
    .addOption(new Option('--role <role>', 'a vendor-wide role').choices([...VENDOR_ROLES]))
    .option('--password-stdin', 'read a console password from standard input')
    .option('--json', 'print the API answer as JSON')
    .action(async (name: string, o: { service?: boolean; role?: string; passwordStdin?: boolean; json?: boolean }, cmd: Command) => {
      if (o.service && o.passwordStdin) throw new FerryError('FERRY_E_VALIDATION', '--password-stdin: service accounts use API tokens, not passwords');
      const password = o.passwordStdin ? await readPassword(io.note, `Password for ${name}: `) : undefined;
      const u = await withHub(io.target(cmd), (h) => h.post<UserView>('/v1/users', { name, kind: o.service ? 'service' : 'person', vendorRole: o.role ?? null, ...(password ? { password } : {}) }));
      if (o.json) return void io.printJson(u);
      io.out(`created ${u.kind} ${u.name}: ${grantsText(u.vendorRole, u.tenants)}\n`);
      if (!o.service && !password) io.note(`No console password yet: ferry user passwd ${u.name} --password-stdin`);
    });
  user
    .command('ls')
    .description('list people and service accounts with their roles')
    .option('--json', 'print the API answer as JSON')
    .action(async (o: { json?: boolean }, cmd: Command) => {
      const r = await withHub(io.target(cmd), (h) => h.get<{ users: UserView[] }>('/v1/users'));
      if (o.json) return void io.printJson(r);
      io.out(userTable(r.users, Date.now()));
    });
  user
    .command('show')
    .description('show one account')
    .argument('<name>')
    .option('--json', 'print the API answer as JSON')
    .action(async (name: string, o: { json?: boolean }, cmd: Command) => {
      const u = await withHub(io.target(cmd), (h) => h.get<UserView>(`/v1/users/${enc(name)}`));
      if (o.json) return void io.printJson(u);
      const now = Date.now();
      io.out(
        keyValues([
          ['name', u.name],
          ['kind', u.kind],
          ['roles', grantsText(u.vendorRole, u.tenants)],
          ['password', u.hasPassword ? 'set' : 'none'],
          ['status', u.disabledAt ? `disabled ${when(u.disabledAt, now)}` : u.lockedUntil && Date.parse(u.lockedUntil) > now ? `locked until ${u.lockedUntil}` : 'active'],
          ['created', when(u.createdAt, now)],
        ]),
      );
    });
  user
    .command('grant')
    .description('grant a role: on one tenant (--tenant), or vendor-wide')
    .argument('<name>')
    .requiredOption('--role <role>', `on a tenant: ${TENANT_ROLES.join(', ')}; vendor-wide: ${VENDOR_ROLES.join(', ')}`)
    .option('--tenant <tenant>', 'the tenant the role applies to (without it, the role is vendor-wide)')
    .option('--json', 'print the API answer as JSON')
    .action(async (name: string, o: { role: string; tenant?: string; json?: boolean }, cmd: Command) => {
      const allowed: readonly string[] = o.tenant ? TENANT_ROLES : VENDOR_ROLES;
      if (!allowed.includes(o.role)) throw new FerryError('FERRY_E_VALIDATION', `--role ${o.role}: ${o.tenant ? 'on a tenant' : 'vendor-wide'}, one of ${allowed.join(', ')}`);
      const u = await withHub(io.target(cmd), (h) => h.post<UserView>(`/v1/users/${enc(name)}/grants`, o.tenant ? { tenant: o.tenant, role: o.role } : { vendorRole: o.role }));
      if (o.json) return void io.printJson(u);
      io.out(`${u.name}: ${grantsText(u.vendorRole, u.tenants)}\n`);
    });
  user
    .command('revoke')
    .description("remove a grant: the role on one tenant (--tenant), or the vendor-wide role (--vendor)")
    .argument('<name>')
    .option('--tenant <tenant>', 'remove the role on this tenant')
    .option('--vendor', 'remove the vendor-wide role')
    .option('--json', 'print the API answer as JSON')
    .action(async (name: string, o: { tenant?: string; vendor?: boolean; json?: boolean }, cmd: Command) => {
      if (!!o.tenant === !!o.vendor) throw new FerryError('FERRY_E_VALIDATION', 'give exactly one of --tenant T or --vendor');
      const u = await withHub(io.target(cmd), (h) => h.post<UserView>(`/v1/users/${enc(name)}/revoke`, o.tenant ? { tenant: o.tenant } : { vendorRole: true }));
      if (o.json) return void io.printJson(u);
      io.out(`${u.name}: ${grantsText(u.vendorRole, u.tenants)}\n`);
    });
  user
    .command('passwd')
    .description("set a console password, read from standard input (your own: give the current one first, on the line before)")
    .argument('<name>')
    .option('--password-stdin', 'read the password from standard input (the default)')
    .option('--json', 'print the API answer as JSON')
    .action(async (name: string, o: { json?: boolean }, cmd: Command) => {
      const password = await readPassword(io.note, `New password for ${name}: `);
      const r = await withHub(io.target(cmd), (h) => h.post<{ user: string }>(`/v1/users/${enc(name)}/password`, { password }));
      if (o.json) return void io.printJson(r);
      io.out(`password set for ${r.user}; their other console sessions have ended\n`);
    });
  for (const [verb, what] of [
    ['disable', 'disable an account: its sessions end and its tokens stop working'],
    ['enable', 'enable a disabled account again'],
  ] as const) {
    user
      .command(verb)
      .description(what)
      .argument('<name>')
      .option('--json', 'print the API answer as JSON')
      .action(async (name: string, o: { json?: boolean }, cmd: Command) => {
        const u = await withHub(io.target(cmd), (h) => h.post<UserView>(`/v1/users/${enc(name)}/${verb}`));
        if (o.json) return void io.printJson(u);
        io.out(`${verb}d ${u.name}\n`);
      });
  }

  // ---- API tokens ------------------------------------------------------------------------
  const apiToken = program.command('api-token').description('API tokens: each belongs to a person and allows no more than they may do');
  apiToken
    .command('create')
    .description('create an API token (yours, or with --user another account\'s: admin); prints only the token, shown once')
    .requiredOption('--name <name>', 'what uses it, e.g. ci-release')
    .addOption(new Option('--role <role>', 'what it may do (no more than its person)').choices([...ROLES]).makeOptionMandatory())
    .option('--user <name>', 'the account it belongs to (default: you)')
    .option('--tenant <names...>', 'only these tenants (default: all its person may see)')
    .option('--ttl <duration>', 'expires after: 1h, 30d, ... (default: never)')
    .option('--json', 'print the API answer as JSON')
    .action(async (o: { name: string; role: string; user?: string; tenant?: string[]; ttl?: string; json?: boolean }, cmd: Command) => {
      const ttlSeconds = o.ttl ? parseDuration(o.ttl, '--ttl') : null;
      if (ttlSeconds !== null && (ttlSeconds < 60 || ttlSeconds > MAX_TTL_S)) throw new FerryError('FERRY_E_VALIDATION', `--ttl ${o.ttl}: between 1m and 366d`);
      const tok = await withHub(io.target(cmd), (h) =>
        h.post<ApiTokenView & { token: string }>('/v1/api-tokens', { name: o.name, role: o.role, ...(o.user ? { user: o.user } : {}), tenants: o.tenant ?? null, ttlSeconds }),
      );
      if (o.json) return void io.printJson(tok);
      io.out(tok.token + '\n');
      const scope = tok.tenants ? ` on ${tok.tenants.join(', ')}` : '';
      io.note(`API token ${tok.id} for ${tok.name} (${tok.role}${scope}, user ${tok.user}${ttlSeconds ? `, expires in ${formatDuration(ttlSeconds)}` : ''}); it is shown only once, store it safely.`);
    });
  apiToken
    .command('ls')
    .description('list API tokens (never their secrets): yours, or with --user (admin) another account\'s; admins see all')
    .option('--user <name>', 'only this account\'s tokens')
    .option('--json', 'print the API answer as JSON')
    .action(async (o: { user?: string; json?: boolean }, cmd: Command) => {
      const r = await withHub(io.target(cmd), (h) => h.get<{ tokens: ApiTokenView[] }>('/v1/api-tokens', { user: o.user }));
      if (o.json) return void io.printJson(r);
      io.out(tokenTable(r.tokens, Date.now()));
    });
  apiToken
    .command('revoke')
    .description('revoke an API token (yours, or any: admin); requests with it fail from now on')
    .argument('<id>', 'token id (tok_...)')
    .option('--json', 'print the API answer as JSON')
    .action(async (id: string, o: { json?: boolean }, cmd: Command) => {
      const r = await withHub(io.target(cmd), (h) => h.post<{ id: string; revoked: boolean }>(`/v1/api-tokens/${enc(id)}/revoke`));
      if (o.json) return void io.printJson(r);
      io.out(`revoked API token ${r.id}\n`);
    });
}


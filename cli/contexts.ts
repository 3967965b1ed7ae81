// Contexts: named (hub URL, API token) pairs saved by `ferry login` in
// $XDG_CONFIG_HOME/ferry/config.json (else ~/.config/ferry/config.json).
// The file holds bearer tokens, so its directory is 0700 and the file 0600,
// and it is replaced atomically: a reader sees the old or the new file whole.
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, fchmodSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { z } from 'zod';
import { FerryError } from '../shared/errors.js';

export const CONTEXT_NAME = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,62}$/;

const Context = z.object({ hub: z.string(), token: z.string(), caFile: z.string().optional() });
const ConfigFile = z.object({
  current: z.string().nullable().default(null),
  contexts: z.record(z.string(), Context).default({}),
});
export type Context = z.infer<typeof Context>;
export type ConfigFile = z.infer<typeof ConfigFile>;

/** Where the config lives. XDG says a relative XDG_CONFIG_HOME is to be ignored. */
export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_CONFIG_HOME;
  const base = xdg && isAbsolute(xdg) ? xdg : join(homedir(), '.config');
  return join(base, 'ferry', 'config.json');
}

/** The saved config; an absent file is an empty config. */
export function loadConfig(path: string): ConfigFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { current: null, contexts: {} };
    throw new FerryError('FERRY_E_CONFIG_INVALID', `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new FerryError('FERRY_E_CONFIG_INVALID', `${path} is not JSON: ${(err as Error).message}`);
  }
  const r = ConfigFile.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new FerryError('FERRY_E_CONFIG_INVALID', `${path}: ${issue?.path.join('.') || 'top level'}: ${issue?.message ?? 'invalid'}`);
  }
  return r.data;
}

/** Writes the config atomically: 0600 temp file in the same 0700 directory, fsync, rename, fsync the directory. */
export function saveConfig(path: string, cfg: ConfigFile): void {
  const dir = dirname(path);
  const tmp = join(dir, `.config.json.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      fchmodSync(fd, 0o600); // the umask may have narrowed it; never widened
      writeSync(fd, JSON.stringify(cfg, null, 2) + '\n');
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
    const dfd = openSync(dir, 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  } catch (err) {
    rmSync(tmp, { force: true });
    throw new FerryError('FERRY_E_CONFIG_INVALID', `cannot write ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** A hub URL in one canonical spelling (origin plus path, no trailing slash), so two spellings compare equal. */
export function normaliseHub(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new FerryError('FERRY_E_CONFIG_INVALID', `hub URL ${JSON.stringify(raw)} is not a URL; use e.g. https://hub.example.com`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new FerryError('FERRY_E_CONFIG_INVALID', `hub URL must be http:// or https://, got ${url.protocol}`);
  }
  if (url.username || url.password || url.search || url.hash) {
    throw new FerryError('FERRY_E_CONFIG_INVALID', 'hub URL must not carry credentials, a query or a fragment; give the token with --token');
  }
  return url.origin + url.pathname.replace(/\/+$/, '');
}

export interface GlobalOptions {
  hub?: string;
  token?: string;
  context?: string;
  caFile?: string;
}

export interface HubTarget {
  hub: string;
  token: string;
  caFile?: string;
}

/**
 * Which hub and token a command uses. Each of hub, token and CA file comes
 * from the flag, else its environment twin (commander has already merged
 * those two), else the context named by --context/FERRY_CONTEXT, else the
 * current context. A context's token is only sent to that context's own hub:
 * `--hub other` with no token is an error rather than a leaked credential.
 */
export function resolveTarget(opts: GlobalOptions, cfg: ConfigFile): HubTarget {
  const name = opts.context || cfg.current || undefined; // an empty FERRY_X= counts as unset
  const ctx = name ? cfg.contexts[name] : undefined;
  if (opts.context && !ctx) {
    throw new FerryError('FERRY_E_NOT_FOUND', `context ${opts.context}; see \`ferry context ls\``);
  }
  const ctxHub = ctx ? normaliseHub(ctx.hub) : undefined;
  const hub = opts.hub ? normaliseHub(opts.hub) : ctxHub;
  if (!hub) {
    throw new FerryError('FERRY_E_AUTH_REQUIRED', opts.token ? 'no hub URL to send the token to: give --hub or FERRY_HUB' : 'no hub URL or token, and no saved context');
  }
  const sameHub = ctx !== undefined && ctxHub === hub;
  const token = opts.token || (sameHub ? ctx.token : undefined);
  if (!token) {
    const why = ctx && !sameHub ? ` (context ${name} is for ${ctxHub})` : '';
    throw new FerryError('FERRY_E_AUTH_REQUIRED', `no API token for ${hub}${why}: give --token or FERRY_TOKEN`);
  }
  const caFile = opts.caFile || (sameHub ? ctx.caFile : undefined);
  return caFile ? { hub, token, caFile } : { hub, token };
}

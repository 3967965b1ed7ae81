// Exit codes shared by `ferry`, `ferry-hub` and `ferry-agent`, and how every
// binary reports an error: the stable code and message on stderr, then what
// to do. With --json, the error is one JSON object on stderr instead.
import { CommanderError } from 'commander';
import { asFerryError, type FerryError } from './errors.js';

export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  auth: 3,
  notFound: 4,
  conflict: 5,
  unreachable: 6,
  invalid: 7,
  /** The agent was revoked; systemd must not restart it (RestartPreventExitStatus). */
  revoked: 78,
} as const;

export function exitCodeFor(e: FerryError): number {
  if (e.code === 'FERRY_E_AGENT_REVOKED') return EXIT.revoked;
  switch (e.status) {
    case 400:
    case 413:
      return EXIT.invalid;
    case 401:
    case 403:
      return EXIT.auth;
    case 404:
      return EXIT.notFound;
    case 409:
      return EXIT.conflict;
    case 503:
      return EXIT.unreachable;
    default:
      return EXIT.failure;
  }
}

/** Prints an error for a person (or as JSON) and returns the exit code. */
export function reportError(err: unknown, opts: { json?: boolean } = {}): number {
  if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
  const e = asFerryError(err);
  if (opts.json) process.stderr.write(JSON.stringify({ error: e.toJSON() }) + '\n');
  else process.stderr.write(`error ${e.code}: ${e.message}\n  ${e.hint}\n`);
  return exitCodeFor(e);
}

/** Runs a CLI entry point and exits with the right code. */
export async function runMain(main: () => Promise<void>, opts: { json?: () => boolean } = {}): Promise<void> {
  try {
    await main();
  } catch (err) {
    process.exitCode = reportError(err, { json: opts.json?.() });
  }
}

// Usage errors as gh and kubectl print them: the error, the command's usage
// line, and where to read more, for every command of a commander program.
import type { Command } from 'commander';

/** Makes every command (and subcommand) of `program` follow a usage error with its usage line and a --help pointer. */
export function usageOnError(program: Command): void {
  const walk = (cmd: Command, path: string[]) => {
    const name = path.join(' ');
    cmd.showHelpAfterError(`Usage: ${name} ${cmd.usage()}\nRun '${name} --help' for more.`);
    for (const sub of cmd.commands) walk(sub, [...path, sub.name()]);
  };
  walk(program, [program.name()]);
}

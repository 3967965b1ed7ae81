// ferry-agent secret|config set|ls|rm: the bank provides the values a release
// names, on the agent host. Values are read from a file (or stdin with `-`),
// never from the command line, where other users and shell history see them.
import { readFileSync } from 'node:fs';
import type { Command, Option } from 'commander';
import { FerryError } from '../shared/errors.js';
import { listValues, removeValue, setValue, type FileKind } from './secrets.js';
import { isEnrolled } from './state.js';

export function registerSecretCommands(program: Command, stateDir: () => Option): void {
  for (const kind of ['secret', 'config'] as const) {
    const group = program.command(kind).description(`${kind}s a release names: their values stay on this host, the hub never sees them`);
    group
      .command('set')
      .description(`store the value of a ${kind} (mode 0600 in the state directory); services using it restart with the new value`)
      .argument('<name>', `the ${kind}'s name in the compose file`)
      .requiredOption('--from-file <file>', 'file holding the value; - reads stdin')
      .addOption(stateDir())
      .action((name: string, o: { fromFile: string; stateDir: string }) => {
        requireEnrolled(o.stateDir);
        const value = read(o.fromFile);
        const path = setValue(o.stateDir, kind, name, value);
        process.stderr.write(`${kind} ${name} stored in ${path} (${value.length} bytes, mode 0600); a running agent uses it on its next pass (reconcile.driftIntervalMs, default 30 s)\n`);
      });
    group
      .command('ls')
      .description(`list the ${kind}s stored in the state directory (names only)`)
      .addOption(stateDir())
      .option('--json', 'print as JSON')
      .action((o: { stateDir: string; json?: boolean }) => {
        const names = listValues(o.stateDir, kind);
        process.stdout.write(o.json ? JSON.stringify({ [`${kind}s`]: names }) + '\n' : names.map((n) => `${n}\n`).join(''));
      });
    group
      .command('rm')
      .description(`remove a stored ${kind}; containers using it keep their copy, new ones cannot start without it`)
      .argument('<name>', `the ${kind}'s name`)
      .addOption(stateDir())
      .action((name: string, o: { stateDir: string }) => {
        if (!removeValue(o.stateDir, kind as FileKind, name)) throw new FerryError('FERRY_E_NOT_FOUND', `${kind} ${name} in ${o.stateDir}; see \`ferry-agent ${kind} ls\``);
        process.stderr.write(`${kind} ${name} removed\n`);
      });
  }
}

function requireEnrolled(dir: string): void {
  if (!isEnrolled(dir)) throw new FerryError('FERRY_E_NOT_ENROLLED', dir);
}

function read(file: string): Buffer {
  try {
    return readFileSync(file === '-' ? 0 : file);
  } catch (err) {
    throw new FerryError('FERRY_E_VALIDATION', `--from-file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

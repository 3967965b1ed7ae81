// npm run package [-- --version V] [--with-node] [--no-deb] [--out DIR]
// Builds the agent bundle (ferry-agent-V.tar.gz) and its Debian package
// (ferry-agent_V_all.deb, or _amd64 with a Node runtime) from this checkout's
// dist/ and node_modules/ (run `npm ci` and `npm run build` first; `npm run
// package` builds). Prints the archive's digest: the same checkout gives the
// same bytes.
import { writeFileSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Command } from 'commander';
import { runMain } from '../../shared/exit.js';
import { CHECKOUT, buildBundle } from './bundle.js';
import { buildDeb } from './deb.js';

const program = new Command('package')
  .description('build the ferry-agent bundle (.tar.gz) and its .deb')
  .option('--version <v>', 'the bundle version (default: package.json)')
  .option('--with-node [path]', 'put a Node runtime in the bundle (default: the node running this)')
  .option('--no-deb', 'only the bundle')
  .option('--out <dir>', 'where to write them', join(CHECKOUT, 'dist', 'package'))
  .exitOverride();

await runMain(async () => {
  program.parse(process.argv);
  const o = program.opts<{ version?: string; withNode?: string | boolean; deb: boolean; out: string }>();
  const mtime = Number(process.env.SOURCE_DATE_EPOCH ?? 0) || 0;
  const b = buildBundle({ version: o.version, node: o.withNode === true ? process.execPath : o.withNode || undefined, mtime });
  const out = resolve(o.out);
  mkdirSync(out, { recursive: true });
  const file = join(out, `ferry-agent-${b.version}.tar.gz`);
  writeFileSync(file, b.archive);
  process.stdout.write(`${file}\n  ${b.digest}, ${b.archive.length} bytes, ${Object.keys(b.manifest.files).length} files${b.manifest.node ? `, Node ${b.manifest.node}` : ''}\n`);
  if (o.deb) process.stdout.write(`${buildDeb(b, out, { mtime })}\n`);
});

// The Debian package of the agent, built with Debian's own dpkg-deb from a
// bundle of this checkout, inspected with dpkg-deb as an institution's
// packaging review would (--info, --contents, the maintainer scripts), and
// its files run: the packaged launcher registers its version, and the
// packaged agent renders the hardened unit that runs that launcher.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { buildDeb } from '../../scripts/package/deb.js';
import { run } from '../helpers/proc.js';
import { skipOrFail } from '../helpers/skip.js';
import { tempDir } from '../helpers/tmp.js';
import { bundle } from '../helpers/upgrade.js';

const VERSION = '0.3.0';

function dpkgDeb(args: string[]): string {
  const r = spawnSync('dpkg-deb', args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  assert.equal(r.status, 0, `dpkg-deb ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

const hasDpkgDeb = () => !spawnSync('dpkg-deb', ['--version']).error;

test('the .deb: what dpkg-deb says of it, reproducibly built', async (t) => {
  if (!hasDpkgDeb()) return skipOrFail(t, 'dpkg-deb is not installed (apt-get install dpkg)');
  const out = tempDir(t, 'ferry-deb-');
  const b = bundle(VERSION);
  const deb = buildDeb(b, join(out, 'a'));
  assert.equal(deb, join(out, 'a', `ferry-agent_${VERSION}_all.deb`));
  const again = buildDeb(bundle(VERSION), join(out, 'b'));
  const sum = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');
  assert.equal(sum(again), sum(deb), 'the same bundle gives the same .deb, byte for byte');

  const info = dpkgDeb(['--info', deb]);
  assert.match(info, /^ Package: ferry-agent$/m);
  assert.match(info, new RegExp(`^ Version: ${VERSION.replace(/\./g, '\\.')}$`, 'm'));
  assert.match(info, /^ Architecture: all$/m);
  assert.match(info, /^ Depends: nodejs \(>= 20\.18\.1\)$/m, 'without a bundled runtime it needs Debian\'s node');
  for (const s of ['control', 'md5sums']) assert.match(info, new RegExp(`^ +\\d+ bytes, +\\d+ lines +${s} `, 'm'), `${s} in the control archive`);
  for (const s of ['postinst', 'prerm', 'postrm']) assert.match(info, new RegExp(`^ +\\d+ bytes, +\\d+ lines +\\* +${s} +#!/bin/sh$`, 'm'), `${s} in the control archive, executable`);

  const contents = dpkgDeb(['--contents', deb]).trim().split('\n');
  const entry = (path: string) => contents.find((l) => l.endsWith(` ./${path}`) || l.includes(` ./${path} `));
  for (const p of [`opt/ferry-agent/${VERSION}/dist/agent/main.js`, `opt/ferry-agent/${VERSION}/bundle.json`, `opt/ferry-agent/${VERSION}/scripts/ferry-agent.service`, 'opt/ferry-agent/launcher/launcher.js', 'opt/ferry-agent/launcher/launch-state.js', 'usr/bin/ferry-agent', 'usr/share/doc/ferry-agent/copyright']) {
    assert.ok(entry(p), `${p} in the package`);
  }
  for (const l of contents) assert.match(l, /^\S+ root\/root /, `owned by root: ${l}`);
  assert.match(entry('usr/bin/ferry-agent')!, /^-rwxr-xr-x /);
  assert.match(entry(`opt/ferry-agent/${VERSION}/dist/agent/main.js`)!, /^-rw-r--r-- /);
  assert.ok(!contents.some((l) => / \.\/(etc|var\/lib)\//.test(l)), 'no configuration or state shipped: those are the host\'s');

  // The maintainer scripts: valid sh, and they go through the agent's own commands.
  const ctl = join(out, 'control');
  dpkgDeb(['--control', deb, ctl]);
  for (const s of ['postinst', 'prerm', 'postrm']) {
    const sh = spawnSync('sh', ['-n', join(ctl, s)], { encoding: 'utf8' });
    assert.equal(sh.status, 0, `${s}: ${sh.stderr}`);
  }
  const postinst = readFileSync(join(ctl, 'postinst'), 'utf8');
  assert.match(postinst, new RegExp(`/opt/ferry-agent/launcher/launcher\\.js install --root /opt/ferry-agent --version ${VERSION.replace(/\./g, '\\.')} `));
  assert.match(postinst, /main\.js service install --root \/opt\/ferry-agent /);
  assert.match(readFileSync(join(ctl, 'prerm'), 'utf8'), /main\.js service uninstall/);
  assert.match(readFileSync(join(ctl, 'postrm'), 'utf8'), /purge\)\n\s+rm -rf \/opt\/ferry-agent \/var\/lib\/ferry-agent/);
});

test('the packaged files run: the launcher registers its version, the agent renders the unit that runs the launcher', async (t) => {
  if (!hasDpkgDeb()) return skipOrFail(t, 'dpkg-deb is not installed (apt-get install dpkg)');
  const out = tempDir(t, 'ferry-deb-');
  const deb = buildDeb(bundle(VERSION), out);
  // Under /opt: the unit hides /tmp from the service, and install refuses an agent there.
  mkdirSync('/opt', { recursive: true });
  const fs = mkdtempSync('/opt/ferry-package-test-');
  t.after(() => rmSync(fs, { recursive: true, force: true }));
  chmodSync(fs, 0o755);
  dpkgDeb(['--extract', deb, fs]);
  const root = join(fs, 'opt', 'ferry-agent');
  const state = join(out, 'state');

  const install = spawnSync(process.execPath, [join(root, 'launcher', 'launcher.js'), 'install', '--root', root, '--version', VERSION, '--state-dir', state], { encoding: 'utf8' });
  assert.equal(install.status, 0, install.stderr);
  assert.equal(readlinkSync(join(root, 'current')), VERSION);
  const launch = JSON.parse(readFileSync(join(root, 'launch.json'), 'utf8')) as { current: string; pending: unknown };
  assert.equal(launch.current, VERSION);
  assert.equal(launch.pending, null);

  const main = join(root, VERSION, 'dist', 'agent', 'main.js');
  const v = await run('agent', ['--version'], { main });
  assert.equal(v.code, 0, v.stderr);
  assert.equal(v.stdout.trim(), VERSION, 'the packaged agent is the bundle\'s version');
  const unit = await run('agent', ['service', 'install', '--root', root, '--dry-run', '--node', process.execPath], { main });
  assert.equal(unit.code, 0, unit.stderr);
  assert.match(unit.stdout, new RegExp(`^ExecStart=\\S*node --jitless --no-expose-wasm ${root}/launcher/launcher\\.js run --root ${root} --state-dir /var/lib/ferry-agent$`, 'm'));
  assert.match(unit.stdout, new RegExp(`^ReadWritePaths=${root}$`, 'm'));
  assert.match(unit.stdout, /^NoNewPrivileges=yes$/m);
});

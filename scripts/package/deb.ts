// The Debian package of an agent bundle, built with Debian's own dpkg-deb:
// the bundle unpacked under /opt/ferry-agent/<version>, the launcher under
// /opt/ferry-agent/launcher (outside every version: self-upgrades never
// replace it, a package upgrade does), /usr/bin/ferry-agent (the committed
// version's CLI), and maintainer scripts that use the agent's own
// `launcher install` and `service install|uninstall`:
//   postinst configure  registers this version as the committed one, writes
//                       the hardened unit (running the launcher), creates the
//                       service user, enables and starts it (once enrolled);
//                       restarts a running agent onto the new version
//   prerm               stops the service on upgrade; uninstalls the unit on remove
//   postrm              remove: what upgrades added under /opt/ferry-agent;
//                       purge: also /var/lib/ferry-agent (identity, key, state)
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { FerryError } from '../../shared/errors.js';
import { readTarGz } from '../../shared/tar.js';
import type { Bundle } from './bundle.js';

export const ROOT = '/opt/ferry-agent';
/** What the launcher directory holds, besides a package.json saying these are ES modules. */
export const LAUNCHER_FILES = ['launcher.js', 'launch-state.js'] as const;
const STATE = '/var/lib/ferry-agent';

/** A semver version as a Debian version: 1.2.0-rc.1 sorts before 1.2.0 only with a tilde. */
export const debVersion = (v: string) => v.replace('-', '~');

const sh = (s: string) => `#!/bin/sh\nset -e\n${s.trim()}\nexit 0\n`;

function scripts(version: string, bundledNode: boolean): Record<string, string> {
  const node = bundledNode ? `${ROOT}/${version}/node/bin/node` : '/usr/bin/node';
  const agent = `"${node}" --jitless --no-expose-wasm ${ROOT}/${version}/dist/agent/main.js`;
  return {
    postinst: sh(`
case "$1" in
  configure)
    # This version becomes the committed one (a package install is the institution's own choice).
    "${node}" ${ROOT}/launcher/launcher.js install --root ${ROOT} --version ${version} --state-dir ${STATE}
    # The hardened unit runs the launcher; the user is created; enabled, and started once enrolled.
    ${agent} service install --root ${ROOT} --node "${node}"
    if [ -d /run/systemd/system ] && systemctl is-active -q ferry-agent.service; then
      systemctl restart ferry-agent.service
    fi
    ;;
esac`),
    prerm: sh(`
case "$1" in
  remove|deconfigure)
    ${agent} service uninstall
    ;;
  upgrade|failed-upgrade)
    if [ -d /run/systemd/system ]; then systemctl stop ferry-agent.service || true; fi
    ;;
esac`),
    postrm: sh(`
case "$1" in
  remove)
    # Versions later upgrades unpacked, launch.json, the current link: not files of this package.
    rm -rf ${ROOT}
    ;;
  purge)
    rm -rf ${ROOT} ${STATE}
    rmdir --ignore-fail-on-non-empty /etc/ferry 2>/dev/null || true
    ;;
esac`),
  };
}

function setTimes(dir: string, t: number): void {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) setTimes(p, t);
    utimesSync(p, t, t);
  }
  utimesSync(dir, t, t);
}

function sizeKb(dir: string): number {
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    n += e.isDirectory() ? sizeKb(p) * 1024 : statSync(p).size;
  }
  return Math.ceil(n / 1024);
}

/** Builds ferry-agent_<version>_<arch>.deb into `outDir`; returns its path. */
export function buildDeb(b: Bundle, outDir: string, o: { mtime?: number } = {}): string {
  const check = spawnSync('dpkg-deb', ['--version'], { encoding: 'utf8' });
  if (check.error) throw new FerryError('FERRY_E_BUNDLE_INVALID', 'dpkg-deb is not installed (Debian: apt-get install dpkg)');
  const bundledNode = b.manifest.node !== null;
  const arch = bundledNode ? (process.arch === 'arm64' ? 'arm64' : 'amd64') : 'all';
  const stage = mkdtempSync(join(tmpdir(), 'ferry-deb-'));
  try {
    const md5: string[] = [];
    const put = (rel: string, data: Buffer, mode: number) => {
      const p = join(stage, rel);
      mkdirSync(dirname(p), { recursive: true, mode: 0o755 });
      writeFileSync(p, data, { mode });
      chmodSync(p, mode);
      md5.push(`${createHash('md5').update(data).digest('hex')}  ${rel}`);
    };
    const entries = readTarGz(b.archive);
    for (const e of entries) if (e.data) put(`opt/ferry-agent/${b.version}/${e.path}`, e.data, e.mode);
    for (const f of LAUNCHER_FILES) put(`opt/ferry-agent/launcher/${f}`, entries.find((e) => e.path === `dist/agent/upgrade/${f}`)!.data!, 0o644);
    put('opt/ferry-agent/launcher/package.json', Buffer.from('{"type":"module"}\n'), 0o644);
    put(
      'usr/bin/ferry-agent',
      Buffer.from(`#!/bin/sh\n# ferry-agent of the committed version (${ROOT}/current)\nNODE=/usr/bin/node\n[ -x ${ROOT}/current/node/bin/node ] && NODE=${ROOT}/current/node/bin/node\nexec "$NODE" --jitless --no-expose-wasm ${ROOT}/current/dist/agent/main.js "$@"\n`),
      0o755,
    );
    put('usr/share/doc/ferry-agent/copyright', Buffer.from('Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: ferry\nFiles: *\nCopyright: the Ferry authors\nLicense: Apache-2.0\n On Debian systems, the full text of the Apache License 2.0 is in\n /usr/share/common-licenses/Apache-2.0.\n'), 0o644);
    put('usr/share/doc/ferry-agent/changelog.gz', gzipSync(Buffer.from(`ferry-agent (${debVersion(b.version)}) stable; urgency=medium\n\n  * Agent bundle ${b.version} (${b.digest}).\n\n -- Ferry <ferry@example.invalid>  Thu, 01 Jan 1970 00:00:00 +0000\n`), { level: 9 }), 0o644);
    const deb = join(stage, 'DEBIAN');
    mkdirSync(deb, { mode: 0o755 });
    const control = [
      'Package: ferry-agent',
      `Version: ${debVersion(b.version)}`,
      `Architecture: ${arch}`,
      'Maintainer: Ferry <ferry@example.invalid>',
      `Installed-Size: ${sizeKb(join(stage, 'opt')) + sizeKb(join(stage, 'usr'))}`,
      ...(bundledNode ? [] : ['Depends: nodejs (>= 20.18.1)']),
      'Recommends: docker.io | docker-ce, systemd',
      'Section: admin',
      'Priority: optional',
      'Homepage: https://example.invalid/ferry',
      'Description: Ferry agent: signed deliveries into networks that let nothing in',
      ' The ferry-agent runs on a Docker host inside an institution, dials one',
      ' outbound WebSocket to the vendor\'s Ferry hub, verifies signed releases',
      ' against the tenant\'s trust root and the local policy, and reconciles them',
      ' against the local Docker engine. It upgrades itself from signed bundles and',
      ' reverts by itself when a new version does not become healthy.',
      '',
    ].join('\n');
    writeFileSync(join(deb, 'control'), control, { mode: 0o644 });
    writeFileSync(join(deb, 'md5sums'), md5.sort().join('\n') + '\n', { mode: 0o644 });
    for (const [name, text] of Object.entries(scripts(b.version, bundledNode))) writeFileSync(join(deb, name), text, { mode: 0o755 });
    const t = o.mtime ?? 0;
    setTimes(stage, t);
    mkdirSync(outDir, { recursive: true });
    const out = join(outDir, `ferry-agent_${debVersion(b.version)}_${arch}.deb`);
    const r = spawnSync('dpkg-deb', ['--root-owner-group', '-Zgzip', '--build', stage, out], { encoding: 'utf8', env: { ...process.env, SOURCE_DATE_EPOCH: String(t) } });
    if (r.status !== 0) throw new FerryError('FERRY_E_BUNDLE_INVALID', `dpkg-deb --build: ${r.stderr || r.stdout}`);
    return out;
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

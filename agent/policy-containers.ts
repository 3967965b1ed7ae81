// What a container may be on this host: the `containers:` section of the
// institution's local policy. A signed release says what its services need
// (bind mounts, host ports, user, capabilities, network mode, host
// namespaces, devices, sysctls, privileged); the bank decides what it allows.
// Pure: `containerNeeds` lists what a release asks for, `judge` says whether
// the limits allow one need, naming the policy line that decides it.
//
// Defaults (a key absent, or no policy file) are strict for what widens a
// container's reach into the host and Docker's behaviour for the rest:
// no bind mounts, no added capability, not privileged, no host network,
// pid or ipc namespace, no device, no sysctl; any host port and address;
// user 0 allowed. The Docker socket (or a directory holding it) is allowed
// only when `bindMounts` names the socket itself, whatever prefixes it lists.
import { posix } from 'node:path';
import { z } from 'zod';
import type { Release } from '../shared/release.js';

const absolute = z.string().min(1).max(1024).regex(/^\//, 'an absolute path');
const portRange = z.union([z.number().int().min(1).max(65535), z.string().regex(/^\d{1,5}(-\d{1,5})?$/, 'a port (443) or a range (8000-8999)')]);

export const ContainersSection = z.strictObject({
  /** Host paths a release may bind-mount: each allows itself and what is below it. Absent: none. */
  bindMounts: z.array(absolute).max(256).optional(),
  /** Host ports a release may publish (numbers or "from-to" ranges). Absent: any. */
  ports: z.array(portRange).max(256).optional(),
  /** Host addresses published ports may bind to; "0.0.0.0" for all interfaces (a port without an address). Absent: any. */
  hostIps: z.array(z.string().min(1).max(64)).max(64).optional(),
  /** Whether a container may run as user 0; false also refuses services that leave the user to the image. Default true. */
  root: z.boolean().optional(),
  /** Capabilities a release may add (cap_add), without CAP_; "ALL" only if listed. Absent: none. Dropping is always allowed. */
  capabilities: z.array(z.string().regex(/^(CAP_)?[A-Z_]{1,64}$/, 'a capability such as NET_BIND_SERVICE')).max(64).optional(),
  /** Whether a container may be privileged. Default false. */
  privileged: z.boolean().optional(),
  /** Network modes a service may use instead of its stack's networks. Default: none, bridge. */
  networkModes: z.array(z.enum(['host', 'none', 'bridge'])).max(3).optional(),
  /** Host namespaces a service may share (pid: host, ipc: host). Absent: none. */
  hostNamespaces: z.array(z.enum(['pid', 'ipc'])).max(2).optional(),
  /** Host devices a service may be given, by exact path. Absent: none. */
  devices: z.array(absolute).max(64).optional(),
  /** Sysctls a service may set: exact names, or a prefix ending in ".*" (net.core.*). Absent: none. */
  sysctls: z.array(z.string().regex(/^[a-z0-9_.-]+(\.\*)?$/, 'a sysctl name, or a prefix such as net.core.*').max(256)).max(64).optional(),
});
export type ContainersSection = z.infer<typeof ContainersSection>;
export type LimitKey = keyof ContainersSection;

export interface ContainerLimits {
  readonly bindMounts: readonly string[];
  readonly ports: readonly { from: number; to: number }[] | null;
  readonly hostIps: readonly string[] | null;
  readonly root: boolean;
  readonly capabilities: readonly string[];
  readonly privileged: boolean;
  readonly networkModes: readonly string[];
  readonly hostNamespaces: readonly string[];
  readonly devices: readonly string[];
  readonly sysctls: readonly string[];
  /** Where each limit is set: `file:line`; absent when it takes its default. */
  readonly lines: Readonly<Partial<Record<LimitKey, string>>>;
}

export const DEFAULT_LIMITS: ContainerLimits = Object.freeze({
  bindMounts: [],
  ports: null,
  hostIps: null,
  root: true,
  capabilities: [],
  privileged: false,
  networkModes: ['none', 'bridge'],
  hostNamespaces: [],
  devices: [],
  sysctls: [],
  lines: {},
});

/** Where the Docker engine's socket lives on Debian and most hosts (/var/run is a link to /run). */
export const DOCKER_SOCKETS: readonly string[] = ['/run/docker.sock', '/run/containerd/containerd.sock'];

/** A path as the host resolves it before any symlink: normalised, /var/run as /run. */
export function hostPath(p: string): string {
  const n = posix.normalize(p).replace(/\/+$/, '') || '/';
  return n === '/var/run' || n.startsWith('/var/run/') ? n.slice(4) : n;
}

const under = (p: string, dir: string) => dir === '/' || p === dir || p.startsWith(dir + '/');

/** Builds the limits from a validated section; `lineOf` gives `file:line` of a key that is set. */
export function containerLimits(sec: ContainersSection | undefined, lineOf: (key: LimitKey) => string | undefined): ContainerLimits {
  if (!sec) return DEFAULT_LIMITS;
  const lines: Partial<Record<LimitKey, string>> = {};
  for (const k of Object.keys(sec) as LimitKey[]) {
    const at = lineOf(k);
    if (at) lines[k] = at;
  }
  const range = (r: number | string) => {
    const [a, b] = String(r).split('-').map(Number) as [number, number | undefined];
    return { from: a, to: b ?? a };
  };
  return Object.freeze({
    bindMounts: (sec.bindMounts ?? []).map(hostPath),
    ports: sec.ports ? sec.ports.map(range) : null,
    hostIps: sec.hostIps ?? null,
    root: sec.root ?? DEFAULT_LIMITS.root,
    capabilities: (sec.capabilities ?? []).map((c) => c.replace(/^CAP_/, '')),
    privileged: sec.privileged ?? DEFAULT_LIMITS.privileged,
    networkModes: sec.networkModes ?? DEFAULT_LIMITS.networkModes,
    hostNamespaces: sec.hostNamespaces ?? [],
    devices: (sec.devices ?? []).map(hostPath),
    sysctls: sec.sysctls ?? [],
    lines,
  });
}

/** Checks the section's ranges once it is parsed (zod cannot see that 9000-8000 is backwards). */
export function badRange(sec: ContainersSection): string | null {
  for (const r of sec.ports ?? []) {
    const [a, b] = String(r).split('-').map(Number) as [number, number | undefined];
    if (a < 1 || a > 65535 || (b !== undefined && (b < a || b > 65535))) return `containers.ports: ${r} is not a port or a growing range within 1-65535`;
  }
  return null;
}

/** One thing a release asks of the host. */
export interface Need {
  stack: string;
  service: string;
  /** Where in the release: volumes[0], ports[1], user, capAdd, networkMode, ... */
  key: string;
  /** What it asks, for a person: "bind-mounts /srv/data", "publishes 8088/tcp on 127.0.0.1". */
  what: string;
  /** The policy limit that decides it. */
  limit: LimitKey;
  allowed: (l: ContainerLimits) => boolean;
  /** What the default of that limit is, when the policy does not set it. */
  default: string;
}

const DEFAULT_TEXT: Record<LimitKey, string> = {
  bindMounts: 'no bind mounts',
  ports: 'any host port',
  hostIps: 'any host address',
  root: 'user 0 allowed',
  capabilities: 'no added capability',
  privileged: 'not privileged',
  networkModes: 'none and bridge only',
  hostNamespaces: 'no host namespace',
  devices: 'no device',
  sysctls: 'no sysctl',
};

/** A user value that is uid 0: "0", "root", "0:0", "root:wheel". Unset is the image's user, often root. */
export function isRootUser(user: string | undefined): boolean | null {
  if (user === undefined || user.trim() === '') return null;
  const u = user.split(':')[0]!.trim();
  return u === 'root' || (/^\d+$/.test(u) && Number(u) === 0);
}

/** Everything the release asks of the host that the `containers` limits decide, service by service. */
export function containerNeeds(rel: Release): Need[] {
  const out: Need[] = [];
  for (const [service, s] of Object.entries(rel.services).sort(([a], [b]) => a.localeCompare(b))) {
    const need = (key: string, what: string, limit: LimitKey, allowed: Need['allowed']) => out.push({ stack: rel.stack, service, key, what, limit, allowed, default: DEFAULT_TEXT[limit] });
    s.volumes.forEach((m, i) => {
      if (m.type !== 'bind') return;
      const p = hostPath(m.source);
      const socket = DOCKER_SOCKETS.find((sock) => under(sock, p));
      need(`volumes[${i}]`, `bind-mounts ${m.source}${m.readOnly ? ' read-only' : ''}${socket ? ` (${socket === p ? 'the Docker socket' : `holds the Docker socket ${socket}`})` : ''}`, 'bindMounts', (l) =>
        l.bindMounts.some((d) => under(p, d)) && (!socket || l.bindMounts.includes(socket)),
      );
    });
    s.ports.forEach((port, i) => {
      if (port.published === undefined) return;
      const n = port.published;
      need(`ports[${i}]`, `publishes host port ${n}/${port.protocol}`, 'ports', (l) => l.ports === null || l.ports.some((r) => n >= r.from && n <= r.to));
      const ip = port.hostIp || '0.0.0.0';
      need(`ports[${i}].hostIp`, `on ${ip === '0.0.0.0' ? 'every host address (0.0.0.0)' : ip}`, 'hostIps', (l) => l.hostIps === null || l.hostIps.includes(ip));
    });
    const root = isRootUser(s.user);
    if (root !== false) need('user', root ? `runs as ${s.user} (uid 0)` : "leaves the user to the image (often root): set `user`", 'root', (l) => l.root);
    if (s.privileged) need('privileged', 'runs privileged (every capability, every device)', 'privileged', (l) => l.privileged);
    for (const c of s.capAdd ?? []) need('capAdd', `adds capability ${c}`, 'capabilities', (l) => l.capabilities.includes(c));
    if (s.networkMode) need('networkMode', `uses network mode ${s.networkMode}`, 'networkModes', (l) => l.networkModes.includes(s.networkMode!));
    if (s.pid === 'host') need('pid', "shares the host's pid namespace", 'hostNamespaces', (l) => l.hostNamespaces.includes('pid'));
    if (s.ipc === 'host') need('ipc', "shares the host's ipc namespace", 'hostNamespaces', (l) => l.hostNamespaces.includes('ipc'));
    (s.devices ?? []).forEach((d, i) => need(`devices[${i}]`, `gets host device ${d.host} (${d.permissions})`, 'devices', (l) => l.devices.includes(hostPath(d.host))));
    for (const k of Object.keys(s.sysctls ?? {}).sort()) {
      need(`sysctls.${k}`, `sets sysctl ${k}`, 'sysctls', (l) => l.sysctls.some((x) => x === k || (x.endsWith('.*') && k.startsWith(x.slice(0, -1)))));
    }
  }
  return out;
}

/** Why a need is refused, naming service, key and the policy line (or the default that applies). */
export function refusal(n: Need, l: ContainerLimits, source: string | null): string {
  const line = l.lines[n.limit];
  const rule = line ? `${line} (containers.${n.limit})` : source ? `${source}, which does not set containers.${n.limit} (default: ${n.default})` : `no policy file, so containers.${n.limit} takes its default (${n.default})`;
  return `${n.stack}/${n.service}: ${n.key} ${n.what}; not allowed by ${rule}`;
}

/** Convenience for callers that only want the verdicts. */
export function judge(l: ContainerLimits, rel: Release): { need: Need; ok: boolean }[] {
  return containerNeeds(rel).map((need) => ({ need, ok: need.allowed(l) }));
}

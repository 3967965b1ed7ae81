// Simulated agents for rollout tests and benchmarks at scale: each enrolls
// over HTTP with its own key, passes the real signed WebSocket handshake and
// speaks the real protocol (hello, ack, status), but applies releases in a
// fake engine of one Map: after `applyMs` it reports the release applied, or
// rolled back when the test says that version fails. Controls: go offline,
// close the maintenance window (directives refused with FERRY_E_POLICY_WINDOW),
// make versions fail. It records every directive seq in the order received,
// so tests can check the hub never sent one out of order.
import { request } from 'undici';
import WebSocket from 'ws';
import { AGENT_PATH, AUTH_HEADERS, authStatement, hostOf } from '../../shared/auth.js';
import { PAYLOAD_TYPES, pae, payloadBytes, payloadDigest, type Envelope } from '../../shared/dsse.js';
import { encodePublicKey, generateKeyPair, keyId, sign, type KeyPair } from '../../shared/keys.js';
import type { ServiceStatus } from '../../shared/protocol.js';
import { canonicalJson } from '../../shared/release.js';
import { challenge, enrollBody, helloFrame, postEnroll } from './agents.js';
import { releaseDoc, seededKey, service } from './signing.js';

export type Api = <T = any>(method: string, path: string, body?: unknown) => Promise<{ status: number; body: T }>;

export function apiClient(url: () => string, token: string): Api {
  return async (method, path, body) => {
    const res = await request(url() + path, {
      method: method as 'GET',
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.body.text();
    return { status: res.statusCode, body: text ? JSON.parse(text) : undefined };
  };
}

interface DirectiveDoc {
  seq: number;
  releases: { stack: string; version: string; digest: string }[];
  /** An agent version to upgrade to (agent self-upgrade). */
  upgrade?: { version: string; digest: string };
}

export class SimAgent {
  /** Directive seqs in the order first received (redeliveries of the same seq are not repeated). */
  readonly received: number[] = [];
  readonly running = new Map<string, string>();
  windowClosed = false;
  readonly failing = new Set<string>();
  /** The newest `checks-ack` the hub sent (0: none). */
  checksAcked = 0;
  /** Containers and drift reported with every status (none unless a test sets some; send them with `reportNow`). */
  services: ServiceStatus[] = [];
  drift: string[] = [];
  private ws: WebSocket | undefined;
  private accepted = 0;
  private stopped = true;
  private statuses = new Map<string, { stack: string; version: string; state: 'applying' | 'applied' | 'failed' | 'rolled-back'; since: string; runningVersion: string | null; code?: string }>();
  private timers = new Set<NodeJS.Timeout>();
  private readonly alarms: { at: string; code: string; message: string; kind?: 'directive' | 'roots' | 'checkpoint' }[] = [];
  /** Its own version, as it reports it ('upgrade' messages); upgrades to `@agent@V` in `failing` revert. */
  agentVersion = { installed: '0.1.0', previous: null as string | null };

  constructor(
    readonly id: string,
    readonly tenant: string,
    private readonly kp: KeyPair,
    private readonly hub: () => string,
    private readonly applyMs: number,
  ) {}

  get connected(): boolean {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    void this.dial();
  }

  /** Goes offline (closes its socket, does not reconnect until start). */
  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.ws?.terminate();
    this.ws = undefined;
  }

  private later(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }

  private async dial(): Promise<void> {
    while (!this.stopped) {
      try {
        const url = this.hub();
        const nonce = await challenge(url);
        const time = Date.now();
        const sig = Buffer.from(sign(authStatement({ host: hostOf(url), agentId: this.id, nonce, time }), this.kp.secretKey)).toString('base64');
        const wsUrl = new URL(AGENT_PATH, url);
        wsUrl.protocol = 'ws:';
        const ws = new WebSocket(wsUrl, { headers: { [AUTH_HEADERS.agent]: this.id, [AUTH_HEADERS.nonce]: nonce, [AUTH_HEADERS.time]: String(time), [AUTH_HEADERS.signature]: sig }, perMessageDeflate: false });
        await new Promise<void>((resolve, reject) => {
          ws.once('open', () => resolve());
          ws.once('error', reject);
          ws.once('unexpected-response', (_q, res) => reject(new Error(`handshake ${res.statusCode}`)));
        });
        if (this.stopped) return void ws.terminate();
        this.ws = ws;
        ws.on('message', (d) => this.onMessage(JSON.parse(d.toString())));
        ws.send(helloFrame());
        this.report();
        await new Promise<void>((r) => ws.once('close', () => r()));
        this.ws = undefined;
      } catch {
        // hub down or restarting: retry
      }
      if (!this.stopped) await new Promise((r) => setTimeout(r, 100 + Math.random() * 200));
    }
  }

  /** Sends any agent message now (false when not connected). */
  say(m: unknown): boolean {
    if (this.ws?.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(m));
    return true;
  }

  /** Called with each message as it is sent (benchmarks time from here). */
  onSend: ((m: { type: string } & Record<string, unknown>) => void) | null = null;

  private send(m: { type: string } & Record<string, unknown>): void {
    if (this.ws?.readyState === WebSocket.OPEN) {
      this.onSend?.(m);
      this.ws.send(JSON.stringify(m));
    }
  }

  private report(): void {
    if (this.statuses.size || this.services.length || this.alarms.length) this.send({ type: 'status', releases: [...this.statuses.values()], services: this.services, ...(this.drift.length ? { drift: this.drift } : {}), ...(this.alarms.length ? { alarms: this.alarms } : {}) });
  }

  /** Sends a status now (after a test changed `services` or `drift`). */
  reportNow(): void {
    this.report();
  }

  /** Raises an alarm, as an agent refusing a rewritten audit log does: reported with its status from now on. */
  alarm(code: string, message: string, kind?: 'directive' | 'roots' | 'checkpoint'): void {
    this.alarms.push({ at: new Date().toISOString(), code, message, ...(kind ? { kind } : {}) });
    this.report();
  }

  private onMessage(m: { type: string; directive?: Envelope; id?: string; upTo?: number }): void {
    if (m.type === 'checks-ack') return void (this.checksAcked = Math.max(this.checksAcked, m.upTo ?? 0));
    // asked what it would do: nothing (a simulated engine always matches)
    if (m.type === 'plan-request' && m.id) return this.send({ type: 'plan', id: m.id, steps: [], waiting: [] });
    if (m.type !== 'directive' || !m.directive) return;
    const env = m.directive;
    const doc = JSON.parse(payloadBytes(env).toString()) as DirectiveDoc;
    const digest = payloadDigest(env);
    if (!this.received.includes(doc.seq)) this.received.push(doc.seq);
    if (doc.seq < this.accepted) return this.send({ type: 'ack', seq: doc.seq, digest, accepted: false, code: 'FERRY_E_DIRECTIVE_REPLAY' });
    if (doc.seq === this.accepted) return this.send({ type: 'ack', seq: doc.seq, digest, accepted: true, duplicate: true });
    if (this.windowClosed) return this.send({ type: 'ack', seq: doc.seq, digest, accepted: false, code: 'FERRY_E_POLICY_WINDOW', message: 'outside the maintenance window' });
    this.accepted = doc.seq;
    this.send({ type: 'ack', seq: doc.seq, digest, accepted: true });
    if (doc.upgrade && doc.upgrade.version !== this.agentVersion.installed) this.selfUpgrade(doc.seq, doc.upgrade.version);
    for (const ref of doc.releases) {
      if (this.statuses.get(ref.stack)?.version === ref.version && this.running.get(ref.stack) === ref.version) continue;
      const before = this.running.get(ref.stack) ?? null;
      this.statuses.set(ref.stack, { stack: ref.stack, version: ref.version, state: 'applying', since: new Date().toISOString(), runningVersion: before });
      this.report();
      this.later(this.applyMs, () => {
        if (this.accepted !== doc.seq) return; // superseded meanwhile
        const fails = this.failing.has(`${ref.stack}@${ref.version}`);
        if (!fails) this.running.set(ref.stack, ref.version);
        this.statuses.set(ref.stack, { stack: ref.stack, version: ref.version, state: fails ? 'rolled-back' : 'applied', since: new Date().toISOString(), runningVersion: fails ? before : ref.version, ...(fails ? { code: 'FERRY_E_UNHEALTHY' } : {}) });
        this.report();
      });
    }
  }

  /** Pretends to upgrade itself: installing, then after applyMs committed, or reverted when `@agent@V` is failing. */
  private selfUpgrade(seq: number, version: string): void {
    const v = this.agentVersion;
    const msg = (state: string, extra: Record<string, unknown> = {}) => ({ type: 'upgrade', installed: v.installed, running: v.installed, previous: v.previous, pending: null, version, state, since: new Date().toISOString(), ...extra });
    this.send(msg('installing', { pending: version }));
    this.later(this.applyMs, () => {
      if (this.accepted !== seq) return; // superseded meanwhile
      if (this.failing.has(`@agent@${version}`)) return this.send(msg('reverted', { code: 'FERRY_E_UPGRADE_CRASHED', message: `ferry-agent ${version} exited with code 3 before it was healthy` }));
      this.agentVersion = { installed: version, previous: v.installed };
      this.send(msg('committed', { installed: version, running: version, previous: v.installed }));
    });
  }
}

const ROOT_KEY = seededKey('sim-root');
const RELEASE_KEY = seededKey('sim-release');

/** A tenant with a signed trust root trusting the simulation's release key. */
export async function simTenant(api: Api, tenant: string): Promise<void> {
  const t = await api('POST', '/v1/tenants', { name: tenant });
  if (t.status !== 201 && t.status !== 409) throw new Error(`tenant: ${t.status} ${JSON.stringify(t.body)}`);
  if (t.status === 409) return;
  const init = await api('POST', `/v1/tenants/${tenant}/trust/init`, { root: [{ public: encodePublicKey(ROOT_KEY.publicKey) }], rootThreshold: 1, release: [{ public: encodePublicKey(RELEASE_KEY.publicKey), name: 'rm' }], releaseThreshold: 1 });
  const sig = Buffer.from(sign(pae(PAYLOAD_TYPES.root, Buffer.from(init.body.envelope.payload, 'base64')), ROOT_KEY.secretKey)).toString('base64');
  const s = await api('POST', `/v1/tenants/${tenant}/trust/signatures`, { version: 1, keyid: keyId(ROOT_KEY.publicKey), sig });
  if (!s.body?.active) throw new Error(`root: ${s.status} ${JSON.stringify(s.body)}`);
}

/** Publishes and signs a release (a pinned image that never runs: the sim engine only remembers it). */
export async function simRelease(api: Api, stack: string, version: string): Promise<void> {
  const doc = releaseDoc(stack, version, {}, { web: service('127.0.0.1:5000/sim/web@sha256:' + 'b'.repeat(64)) });
  const c = await api('POST', '/v1/releases', { payload: canonicalJson(doc).toString('base64') });
  if (c.status !== 201) throw new Error(`release: ${c.status} ${JSON.stringify(c.body)}`);
  const sig = Buffer.from(sign(pae(PAYLOAD_TYPES.release, Buffer.from(c.body.envelope.payload, 'base64')), RELEASE_KEY.secretKey)).toString('base64');
  const s = await api('POST', `/v1/releases/${stack}/${version}/signatures`, { publicKey: encodePublicKey(RELEASE_KEY.publicKey), sig });
  if (s.status !== 200) throw new Error(`sign: ${s.status} ${JSON.stringify(s.body)}`);
}

/** Enrolls `n` simulated agents of `tenant` with labels, started and connected. */
export async function simAgents(api: Api, hub: () => string, tenant: string, n: number, opts: { labels?: (i: number) => Record<string, string>; applyMs?: number; namePrefix?: string } = {}): Promise<SimAgent[]> {
  await simTenant(api, tenant);
  const out: SimAgent[] = [];
  for (let i = 0; i < n; i++) {
    const tok = await api('POST', `/v1/tenants/${tenant}/enrollment-tokens`, { ttlSeconds: 3600 });
    const kp = generateKeyPair();
    const name = `${opts.namePrefix ?? 'sim'}-${String(i).padStart(5, '0')}`;
    const r = await postEnroll(hub(), enrollBody(hub(), tok.body.token, kp, name, opts.labels?.(i) ?? {}));
    if (r.status !== 201) throw new Error(`enroll: ${r.status} ${JSON.stringify(r.body)}`);
    out.push(new SimAgent(r.body.agentId, tenant, kp, hub, opts.applyMs ?? 20));
  }
  for (const a of out) a.start();
  return out;
}

/** Seqs strictly increasing in the order received. */
export function seqsIncreasing(a: SimAgent): boolean {
  return a.received.every((s, i) => i === 0 || s > a.received[i - 1]!);
}

// The audit badge, computed in the browser: this module is compiled by tsc
// and served as-is (an ES module with no imports) to the console's audit
// page. It fetches the log's export (entries, checkpoints, cosignatures) and
// checks it with WebCrypto alone — SHA-256 for RFC 6962 leaf and node hashes,
// Ed25519 for the hub's checkpoint signatures and the agents' cosignatures —
// so the badge is the browser's finding, not the hub's word. It is the same
// check as `ferry audit verify` (shared/audit-verify.ts), which runs on Node
// with node:crypto and zod and so cannot be served;
// test/unit/console-audit-check.test.ts runs both over the same exports,
// clean and tampered, and requires the same verdict.
//
// The hub's key is fetched from the hub, so the page shows its fingerprint and
// remembers it per hub in this browser (localStorage): a key that changes
// turns the badge red.
//
// WebCrypto exists only in a secure context: over HTTPS, or from localhost.

export const CHECKPOINT_TYPE = 'application/vnd.ferry.checkpoint+json';

export interface BrowserReport {
  ok: boolean;
  entries: number;
  checkpoints: number;
  /** Checkpoints with at least one valid agent cosignature. */
  witnessed: number;
  /** The largest checkpoint the entries reproduce (0: none). */
  verifiedSize: number;
  /** Entries newer than the latest checkpoint (not yet vouched for by a signature). */
  unvouched: number;
  hubKeyFingerprint: string;
  problems: string[];
}

interface Line {
  kind: 'checkpoint' | 'entry';
  envelope?: { payloadType: string; payload: string; signatures: { keyid: string; sig: string }[] };
  cosignatures?: { agentId: string; publicKey: string | null; sig: string }[];
  index?: number;
  data?: string;
  leafHash?: string;
}

/** Bytes over a plain ArrayBuffer, as WebCrypto takes them. */
type Bytes = Uint8Array<ArrayBuffer>;

const enc = new TextEncoder();

function b64(s: string): Bytes {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function hex(b: Uint8Array): string {
  let s = '';
  for (const x of b) s += x.toString(16).padStart(2, '0');
  return s;
}

function concat(...parts: Uint8Array[]): Bytes {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

async function sha256(data: Bytes): Promise<Bytes> {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', data));
}

const LEAF = new Uint8Array([0]);
const NODE = new Uint8Array([1]);
const leafHash = (data: Bytes) => sha256(concat(LEAF, data));
const nodeHash = (l: Uint8Array, r: Uint8Array) => sha256(concat(NODE, l, r));

/** DSSE pre-authentication encoding (shared/dsse.ts `pae`). */
function pae(type: string, payload: Uint8Array): Bytes {
  const t = enc.encode(type);
  return concat(enc.encode(`DSSEv1 ${t.length} `), t, enc.encode(` ${payload.length} `), payload);
}

async function ed25519(pub: Bytes, sig: Bytes, message: Bytes): Promise<boolean> {
  try {
    const key = await crypto.subtle.importKey('raw', pub, { name: 'Ed25519' }, false, ['verify']);
    return await crypto.subtle.verify({ name: 'Ed25519' }, key, sig, message);
  } catch {
    return false;
  }
}

/** `SHA256:<base64, unpadded>` of the raw key, as `ferry` and the console show keys (shared/keys.ts `fingerprint`). */
export async function fingerprint(pub: Bytes): Promise<string> {
  const d = await sha256(pub);
  return `SHA256:${btoa(String.fromCharCode(...d)).replace(/=+$/, '')}`;
}

/** An RFC 6962 tree grown a leaf at a time: perfect subtrees on a stack, the root a right fold over them. */
class Tree {
  private readonly stack: { hash: Bytes; size: number }[] = [];
  size = 0;

  async append(leaf: Bytes): Promise<void> {
    let node = { hash: leaf, size: 1 };
    while (this.stack.length && this.stack[this.stack.length - 1]!.size === node.size) {
      const left = this.stack.pop()!;
      node = { hash: await nodeHash(left.hash, node.hash), size: left.size * 2 };
    }
    this.stack.push(node);
    this.size++;
  }

  async root(): Promise<Bytes> {
    if (!this.stack.length) return sha256(new Uint8Array());
    let r = this.stack[this.stack.length - 1]!.hash;
    for (let i = this.stack.length - 2; i >= 0; i--) r = await nodeHash(this.stack[i]!.hash, r);
    return r;
  }
}

/** Checks a log's export (GET /v1/audit/:log/export, NDJSON) against the hub's public key (base64). */
export async function checkExport(log: string, ndjson: string, hubKeyB64: string): Promise<BrowserReport> {
  const problems: string[] = [];
  const hubKey = b64(hubKeyB64);
  const hubKeyId = hex(await sha256(hubKey));
  const lines: Line[] = [];
  for (const text of ndjson.split('\n')) {
    if (!text.trim()) continue;
    try {
      lines.push(JSON.parse(text) as Line);
    } catch {
      problems.push('the export has a line that is not JSON');
    }
  }

  // 1. checkpoints: signed by the hub's key, for this log; cosigned by agents
  const roots = new Map<number, Set<string>>();
  let witnessed = 0;
  let checkpoints = 0;
  for (const l of lines) {
    if (l.kind !== 'checkpoint' || !l.envelope) continue;
    checkpoints++;
    const env = l.envelope;
    const payload = b64(env.payload);
    const message = pae(env.payloadType, payload);
    let signed = false;
    for (const s of env.signatures) if (s.keyid === hubKeyId && (await ed25519(hubKey, b64(s.sig), message))) signed = true;
    if (!signed || env.payloadType !== CHECKPOINT_TYPE) {
      problems.push('a checkpoint is not signed by the hub key');
      continue;
    }
    let cp: { _type?: string; log?: string; size?: number; root?: string };
    try {
      cp = JSON.parse(new TextDecoder().decode(payload)) as typeof cp;
    } catch {
      problems.push('a signed checkpoint is not JSON');
      continue;
    }
    if (cp._type !== 'checkpoint' || cp.log !== log || typeof cp.size !== 'number' || typeof cp.root !== 'string') {
      problems.push(`a checkpoint for ${String(cp.log)} is in the export of ${log}`);
      continue;
    }
    let good = 0;
    for (const c of l.cosignatures ?? []) {
      if (c.publicKey && (await ed25519(b64(c.publicKey), b64(c.sig), message))) good++;
      else problems.push(`the cosignature by agent ${c.agentId} on checkpoint ${cp.size} does not verify`);
    }
    if (good) witnessed++;
    const set = roots.get(cp.size) ?? new Set<string>();
    set.add(cp.root);
    roots.set(cp.size, set);
  }
  for (const [size, set] of roots) if (set.size > 1) problems.push(`two different roots are signed for size ${size}: the log was forked`);
  const sizes = [...roots.keys()].sort((a, b) => a - b);

  // 2. entries: in order, intact, each where it says it is; the tree rebuilt must give every checkpoint's root
  const tree = new Tree();
  let next = 0;
  let verifiedSize = 0;
  let broken = false;
  let si = 0;
  const bad = (p: string) => {
    problems.push(p);
    broken = true;
  };
  for (const l of lines) {
    if (l.kind !== 'entry' || l.data === undefined || l.index === undefined) continue;
    if (l.index !== next) {
      bad(`entry ${next}${l.index > next + 1 ? `..${l.index - 1}` : ''} is missing`);
      while (next < l.index) {
        await tree.append(new Uint8Array(32));
        next++;
      }
    }
    const data = b64(l.data);
    const leaf = await leafHash(data);
    if (hex(leaf) !== l.leafHash) bad(`entry ${l.index} was edited: its bytes no longer hash to its leaf`);
    try {
      const e = JSON.parse(new TextDecoder().decode(data)) as { log?: string; index?: number };
      if (e.log !== log || e.index !== l.index) bad(`entry ${l.index} says it is entry ${String(e.index)} of log ${String(e.log)}: entries were moved`);
    } catch {
      bad(`entry ${l.index} is not a valid entry`);
    }
    await tree.append(leaf);
    next++;
    while (si < sizes.length && sizes[si]! <= tree.size) {
      const size = sizes[si++]!;
      if (size === 0) continue;
      if (size !== tree.size) continue; // a size 0..n skipped only when entries are missing (reported above)
      const root = hex(await tree.root());
      if (!roots.get(size)!.has(root)) bad(`entries up to ${size - 1} do not reproduce the checkpoint signed at size ${size}`);
      else if (!broken) verifiedSize = size;
    }
  }
  const largest = sizes[sizes.length - 1] ?? 0;
  if (largest > tree.size) bad(`the log has ${tree.size} entries but a checkpoint of size ${largest} was signed: entries were removed`);
  return { ok: problems.length === 0, entries: tree.size, checkpoints, witnessed, verifiedSize, unvouched: Math.max(0, tree.size - largest), hubKeyFingerprint: await fingerprint(hubKey), problems };
}

// ---- the page ----------------------------------------------------------------------------------
// Only what this module touches of the DOM (the project compiles without the DOM library).

interface El {
  dataset: Record<string, string | undefined>;
  textContent: string | null;
  className: string;
  hidden: boolean;
  replaceChildren(...nodes: El[]): void;
}
declare const document: { querySelector(s: string): El | null; createElement(tag: string): El } | undefined;
declare const localStorage: { getItem(k: string): string | null; setItem(k: string, v: string): void } | undefined;
declare const location: { origin: string };

function show(badge: El, details: El | null, tone: 'ok' | 'bad' | 'warn' | 'busy', text: string, lines: string[] = []): void {
  badge.className = `badge ${tone}`;
  badge.dataset.result = tone;
  badge.textContent = text;
  if (details) {
    details.replaceChildren(
      ...lines.map((t) => {
        const li = document!.createElement('li');
        li.textContent = t;
        return li;
      }),
    );
    details.hidden = lines.length === 0;
  }
}

async function runBadge(badge: El): Promise<void> {
  const log = badge.dataset.log ?? '';
  const details = document!.querySelector('#audit-badge-details');
  if (!globalThis.crypto?.subtle) return show(badge, details, 'warn', 'Not checked: this browser offers WebCrypto only over HTTPS (or from localhost).');
  show(badge, details, 'busy', 'Checking the log in this browser…');
  try {
    const meta = (await (await fetch('/v1/audit', { credentials: 'same-origin' })).json()) as { hubKey: string };
    const res = await fetch(`/v1/audit/${encodeURIComponent(log)}/export`, { credentials: 'same-origin' });
    if (!res.ok) throw new Error(`the export answered ${res.status}`);
    const r = await checkExport(log, await res.text(), meta.hubKey);
    const pinKey = `ferry.hubKey.${location.origin}`;
    const pinned = localStorage?.getItem(pinKey) ?? null;
    const lines = [`Hub key ${r.hubKeyFingerprint}${pinned === null ? ' (first seen by this browser now)' : ''}.`, ...r.problems];
    if (pinned !== null && pinned !== r.hubKeyFingerprint) {
      return show(badge, details, 'bad', 'Not verified: the hub\'s key changed since this browser last checked.', [`This browser knew ${pinned}; the hub now shows ${r.hubKeyFingerprint}.`, ...r.problems]);
    }
    if (pinned === null) localStorage?.setItem(pinKey, r.hubKeyFingerprint);
    if (!r.ok) return show(badge, details, 'bad', `Tampered: ${r.problems.length} problem${r.problems.length === 1 ? '' : 's'} found in ${r.entries} entries.`, lines);
    if (r.checkpoints === 0) return show(badge, details, 'warn', `${r.entries} entries hash correctly, but no checkpoint is signed yet.`, lines);
    const tail = r.unvouched ? `; ${r.unvouched} newer not yet checkpointed` : '';
    show(badge, details, 'ok', `Verified in this browser: ${r.verifiedSize} entries match ${r.checkpoints} signed checkpoint${r.checkpoints === 1 ? '' : 's'}, ${r.witnessed} witnessed by agents${tail}.`, lines);
  } catch (err) {
    show(badge, details, 'bad', `Could not check: ${(err as Error).message}`);
  }
}

if (typeof document !== 'undefined') {
  const badge = document.querySelector('#audit-badge');
  if (badge) void runBadge(badge);
}

// The relay: every image an accepted (or pre-staged) release pins is copied
// from its source — the hub's registry origin, or the vendor's registry where
// the local policy allows — into the bank's registry under the vendor prefix,
// tagged <stack>-<version>, and runs from there by the same digest. Primary
// first; standbys are pushed to as well, or checked for replication
// (standbyMode), and caught up later when they were down. The reconciler
// pulls from the first healthy registry that holds the image. Retention
// removes only manifests this relay put under the prefix, never one a kept
// or accepted release uses. State (relay/state.json) survives restarts; so do
// upload sessions (relay/uploads.json) and fetched bytes (relay/spool/).
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import semver from 'semver';
import { FerryError, asFerryError, isErrorCode } from '../../shared/errors.js';
import { writeFileAtomic } from '../../shared/files.js';
import type { Logger } from '../../shared/logger.js';
import type { ImageRelay } from '../../shared/protocol.js';
import { registryOf, type Release } from '../../shared/release.js';
import type { BankRegistryConfig } from '../config.js';
import { Copier, type CopyProgress, type CopyStats, type KnownBlobs } from './copy.js';
import { DEFAULT_RETRY, Throttle, withRetry, type RetryOptions } from './pace.js';
import { RegistryClient } from './registry.js';
import { UploadBook, type Fetch } from './transfer.js';

export const RELAY_DIR = 'relay';
export const RELAY_FILE = 'state.json';

export interface PinnedImage {
  /** registry/repository@sha256:… as the release pins it. */
  ref: string;
  /** Everything before the @. */
  name: string;
  /** host[:port]; docker.io when the reference names none. */
  registry: string;
  /** The repository on that registry. */
  repository: string;
  digest: string;
}

export function pinnedImage(ref: string): PinnedImage {
  const at = ref.indexOf('@');
  const name = ref.slice(0, at);
  const digest = ref.slice(at + 1);
  const registry = registryOf(ref);
  let repository = registry === 'docker.io' && !name.startsWith('docker.io/') ? name : name.slice(name.indexOf('/') + 1);
  if (registry === 'docker.io' && !repository.includes('/')) repository = `library/${repository}`;
  return { ref, name, registry, repository, digest };
}

/** The tag a release's images get in the bank's registry: `<stack>-<version>` (+ is not allowed in tags). */
export function releaseTag(stack: string, version: string): string {
  return `${stack}-${version.replace(/\+/g, '_')}`.slice(0, 128);
}

interface ImageRecord {
  /** Repository in the bank registries: <prefix>/<vendor repository>. */
  name: string;
  digest: string;
  tags: string[];
  /** An index's child manifests. */
  children: string[];
  status: ImageRelay;
}

interface ReleaseRecord {
  stack: string;
  version: string;
  images: string[];
}

interface Persisted {
  format: 1;
  images: Record<string, ImageRecord>;
  releases: Record<string, ReleaseRecord>;
  known: KnownBlobs;
}

export interface RelayOptions {
  bank: BankRegistryConfig;
  stateDir: string;
  log: Logger;
  /** Where an image's bytes come from; throws (FERRY_E_POLICY_DIRECT) when it may not be fetched. */
  source: (image: PinnedImage) => Fetch;
  /** Called when an image changes state, and at most every `progressMs` while bytes move. */
  onChange?: (images: ImageRelay[]) => void;
  progressMs?: number;
  retry?: RetryOptions;
  now?: () => number;
}

export class Relay {
  readonly registries: RegistryClient[];
  private readonly copier: Copier;
  private readonly dir: string;
  private readonly now: () => number;
  private readonly inflight = new Map<string, Promise<void>>();
  private state: Persisted;
  private lastProgress = 0;

  constructor(private readonly o: RelayOptions) {
    this.now = o.now ?? Date.now;
    this.dir = join(o.stateDir, RELAY_DIR);
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    this.state = load(this.dir);
    const b = o.bank;
    this.registries = [b.primary, ...b.standbys].map(
      (e) => new RegistryClient({ url: e.url, auth: { kind: 'challenge', ...(e.username !== undefined ? { username: e.username, password: e.password ?? '' } : {}) }, proxy: b.proxy, ...(e.caFile ? { caFile: e.caFile } : {}), maxSockets: b.parallel * 2 }),
    );
    this.copier = new Copier({
      spoolDir: join(this.dir, 'spool'),
      book: new UploadBook(this.dir),
      known: this.state.known,
      chunkBytes: b.chunkBytes,
      parallel: b.parallel,
      throttle: new Throttle(b.bytesPerSecond),
      retry: o.retry ?? DEFAULT_RETRY,
    });
  }

  get stats(): CopyStats {
    return this.copier.stats;
  }

  /** What `ferry-agent status` and the hub see. */
  images(): ImageRelay[] {
    return Object.values(this.state.images).map((r) => r.status);
  }

  close(): void {
    for (const r of this.registries) r.close();
  }

  /**
   * Copies every image of the releases into the bank's registry; resolves
   * with each pinned reference's pull reference (the first healthy registry
   * that holds it). Throws the first failure's code, naming the image, when
   * an image could not be placed: the release must not start.
   */
  async ensure(releases: Release[], signal?: AbortSignal): Promise<Record<string, string>> {
    const wanted = new Map<string, { image: PinnedImage; releases: string[]; tags: string[] }>();
    for (const r of releases) {
      for (const s of Object.values(r.services)) {
        const w = wanted.get(s.image) ?? { image: pinnedImage(s.image), releases: [], tags: [] };
        const id = `${r.stack}@${r.version}`;
        if (!w.releases.includes(id)) w.releases.push(id), w.tags.push(releaseTag(r.stack, r.version));
        wanted.set(s.image, w);
      }
    }
    await Promise.all([...wanted.values()].map((w) => this.place(w.image, w.releases, w.tags, signal)));
    for (const r of releases) this.state.releases[`${r.stack}@${r.version}`] = { stack: r.stack, version: r.version, images: [...new Set(Object.values(r.services).map((s) => s.image))] };
    this.save();
    const failed = [...wanted.keys()].map((ref) => this.state.images[ref]!.status).find((s) => s.state === 'failed');
    if (failed) throw new FerryError(isErrorCode(failed.code) ? failed.code : 'FERRY_E_REGISTRY_FAILED', `${failed.image}: ${failed.message ?? ''}`.slice(0, 900));
    const pull: Record<string, string> = {};
    const up = new Map<RegistryClient, Promise<boolean>>();
    for (const ref of wanted.keys()) pull[ref] = await this.runFrom(this.state.images[ref]!, up, signal);
    return pull;
  }

  /** Where the reconciler pulls an image: the first registry, in order, that answers and holds it. */
  private async runFrom(rec: ImageRecord, up: Map<RegistryClient, Promise<boolean>>, signal?: AbortSignal): Promise<string> {
    for (const c of this.registries) {
      if (!up.has(c)) up.set(c, c.ping(signal));
      if (!(await up.get(c))) continue;
      const h = await c.headManifest(rec.name, rec.digest, signal).catch(() => null);
      if (h) return `${c.host}/${rec.name}@${rec.digest}`;
    }
    throw new FerryError('FERRY_E_REGISTRY_UNREACHABLE', `no bank registry that answers holds ${rec.name}@${rec.digest} (${this.registries.map((c) => c.host).join(', ')})`);
  }

  private place(image: PinnedImage, releases: string[], tags: string[], signal?: AbortSignal): Promise<void> {
    const running = this.inflight.get(image.ref);
    if (running) return running.then(() => this.place(image, releases, tags, signal));
    const p = this.copyImage(image, releases, tags, signal).finally(() => this.inflight.delete(image.ref));
    this.inflight.set(image.ref, p);
    return p;
  }

  private async copyImage(image: PinnedImage, releases: string[], tags: string[], signal?: AbortSignal): Promise<void> {
    const b = this.o.bank;
    const name = `${b.prefix}/${image.repository}`;
    const old = this.state.images[image.ref];
    const rec: ImageRecord = {
      name,
      digest: image.digest,
      tags: [...new Set([...(old?.tags ?? []), ...tags])],
      children: old?.children ?? [],
      status: {
        image: image.ref,
        target: `${b.primary.host}/${name}@${image.digest}`,
        releases: [...new Set([...(old?.status.releases ?? []), ...releases])].slice(-64),
        state: 'queued',
        bytesDone: 0,
        bytesTotal: 0,
        registries: this.registries.map((c) => ({ registry: c.host, state: 'copying' as const })),
        since: this.iso(),
      },
    };
    this.state.images[image.ref] = rec;
    this.changed(true);
    const started = this.now();
    const fetchedBefore = this.copier.stats.fetchedBytes;
    const progress: CopyProgress = {
      total: (n) => void (rec.status.bytesTotal += n),
      done: (n) => {
        rec.status.bytesDone = Math.min(rec.status.bytesTotal, rec.status.bytesDone + n);
        const secs = (this.now() - started) / 1000;
        if (secs > 0) rec.status.bytesPerSecond = Math.round((this.copier.stats.fetchedBytes - fetchedBefore) / secs);
        this.changed(false);
      },
      copying: () => {
        rec.status.state = 'copying';
        this.changed(true);
      },
    };
    const dests = b.standbyMode === 'push' ? this.registries : this.registries.slice(0, 1);
    try {
      const source = this.o.source(image);
      const out = await this.copier.copy({ source, name, digest: image.digest, tags: rec.tags, dests: dests.map((client) => ({ client })) }, progress, signal);
      if (out.children.length) rec.children = out.children;
      const states = await Promise.all(
        this.registries.map(async (c, i) => {
          if (i > 0 && b.standbyMode === 'verify') return (await c.headManifest(name, image.digest, signal).catch(() => null)) ? { registry: c.host, state: 'present' as const } : { registry: c.host, state: 'pending' as const };
          const err = out.dests.get(c.host) ?? null;
          return err ? { registry: c.host, state: 'behind' as const, code: err.code } : { registry: c.host, state: 'present' as const };
        }),
      );
      rec.status.registries = states;
      const primaryErr = out.dests.get(b.primary.host) ?? null;
      const elsewhere = states.some((s, i) => i > 0 && s.state === 'present');
      if (primaryErr && !(primaryErr.code === 'FERRY_E_REGISTRY_UNREACHABLE' && elsewhere)) throw primaryErr;
      rec.status.state = out.present ? 'present' : 'verified';
      rec.status.bytesDone = rec.status.bytesTotal;
      delete rec.status.code;
      delete rec.status.message;
      for (const s of states.filter((x) => x.state === 'behind')) this.o.log.warn({ image: image.ref, registry: s.registry, code: s.code }, 'standby registry behind; it is caught up later');
      this.o.log.info({ image: image.ref, target: rec.status.target, state: rec.status.state, bytes: rec.status.bytesTotal, ms: this.now() - started }, 'image relayed');
    } catch (err) {
      if (signal?.aborted) throw err;
      const e = asFerryError(err, 'FERRY_E_REGISTRY_FAILED');
      rec.status.state = 'failed';
      rec.status.code = e.code;
      rec.status.message = e.message.slice(0, 1000);
      rec.status.registries = rec.status.registries.map((r) => (r.state === 'copying' ? { ...r, state: 'failed' as const, code: e.code } : r));
      this.o.log.error({ image: image.ref, code: e.code, detail: e.detail }, 'image relay failed');
    }
    rec.status.since = this.iso();
    this.changed(true);
  }

  /** Brings standbys that fell behind (or wait for replication) up to date, copying from the primary when it holds the image. */
  async catchUp(signal?: AbortSignal): Promise<number> {
    let fixed = 0;
    for (const [ref, rec] of Object.entries(this.state.images)) {
      if (rec.status.state === 'failed' || this.inflight.has(ref)) continue;
      for (const [i, c] of this.registries.entries()) {
        const st = rec.status.registries[i];
        if (!st || (st.state !== 'behind' && st.state !== 'pending')) continue;
        try {
          if (i > 0 && this.o.bank.standbyMode === 'verify') {
            if (!(await c.headManifest(rec.name, rec.digest, signal))) continue;
          } else {
            const holder = this.registries.find((_x, j) => j !== i && rec.status.registries[j]?.state === 'present');
            const source: Fetch = holder ? { client: holder, name: rec.name } : this.o.source(pinnedImage(ref));
            const out = await this.copier.copy({ source, name: rec.name, digest: rec.digest, tags: rec.tags, dests: [{ client: c }] }, { total: () => undefined, done: () => undefined, copying: () => undefined }, signal);
            const err = out.dests.get(c.host);
            if (err) throw err;
          }
          rec.status.registries[i] = { registry: c.host, state: 'present' };
          fixed++;
          this.o.log.info({ image: ref, registry: c.host }, 'standby registry caught up');
          this.changed(true);
        } catch (err) {
          if (signal?.aborted) throw err;
          const e = asFerryError(err, 'FERRY_E_REGISTRY_FAILED');
          if (st.code !== e.code) (rec.status.registries[i] = { ...st, code: e.code }), this.changed(true);
        }
      }
    }
    return fixed;
  }

  /**
   * Retention: keeps the newest `keepVersions` versions per stack that this
   * relay recorded, plus every release in `inUse` (accepted, running, last
   * good); deletes the manifests of the others' images that no kept release
   * uses, under the prefix only. Returns the references removed.
   */
  async retain(inUse: Release[], signal?: AbortSignal): Promise<string[]> {
    const keep = this.o.bank.keepVersions;
    if (keep === null) return [];
    const used = new Set(inUse.map((r) => `${r.stack}@${r.version}`));
    const byStack = new Map<string, ReleaseRecord[]>();
    for (const r of Object.values(this.state.releases)) byStack.set(r.stack, [...(byStack.get(r.stack) ?? []), r]);
    const dropped: ReleaseRecord[] = [];
    for (const list of byStack.values()) {
      list.sort((a, b) => semver.rcompare(a.version, b.version));
      list.forEach((r, i) => i >= keep && !used.has(`${r.stack}@${r.version}`) && dropped.push(r));
    }
    if (!dropped.length) return [];
    const keptRefs = new Set([...Object.values(this.state.releases).filter((r) => !dropped.includes(r)).flatMap((r) => r.images), ...inUse.flatMap((r) => Object.values(r.services).map((s) => s.image))]);
    const keptManifests = new Set([...keptRefs].flatMap((ref) => {
      const rec = this.state.images[ref];
      return rec ? [`${rec.name}@${rec.digest}`, ...rec.children.map((c) => `${rec.name}@${c}`)] : [];
    }));
    const removed: string[] = [];
    const targets = this.o.bank.standbyMode === 'push' ? this.registries : this.registries.slice(0, 1);
    for (const ref of new Set(dropped.flatMap((r) => r.images))) {
      const rec = this.state.images[ref];
      if (!rec || keptRefs.has(ref)) continue;
      if (!rec.name.startsWith(`${this.o.bank.prefix}/`)) continue; // never outside the prefix
      for (const digest of [rec.digest, ...rec.children]) {
        if (keptManifests.has(`${rec.name}@${digest}`)) continue;
        for (const c of targets) {
          try {
            await withRetry(() => c.deleteManifest(rec.name, digest, signal), { ...DEFAULT_RETRY, attempts: 3, ...(signal ? { signal } : {}) });
          } catch (err) {
            this.o.log.warn({ image: ref, registry: c.host, err: asFerryError(err).message }, 'retention could not delete a manifest; it is tried again next time');
            return removed;
          }
        }
      }
      delete this.state.images[ref];
      removed.push(`${rec.name}@${rec.digest}`);
    }
    for (const r of dropped) delete this.state.releases[`${r.stack}@${r.version}`];
    this.o.log.info({ removed, versions: dropped.map((r) => `${r.stack}@${r.version}`) }, 'retention removed old vendor images');
    this.changed(true);
    return removed;
  }

  private iso(): string {
    return new Date(this.now()).toISOString();
  }

  /** Saves and reports: at once for a transition, throttled for byte progress. */
  private changed(transition: boolean): void {
    const t = this.now();
    if (!transition && t - this.lastProgress < (this.o.progressMs ?? 1000)) return;
    this.lastProgress = t;
    this.save();
    this.o.onChange?.(this.images());
  }

  private save(): void {
    writeFileAtomic(join(this.dir, RELAY_FILE), JSON.stringify(this.state) + '\n', 0o600);
  }
}

function load(dir: string): Persisted {
  try {
    const p = JSON.parse(readFileSync(join(dir, RELAY_FILE), 'utf8')) as Persisted;
    if (p.format !== 1) throw new Error(`unknown format ${String(p.format)}`);
    return p;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { format: 1, images: {}, releases: {}, known: {} };
    throw new FerryError('FERRY_E_STATE_CORRUPT', `${RELAY_DIR}/${RELAY_FILE}: ${(err as Error).message}`);
  }
}

/** The relay's image states from the state dir, for `ferry-agent status` (no relay running needed). */
export function readRelayImages(stateDir: string): ImageRelay[] {
  try {
    return Object.values(load(join(stateDir, RELAY_DIR)).images).map((r) => r.status);
  } catch {
    return [];
  }
}

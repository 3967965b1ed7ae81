// The copy engine: one image (a manifest, or an index with all its
// children) from a source into one or more bank registries. Blobs first —
// skipped when the destination has them (HEAD), mounted from another
// repository of the same registry when the relay put them there before,
// otherwise fetched once into the spool and uploaded in chunks — several at
// a time (bounded); manifests last, children before their index, each
// checked against its digest before it is stored; the human tag after the
// digest. A destination that fails is dropped from the rest of this copy and
// reported; the others carry on.
import { rm } from 'node:fs/promises';
import { FerryError, asFerryError } from '../../shared/errors.js';
import { parseManifest, sha256Digest, type Descriptor } from '../../shared/oci.js';
import { withRetry, type RetryOptions, type Throttle } from './pace.js';
import type { RegistryClient, UploadState } from './registry.js';
import { pushBlob, spoolBlob, type Fetch, type Spool, type UploadBook } from './transfer.js';

export interface Dest {
  client: RegistryClient;
}

/** Where blobs are known to be, per destination registry: digest -> a repository holding it. */
export type KnownBlobs = Record<string, Record<string, string>>;

export interface CopyRequest {
  source: Fetch;
  /** Repository in the bank registries. */
  name: string;
  digest: string;
  tags: string[];
  dests: Dest[];
}

export interface CopyProgress {
  /** Bytes of blobs and manifests the image needs (grows as an index is walked). */
  total(n: number): void;
  /** Bytes present, mounted or fetched. */
  done(n: number): void;
  /** Destinations now copying. */
  copying(): void;
}

export interface CopyOutcome {
  /** Per destination host: null when it holds the image now, else why not. */
  dests: Map<string, FerryError | null>;
  /** Manifest digests of the index's children (empty for a plain image). */
  children: string[];
  /** Whether every destination held the image before (nothing moved). */
  present: boolean;
}

export interface CopierOptions {
  spoolDir: string;
  book: UploadBook;
  known: KnownBlobs;
  chunkBytes: number;
  parallel: number;
  throttle: Throttle;
  retry: RetryOptions;
}

/** Counters for what moved, for status and benchmarks. */
export interface CopyStats {
  fetchedBytes: number;
  sentBytes: number;
  mountedBlobs: number;
  presentBlobs: number;
}

export class Copier {
  readonly stats: CopyStats = { fetchedBytes: 0, sentBytes: 0, mountedBlobs: 0, presentBlobs: 0 };
  private readonly spools = new Map<string, { spool: Spool; users: number }>();
  private readonly slots: (() => void)[] = [];
  private active = 0;

  constructor(private readonly o: CopierOptions) {}

  async copy(req: CopyRequest, p: CopyProgress, signal?: AbortSignal): Promise<CopyOutcome> {
    const out = new Outcomes(req.dests);
    const retry = { ...this.o.retry, ...(signal ? { signal } : {}) };
    const lacking = await this.lacking(req.dests, (d) => withRetry(() => d.client.headManifest(req.name, req.digest, signal), retry).then((h) => h !== null), out);
    const children: string[] = [];
    if (lacking.length) {
      p.copying();
      await this.manifest(req, req.digest, lacking, p, children, out, signal);
    }
    // Tags after the digest: a tag never names something incomplete.
    const tagged = out.live(req.dests);
    if (tagged.length && req.tags.length) {
      const { bytes, contentType } = await withRetry(() => tagged[0]!.client.getManifest(req.name, req.digest, signal), retry);
      for (const d of tagged) {
        for (const tag of req.tags) {
          await withRetry(() => d.client.putManifest(req.name, tag, bytes, contentType, signal), retry).catch((err: unknown) => out.fail(d, err));
        }
      }
    }
    return { dests: out.errors, children, present: lacking.length === 0 };
  }

  /** Destinations where `has` is false; a destination whose check fails is failed. */
  private async lacking(dests: Dest[], has: (d: Dest) => Promise<boolean>, out: Outcomes): Promise<Dest[]> {
    const need: Dest[] = [];
    await Promise.all(
      dests.map(async (d) => {
        try {
          if (!(await has(d))) need.push(d);
        } catch (err) {
          out.fail(d, err);
        }
      }),
    );
    return dests.filter((d) => need.includes(d));
  }

  private async manifest(req: CopyRequest, digest: string, dests: Dest[], p: CopyProgress, children: string[], out: Outcomes, signal?: AbortSignal): Promise<void> {
    const retry = { ...this.o.retry, ...(signal ? { signal } : {}) };
    const { bytes, contentType } = await withRetry(() => req.source.client.getManifest(req.source.name, digest, signal), retry);
    const actual = sha256Digest(bytes);
    if (actual !== digest) throw new FerryError('FERRY_E_REGISTRY_DIGEST', `manifest ${req.source.name}@${digest} from ${req.source.client.host} has digest ${actual}`);
    const m = parseManifest(bytes, contentType);
    p.total(bytes.length);
    if (m.kind === 'index') {
      for (const child of m.children) {
        children.push(child.digest);
        const need = await this.lacking(out.live(dests), (d) => withRetry(() => d.client.headManifest(req.name, child.digest, signal), retry).then((h) => h !== null), out);
        if (need.length) await this.manifest(req, child.digest, need, p, children, out, signal);
      }
    } else {
      // Foreign layers (`urls`) are never stored in registries.
      const blobs = [m.config, ...m.layers].filter((b) => !b.urls);
      for (const b of blobs) p.total(b.size);
      await Promise.all(blobs.map((b) => this.blob(req, b, dests, p, out, signal)));
    }
    for (const d of out.live(dests)) {
      try {
        const stored = await withRetry(() => d.client.putManifest(req.name, digest, bytes, m.mediaType, signal), retry);
        if (stored !== digest) throw new FerryError('FERRY_E_REGISTRY_DIGEST', `${d.client.host} stored ${req.name}@${digest} as ${stored}`);
      } catch (err) {
        out.fail(d, err);
      }
    }
    p.done(bytes.length);
  }

  private async blob(req: CopyRequest, b: Descriptor, dests: Dest[], p: CopyProgress, out: Outcomes, signal?: AbortSignal): Promise<void> {
    const release = await this.slot(signal);
    const retry = { ...this.o.retry, ...(signal ? { signal } : {}) };
    try {
      const live = out.live(dests);
      const need = await this.lacking(live, (d) => withRetry(() => d.client.headBlob(req.name, b.digest, signal), retry).then((s) => s !== null), out);
      for (const d of live.filter((x) => !need.includes(x))) {
        this.remember(d, b.digest, req.name);
        await this.o.book.delete(`${d.client.host} ${req.name} ${b.digest}`);
      }
      if (need.length < live.length) this.stats.presentBlobs++;
      if (!need.length) return void p.done(b.size);
      // Mount from another repository of the same registry that holds it.
      const upload = new Map<Dest, UploadState>();
      for (const d of [...need]) {
        const from = this.o.known[d.client.host]?.[b.digest];
        if (!from || from === req.name) continue;
        try {
          const r = await withRetry(() => d.client.mount(req.name, b.digest, from, signal), retry);
          if (r === 'mounted') {
            need.splice(need.indexOf(d), 1);
            this.stats.mountedBlobs++;
            this.remember(d, b.digest, req.name);
          } else upload.set(d, r);
        } catch (err) {
          out.fail(d, err);
          need.splice(need.indexOf(d), 1);
        }
      }
      if (!need.length) return void p.done(b.size);
      const spool = this.spool(req.source, b, p, retry, signal);
      try {
        await Promise.all(
          need.map(async (d) => {
            try {
              const started = upload.get(d);
              await pushBlob(d.client, req.name, b, spool, { book: this.o.book, chunkBytes: this.o.chunkBytes, retry, onBytes: (n) => (this.stats.sentBytes += n), ...(started ? { started } : {}), ...(signal ? { signal } : {}) });
              this.remember(d, b.digest, req.name);
            } catch (err) {
              if (signal?.aborted) throw err;
              out.fail(d, err);
            }
          }),
        );
        // A source failure (digest, unreachable) fails the image, not a destination.
        await spool.verified;
      } finally {
        this.unspool(b);
      }
    } finally {
      release();
    }
  }

  /** The spool of a blob, fetched once however many copies need it at the same time. */
  private spool(src: Fetch, b: Descriptor, p: CopyProgress, retry: RetryOptions, signal?: AbortSignal): Spool {
    let s = this.spools.get(b.digest);
    if (!s) {
      const spool = spoolBlob(src, b, this.o.spoolDir, {
        throttle: this.o.throttle,
        retry,
        onBytes: (n) => {
          this.stats.fetchedBytes += n;
          p.done(n);
        },
        ...(signal ? { signal } : {}),
      });
      s = { spool, users: 0 };
      this.spools.set(b.digest, s);
    } else {
      s.spool.verified.then(() => p.done(b.size), () => undefined);
    }
    s.users++;
    return s.spool;
  }

  private unspool(b: Descriptor): void {
    const s = this.spools.get(b.digest);
    if (!s || --s.users > 0) return;
    this.spools.delete(b.digest);
    // Keep a partial download for the next attempt (Range resume); drop a finished or failed one.
    void s.spool.verified.then(
      (path) => rm(path, { force: true }),
      () => undefined,
    );
  }

  private remember(d: Dest, digest: string, name: string): void {
    (this.o.known[d.client.host] ??= {})[digest] = name;
  }

  private async slot(signal?: AbortSignal): Promise<() => void> {
    if (this.active >= this.o.parallel) await new Promise<void>((r) => this.slots.push(r));
    signal?.throwIfAborted();
    this.active++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.active--;
      this.slots.shift()?.();
    };
  }
}

/** Per destination: null while it is fine, else the first error that dropped it from this copy. */
class Outcomes {
  readonly errors: Map<string, FerryError | null>;

  constructor(dests: Dest[]) {
    this.errors = new Map(dests.map((d) => [d.client.host, null]));
  }

  fail(d: Dest, err: unknown): void {
    if (this.errors.get(d.client.host) === null) this.errors.set(d.client.host, asFerryError(err, 'FERRY_E_REGISTRY_FAILED'));
  }

  live(dests: Dest[]): Dest[] {
    return dests.filter((d) => this.errors.get(d.client.host) === null);
  }
}

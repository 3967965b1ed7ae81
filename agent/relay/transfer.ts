// Moving one blob: from the source into a spool file in the agent's state
// dir (resumed with a Range request from the file's length, its digest
// checked before it is used), then from the spool into a bank registry in
// chunks (PATCH with Content-Range), resumed from the offset the registry
// reports. The upload location and offset are written with fsync after every
// chunk, so a resume survives kill -9 and a restart: at most the chunk in
// flight is sent again. Bytes that do not match their digest never leave the
// spool.
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { FerryError } from '../../shared/errors.js';
import { writeFileAtomicAsync } from '../../shared/files.js';
import type { Descriptor } from '../../shared/oci.js';
import { backoffDelay, sleep } from '../../shared/sleep.js';
import { Retryable } from './http.js';
import { withRetry, type RetryOptions, type Throttle } from './pace.js';
import type { RegistryClient, UploadState } from './registry.js';

export const UPLOADS_FILE = 'uploads.json';

/** Upload sessions in progress, by destination registry, repository and digest; fsync'd on every change. */
export class UploadBook {
  private readonly file: string;
  private entries: Record<string, UploadState>;
  private writing: Promise<void> = Promise.resolve();
  private dirty = false;

  constructor(dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.file = join(dir, UPLOADS_FILE);
    try {
      this.entries = JSON.parse(readFileSync(this.file, 'utf8')) as Record<string, UploadState>;
    } catch {
      this.entries = {};
    }
  }

  get(key: string): UploadState | undefined {
    return this.entries[key];
  }

  /** Records a session; resolves once it is on disk (fsync), without blocking other transfers meanwhile. */
  set(key: string, s: UploadState): Promise<void> {
    this.entries[key] = { location: s.location, offset: s.offset };
    return this.save();
  }

  delete(key: string): Promise<void> {
    if (!(key in this.entries)) return Promise.resolve();
    delete this.entries[key];
    return this.save();
  }

  /** Writes are serialised; one write carries every change made before it starts. */
  private save(): Promise<void> {
    this.dirty = true;
    const run = this.writing.then(async () => {
      if (!this.dirty) return;
      this.dirty = false;
      await writeFileAtomicAsync(this.file, JSON.stringify(this.entries) + '\n', 0o600);
    });
    this.writing = run.catch(() => undefined);
    return run;
  }
}

export interface Fetch {
  client: RegistryClient;
  /** The repository name on the source (the hub's origin takes the full image name). */
  name: string;
}

/**
 * A blob on its way into the spool: uploads read the bytes already written
 * (`wait`) while the rest arrives, and complete only once `verified`
 * resolves, i.e. the whole file matched its digest.
 */
export class Spool {
  /** Bytes in the file so far. */
  have = 0;
  /** The file's path once its digest matched. */
  readonly verified: Promise<string>;
  private waiters: { n: number; resolve: () => void; reject: (e: unknown) => void }[] = [];
  private failure: unknown;

  constructor(readonly path: string, run: (spool: Spool) => Promise<string>) {
    this.verified = run(this).then(
      (p) => (this.grow(Number.MAX_SAFE_INTEGER), p),
      (err) => {
        this.failure = err;
        for (const w of this.waiters.splice(0)) w.reject(err);
        throw err;
      },
    );
    this.verified.catch(() => undefined); // whoever uses the spool sees the failure
  }

  /** Resolves once `n` bytes are in the file (rejects if fetching failed). */
  wait(n: number): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.have >= n) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ n, resolve, reject }));
  }

  grow(have: number): void {
    this.have = Math.max(this.have, have);
    this.waiters = this.waiters.filter((w) => (w.n <= this.have ? (w.resolve(), false) : true));
  }
}

/**
 * Fetches `desc` into the spool dir (what a previous run left there is kept
 * and resumed with a Range request), checking its digest over the whole file.
 * `onBytes` sees every byte read from the source or found in the spool.
 * Fetched bytes are not fsync'd: the digest check catches a file torn by a
 * power cut (then that blob fails once and is fetched anew next time).
 */
export function spoolBlob(src: Fetch, desc: Descriptor, dir: string, o: { throttle: Throttle; retry: RetryOptions; onBytes: (n: number) => void; signal?: AbortSignal }): Spool {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const hex = desc.digest.slice('sha256:'.length);
  const part = join(dir, `${hex}.part`);
  return new Spool(part, async (spool) => {
    const resumed = await fetchInto(src, desc, part, spool, o);
    const digest = `sha256:${resumed.hash.digest('hex')}`;
    if (digest !== desc.digest) {
      rmSync(part, { force: true });
      throw new FerryError('FERRY_E_REGISTRY_DIGEST', `blob ${desc.digest} from ${src.client.host} has digest ${digest}${resumed.from ? ` (resumed at ${resumed.from}; fetched anew next time)` : ''}`);
    }
    return part;
  });
}

async function fetchInto(src: Fetch, desc: Descriptor, part: string, spool: Spool, o: { throttle: Throttle; retry: RetryOptions; onBytes: (n: number) => void; signal?: AbortSignal }): Promise<{ hash: Hash; from: number }> {
  const hash = createHash('sha256');
  let have = existsSync(part) ? statSync(part).size : 0;
  if (have > desc.size) {
    rmSync(part, { force: true });
    have = 0;
  }
  if (have > 0) {
    await pipeline(createReadStream(part, { end: have - 1 }), new Writable({ write: (c: Buffer, _e, cb) => (hash.update(c), cb()) }));
    o.onBytes(have);
    spool.grow(have);
  }
  const from = have;
  // Writes go through libuv's pool, so the event loop keeps every other transfer moving.
  const fh = await open(part, 'a', 0o600);
  // The write in flight when a stream is cut lands after the cut: the next attempt asks from the offset after it.
  let writing: Promise<unknown> = Promise.resolve();
  try {
    await withRetry(async () => {
      await writing.catch(() => undefined);
      if (have >= desc.size) return;
      const { stream, start, total } = await src.client.getBlob(src.name, desc.digest, have, o.signal);
      if (total !== null && total !== desc.size) {
        stream.destroy();
        throw new FerryError('FERRY_E_REGISTRY_DIGEST', `blob ${desc.digest} from ${src.client.host} is ${total} bytes, its manifest says ${desc.size}`);
      }
      if (start === 0 && have > 0) throw new FerryError('FERRY_E_REGISTRY_FAILED', `${src.client.host} ignored the Range request for blob ${desc.digest}`);
      try {
        await pipeline(
          o.throttle.limited ? stream.pipe(o.throttle.stream(o.signal)) : stream,
          new Writable({
            write(c: Buffer, _e, cb) {
              if (have + c.length > desc.size) return cb(new FerryError('FERRY_E_REGISTRY_DIGEST', `blob ${desc.digest} from ${src.client.host} is longer than its manifest says (${desc.size} bytes)`));
              writing = fh.write(c).then(() => {
                hash.update(c);
                have += c.length;
                o.onBytes(c.length);
                spool.grow(have);
                cb();
              }, cb);
            },
          }),
        );
      } catch (err) {
        if (err instanceof FerryError || o.signal?.aborted) throw err;
        throw new Retryable(new FerryError('FERRY_E_REGISTRY_UNREACHABLE', `${src.client.host}: blob ${desc.digest} cut at ${have} of ${desc.size} bytes: ${(err as Error).message}`));
      }
      if (have < desc.size) throw new Retryable(new FerryError('FERRY_E_REGISTRY_UNREACHABLE', `${src.client.host}: blob ${desc.digest} ended at ${have} of ${desc.size} bytes`));
    }, o.retry);
  } finally {
    await writing.catch(() => undefined);
    await fh.close();
  }
  return { hash, from };
}

/**
 * Uploads a spooled blob to `dest` as `name@digest`, chunk by chunk as the
 * bytes arrive, resuming a session recorded in `book`; the upload is
 * completed only after the spool's digest matched, and cancelled when it did
 * not, so other bytes never become a blob in the bank. `onBytes` sees every
 * byte sent.
 */
export async function pushBlob(dest: RegistryClient, name: string, desc: Descriptor, spool: Spool, o: { book: UploadBook; chunkBytes: number; retry: RetryOptions; onBytes: (n: number) => void; started?: UploadState; signal?: AbortSignal }): Promise<void> {
  const key = `${dest.host} ${name} ${desc.digest}`;
  const recorded = o.book.get(key);
  let up: UploadState | null = null;
  if (recorded) up = await withRetry(() => dest.uploadStatus(name, recorded.location, o.signal), o.retry).catch(() => null);
  up ??= o.started ?? (await withRetry(() => dest.startUpload(name, o.signal), o.retry));
  await o.book.set(key, up);
  let failures = 0;
  const again = async (err: FerryError): Promise<UploadState> => {
    if (++failures >= o.retry.attempts) throw err;
    await sleep(backoffDelay(failures, o.retry.baseMs, o.retry.capMs), o.signal ?? new AbortController().signal);
    // Whatever reached the registry before the failure stays there: carry on from its offset.
    const now = await withRetry(() => dest.uploadStatus(name, up!.location, o.signal), o.retry).catch(() => null);
    return now ?? (await withRetry(() => dest.startUpload(name, o.signal), o.retry));
  };
  const cancel = async (err: unknown) => {
    await dest.cancelUpload(name, up!.location);
    await o.book.delete(key);
    throw err;
  };
  while (up.offset < desc.size) {
    const start = up.offset;
    const length = Math.min(o.chunkBytes, desc.size - start);
    await spool.wait(start + length).catch(cancel);
    let next: UploadState | { mismatch: true };
    try {
      next = await dest.patch(name, up, length, () => createReadStream(spool.path, { start, end: start + length - 1, highWaterMark: 1 << 20 }), o.signal);
    } catch (err) {
      if (!(err instanceof Retryable) || o.signal?.aborted) throw err;
      up = await again(err.error);
      await o.book.set(key, up);
      continue;
    }
    if ('mismatch' in next) {
      up = await again(new FerryError('FERRY_E_REGISTRY_FAILED', `${dest.host} keeps refusing the chunk at ${start} of ${desc.digest}`));
    } else {
      o.onBytes(Math.max(0, next.offset - start));
      up = next;
    }
    await o.book.set(key, up);
  }
  await spool.verified.catch(cancel);
  const final = up;
  await withRetry(() => dest.finishUpload(name, final, desc.digest, o.signal), o.retry);
  await o.book.delete(key);
}


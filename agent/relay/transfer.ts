// Moving one blob: from the source into a spool file in the agent's state
// dir (resumed with a Range request from the file's length, its digest
// checked before it is used), then from the spool into a bank registry in
// chunks (PATCH with Content-Range), resumed from the offset the registry
// reports. The upload location and offset are written with fsync after every
// chunk, so a resume survives kill -9 and a restart: at most the chunk in
// flight is sent again. Bytes that do not match their digest never leave the
// spool.
import { createHash, type Hash } from 'node:crypto';
import { closeSync, createReadStream, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { FerryError } from '../../shared/errors.js';
import { writeFileAtomic } from '../../shared/files.js';
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

  set(key: string, s: UploadState): void {
    this.entries[key] = { location: s.location, offset: s.offset };
    this.save();
  }

  delete(key: string): void {
    if (!(key in this.entries)) return;
    delete this.entries[key];
    this.save();
  }

  private save(): void {
    writeFileAtomic(this.file, JSON.stringify(this.entries) + '\n', 0o600);
  }
}

export interface Fetch {
  client: RegistryClient;
  /** The repository name on the source (the hub's origin takes the full image name). */
  name: string;
}

/**
 * The verified spool file for `desc`, fetching what is missing from the
 * source. `onBytes` sees every byte read from the source or found in the
 * spool already.
 */
export async function spoolBlob(src: Fetch, desc: Descriptor, dir: string, o: { throttle: Throttle; retry: RetryOptions; onBytes: (n: number) => void; signal?: AbortSignal }): Promise<string> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const hex = desc.digest.slice('sha256:'.length);
  const done = join(dir, `${hex}.blob`);
  if (existsSync(done) && statSync(done).size === desc.size) {
    o.onBytes(desc.size);
    return done;
  }
  const part = join(dir, `${hex}.part`);
  for (let fresh = false; ; fresh = true) {
    if (fresh) rmSync(part, { force: true });
    const resumed = await fetchInto(src, desc, part, o);
    const digest = `sha256:${resumed.hash.digest('hex')}`;
    if (digest === desc.digest) break;
    rmSync(part, { force: true });
    // A spool torn by a power cut can fail the check; fetch once more from byte 0 before blaming the source.
    if (resumed.from > 0 && !fresh) continue;
    throw new FerryError('FERRY_E_REGISTRY_DIGEST', `blob ${desc.digest} from ${src.client.host} has digest ${digest}`);
  }
  renameSync(part, done);
  return done;
}

async function fetchInto(src: Fetch, desc: Descriptor, part: string, o: { throttle: Throttle; retry: RetryOptions; onBytes: (n: number) => void; signal?: AbortSignal }): Promise<{ hash: Hash; from: number }> {
  const hash = createHash('sha256');
  let have = existsSync(part) ? statSync(part).size : 0;
  if (have > desc.size) {
    rmSync(part, { force: true });
    have = 0;
  }
  if (have > 0) {
    await pipeline(createReadStream(part, { end: have - 1 }), new Writable({ write: (c: Buffer, _e, cb) => (hash.update(c), cb()) }));
    o.onBytes(have);
  }
  const from = have;
  const fd = openSync(part, 'a', 0o600);
  try {
    await withRetry(async () => {
      if (have >= desc.size) return;
      const { stream, start, total } = await src.client.getBlob(src.name, desc.digest, have, o.signal);
      if (total !== null && total !== desc.size) {
        stream.destroy();
        throw new FerryError('FERRY_E_REGISTRY_DIGEST', `blob ${desc.digest} from ${src.client.host} is ${total} bytes, its manifest says ${desc.size}`);
      }
      if (start === 0 && have > 0) throw new FerryError('FERRY_E_REGISTRY_FAILED', `${src.client.host} ignored the Range request for blob ${desc.digest}`);
      try {
        await pipeline(
          stream,
          o.throttle.stream(o.signal),
          new Writable({
            write(c: Buffer, _e, cb) {
              if (have + c.length > desc.size) return cb(new FerryError('FERRY_E_REGISTRY_DIGEST', `blob ${desc.digest} from ${src.client.host} is longer than its manifest says (${desc.size} bytes)`));
              hash.update(c);
              writeSync(fd, c);
              have += c.length;
              o.onBytes(c.length);
              cb();
            },
          }),
        );
      } catch (err) {
        if (err instanceof FerryError || o.signal?.aborted) throw err;
        throw new Retryable(new FerryError('FERRY_E_REGISTRY_UNREACHABLE', `${src.client.host}: blob ${desc.digest} cut at ${have} of ${desc.size} bytes: ${(err as Error).message}`));
      }
      if (have < desc.size) throw new Retryable(new FerryError('FERRY_E_REGISTRY_UNREACHABLE', `${src.client.host}: blob ${desc.digest} ended at ${have} of ${desc.size} bytes`));
    }, o.retry);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return { hash, from };
}

/**
 * Uploads a verified spool file to `dest` as `name@digest`, resuming a
 * session recorded in `book`. `onBytes` sees every byte sent.
 */
export async function pushBlob(dest: RegistryClient, name: string, desc: Descriptor, file: string, o: { book: UploadBook; chunkBytes: number; retry: RetryOptions; onBytes: (n: number) => void; started?: UploadState; signal?: AbortSignal }): Promise<void> {
  const key = `${dest.host} ${name} ${desc.digest}`;
  const recorded = o.book.get(key);
  let up: UploadState | null = null;
  if (recorded) up = await withRetry(() => dest.uploadStatus(name, recorded.location, o.signal), o.retry).catch(() => null);
  up ??= o.started ?? (await withRetry(() => dest.startUpload(name, o.signal), o.retry));
  o.book.set(key, up);
  let failures = 0;
  const again = async (err: FerryError): Promise<UploadState> => {
    if (++failures >= o.retry.attempts) throw err;
    await sleep(backoffDelay(failures, o.retry.baseMs, o.retry.capMs), o.signal ?? new AbortController().signal);
    // Whatever reached the registry before the failure stays there: carry on from its offset.
    const now = await withRetry(() => dest.uploadStatus(name, up!.location, o.signal), o.retry).catch(() => null);
    return now ?? (await withRetry(() => dest.startUpload(name, o.signal), o.retry));
  };
  while (up.offset < desc.size) {
    const start = up.offset;
    const length = Math.min(o.chunkBytes, desc.size - start);
    let next: UploadState | { mismatch: true };
    try {
      next = await dest.patch(name, up, length, () => createReadStream(file, { start, end: start + length - 1 }), o.signal);
    } catch (err) {
      if (!(err instanceof Retryable) || o.signal?.aborted) throw err;
      up = await again(err.error);
      o.book.set(key, up);
      continue;
    }
    if ('mismatch' in next) {
      up = await again(new FerryError('FERRY_E_REGISTRY_FAILED', `${dest.host} keeps refusing the chunk at ${start} of ${desc.digest}`));
    } else {
      o.onBytes(Math.max(0, next.offset - start));
      up = next;
    }
    o.book.set(key, up);
    crashHook();
  }
  const final = up;
  await withRetry(() => dest.finishUpload(name, final, desc.digest, o.signal), o.retry);
  o.book.delete(key);
}

let persistedChunks = 0;

/**
 * Fault injection for tests only (test/integration/relay-agent.test.ts): with
 * FERRY_TEST_CRASH_AT=relay-chunk:<n> the process SIGKILLs itself right after
 * the n-th upload chunk is acknowledged and its offset stored. Does nothing
 * when the variable is unset.
 */
function crashHook(): void {
  const m = /^relay-chunk:(\d+)$/.exec(process.env.FERRY_TEST_CRASH_AT ?? '');
  if (m && ++persistedChunks === Number(m[1])) process.kill(process.pid, 'SIGKILL');
}

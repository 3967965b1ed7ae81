// The console's static files, served by the hub itself (no CDN, nothing
// fetched at run time): htmx and its SSE extension from the installed
// packages, the console's own stylesheet and script from hub/console/static,
// and the browser build of the audit check that tsc emits to
// dist/hub/console/browser. Each is read once at start and served under a
// URL carrying its content hash, so browsers may keep it a year: a new
// version is a new URL.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { FerryError } from '../../shared/errors.js';

export const ASSET_PREFIX = '/assets/';

interface Asset {
  url: string;
  type: string;
  body: Buffer;
  etag: string;
}

const TYPES: Record<string, string> = { js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8' };

const require = createRequire(import.meta.url);
/** hub/console/static in the source tree (this file runs from dist/hub/console). */
const STATIC = fileURLToPath(new URL('../../../hub/console/static/', import.meta.url));
const BROWSER = fileURLToPath(new URL('./browser/', import.meta.url));

/** Logical name -> file. */
const SOURCES: Record<string, () => string> = {
  'htmx.js': () => require.resolve('htmx.org/dist/htmx.min.js'),
  'htmx-sse.js': () => require.resolve('htmx-ext-sse/dist/sse.js'),
  'console.css': () => `${STATIC}console.css`,
  'console.js': () => `${STATIC}console.js`,
  'audit-check.js': () => `${BROWSER}audit-check.js`,
};

export type AssetName = keyof typeof SOURCES;

export class Assets {
  private readonly byName = new Map<string, Asset>();
  private readonly byUrl = new Map<string, Asset>();

  constructor() {
    for (const [name, where] of Object.entries(SOURCES)) {
      let body: Buffer;
      try {
        body = readFileSync(where());
      } catch (err) {
        throw new FerryError('FERRY_E_CONFIG_INVALID', `console asset ${name} is missing (${(err as Error).message}); run npm ci and npm run build`, { cause: err });
      }
      // tsc's source-map comment would send browsers after a map the hub does not serve.
      if (name.endsWith('.js')) body = Buffer.from(body.toString('utf8').replace(/\n\/\/# sourceMappingURL=\S+\s*$/, '\n'));
      const hash = createHash('sha256').update(body).digest('hex').slice(0, 16);
      const dot = name.lastIndexOf('.');
      const url = `${ASSET_PREFIX}${name.slice(0, dot)}.${hash}${name.slice(dot)}`;
      const a = { url, type: TYPES[name.slice(dot + 1)] ?? 'application/octet-stream', body, etag: `"${hash}"` };
      this.byName.set(name, a);
      this.byUrl.set(url.slice(ASSET_PREFIX.length), a);
    }
  }

  /** The hashed URL of an asset, for pages to link. */
  url(name: AssetName): string {
    return this.byName.get(name)!.url;
  }

  /** The asset behind a hashed file name, if any. */
  get(file: string): Asset | undefined {
    return this.byUrl.get(file);
  }
}

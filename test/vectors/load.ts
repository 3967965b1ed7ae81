import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Envelope } from '../../shared/dsse.js';

export interface VectorFile {
  keys: Record<string, string>;
  vectors: { name: string; root: Envelope; release: Envelope; expect: string }[];
}

/** The committed shared vectors (test/vectors/releases.json). */
export function loadVectors(): VectorFile {
  return JSON.parse(readFileSync(fileURLToPath(new URL('../../../test/vectors/releases.json', import.meta.url)), 'utf8')) as VectorFile;
}

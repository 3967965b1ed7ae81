// The one place a schema failure becomes a FerryError: the code the caller
// names (what kind of input it was), and where the first bad field is.
import type { z } from 'zod';
import { FerryError, type ErrorCode } from './errors.js';

/** `where: path: message` of a zod failure's first issue. */
export function describeIssue(error: z.ZodError, where: string): string {
  const i = error.issues[0];
  const path = i && i.path.length ? i.path.join('.') : '(root)';
  return `${where ? `${where}: ` : ''}${path}: ${i?.message ?? 'invalid'}`;
}

/** Validates `value` against `schema`, or throws `code` naming the first bad field. */
export function parseWith<S extends z.ZodType>(schema: S, value: unknown, where = '', code: ErrorCode = 'FERRY_E_VALIDATION'): z.infer<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  throw new FerryError(code, describeIssue(r.error, where));
}

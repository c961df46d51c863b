/**
 * Strings with a NUL character (U+0000) cannot be stored: Postgres `text` and `jsonb`
 * refuse them. JSON can carry one only as the escape `\u0000`, so a body whose raw bytes do
 * not contain that escape has none, and only the rare body that does is walked to name
 * the field. Without this check such a request reached the database and failed there
 * with a 500.
 */
import type { IncomingMessage } from 'node:http';
import type { RequestHandler } from 'express';
import { ApiError } from './errors.js';

const ESCAPE = Buffer.from('\\u0000');

/** Whether the raw JSON may hold a NUL character (the escape occurs; it may be an escaped backslash before `u0000`). */
export function mayHoldNul(raw: Buffer): boolean {
  return raw.indexOf(ESCAPE) !== -1;
}

/** The path of the first string (value or key) in `value` with a NUL character, if any. */
export function fieldWithNul(value: unknown, path: string): string | undefined {
  if (typeof value === 'string') return value.includes('\u0000') ? path : undefined;
  if (value === null || typeof value !== 'object') return undefined;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = fieldWithNul(value[i], `${path}.${i}`);
      if (found) return found;
    }
    return undefined;
  }
  for (const [k, v] of Object.entries(value)) {
    if (k.includes('\u0000')) return path;
    const found = fieldWithNul(v, `${path}.${k}`);
    if (found) return found;
  }
  return undefined;
}

/** The 400 for a body with a NUL character, or undefined when it has none. */
export function nulError(raw: Buffer, body: unknown): ApiError | undefined {
  if (!mayHoldNul(raw)) return undefined;
  const field = fieldWithNul(body, 'body');
  if (!field) return undefined;
  const message = 'contains a NUL character (\\u0000), which cannot be stored';
  return new ApiError('validation_failed', `${field}: ${message}`, field, [{ field, message }]);
}

/** Raw bodies that may hold a NUL, by request (express.json's `verify` sees the bytes, the route only the parsed body). */
const candidates = new WeakMap<IncomingMessage, Buffer>();

/** For express.json's `verify`: remembers the raw body of a request that may hold a NUL. */
export function rememberNulCandidates(req: IncomingMessage, _res: unknown, raw: Buffer): void {
  if (mayHoldNul(raw)) candidates.set(req, raw);
}

/** After express.json: a parsed body with a NUL character is refused before any route sees it. */
export function refuseNulCharacters(): RequestHandler {
  return (req, _res, next) => {
    const raw = candidates.get(req);
    next(raw ? nulError(raw, req.body) : undefined);
  };
}

import { IsoDateTime, Uuid } from '@hookpost/contract';
import { ApiError } from './errors.js';

/** Opaque keyset cursor: the (created_at, id) of the last row served. */
export function encodeCursor(createdAt: Date, id: string): string {
  return Buffer.from(JSON.stringify([createdAt.toISOString(), id])).toString('base64url');
}

export function decodeCursor(cursor: string): { createdAt: Date; id: string } {
  try {
    const [at, id] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown[];
    // What encodeCursor writes and nothing else: a forged one that got through (a date Postgres
    // cannot hold, an id of 36 dashes) was a 500 from the query.
    // (IsoDateTime has four-digit years: only year 0, which Postgres has not, is left to refuse.)
    const createdAt = new Date(IsoDateTime.safeParse(at).success ? (at as string) : Number.NaN);
    if (!Uuid.safeParse(id).success || !(createdAt.getUTCFullYear() >= 1)) throw new Error('bad');
    return { createdAt, id: id as string };
  } catch {
    const message = 'not a cursor this API returned';
    throw new ApiError('validation_failed', `query.next_cursor: ${message}`, 'query.next_cursor', [{ field: 'query.next_cursor', message }]);
  }
}

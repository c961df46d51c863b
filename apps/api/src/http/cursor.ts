import { ApiError } from './errors.js';

/** Opaque keyset cursor: the (created_at, id) of the last row served. */
export function encodeCursor(createdAt: Date, id: string): string {
  return Buffer.from(JSON.stringify([createdAt.toISOString(), id])).toString('base64url');
}

export function decodeCursor(cursor: string): { createdAt: Date; id: string } {
  try {
    const [at, id] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown[];
    const createdAt = new Date(String(at));
    if (typeof id !== 'string' || !/^[0-9a-f-]{36}$/i.test(id) || Number.isNaN(createdAt.getTime())) throw new Error('bad');
    return { createdAt, id };
  } catch {
    const message = 'not a cursor this API returned';
    throw new ApiError('validation_failed', `query.next_cursor: ${message}`, 'query.next_cursor', [{ field: 'query.next_cursor', message }]);
  }
}

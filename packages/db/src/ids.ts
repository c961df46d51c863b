import { randomFillSync } from 'node:crypto';

/** Random bytes drawn 4 KiB at a time (one CSPRNG call per 256 ids). */
const pool = Buffer.alloc(4096);
let offset = pool.length;

/**
 * A new row id: a UUID version 7 (RFC 9562), whose first 48 bits are the Unix time in
 * milliseconds and the other 74 random. Events and deliveries take these rather than
 * random (version 4) UUIDs: their primary-key B-trees then grow at the right edge instead
 * of at a random leaf per insert, so a busy queue keeps a few hot index pages instead of
 * dirtying (and, after each checkpoint, logging a full-page image of) pages all over its
 * indexes (migration 0007). Ids made within one millisecond are not ordered among
 * themselves; only retention relies on their order (firstIdAt), to find old rows through
 * the primary key. An id tells
 * when its row was made; ids are not secrets (every endpoint that takes one checks the
 * caller's workspace), and 74 random bits keep them unguessable all the same.
 *
 * The database's `hookpost_uuid_v7()` (migration 0007) makes the same layout in SQL.
 */
export function newId(): string {
  if (offset + 16 > pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  const b = pool.subarray(offset, offset + 16); // used once: overwritten in place
  offset += 16;
  b.writeUIntBE(Date.now(), 0, 6);
  b[6] = ((b[6] as number) & 0x0f) | 0x70; // version 7
  b[8] = ((b[8] as number) & 0x3f) | 0x80; // variant 10
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

/**
 * The smallest version 7 id of the millisecond `at`: every id newId (or hookpost_uuid_v7)
 * made before `at` compares below it (UUIDs compare bytewise, the time first). Rows from
 * before migration 0007 have random ids: pair this with a test on the row's time.
 */
export function firstIdAt(at: Date): string {
  const h = Math.max(0, at.getTime()).toString(16).padStart(12, '0');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-7000-8000-000000000000`;
}

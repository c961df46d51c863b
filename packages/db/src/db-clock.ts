import { sql, type RawBuilder } from 'kysely';

/**
 * Times the database compares with its own now() (due times, claimable times) are waited for
 * as waits measured there: a worker whose clock ran ahead of the database's woke early, found
 * nothing due, and asked again at once until the database caught up.
 */

/** Milliseconds from the database's now() until `at` (a timestamptz expression; null stays null). */
export function msUntil(at: RawBuilder<unknown>): RawBuilder<number | null> {
  return sql<number | null>`(extract(epoch from ${at} - now()) * 1000)::float8`;
}

/** A wait measured on the database's clock ({@link msUntil}) as a time on this process's; null: nothing to wait for. */
export function afterDbWait(inMs: number | null | undefined): Date | null {
  return inMs === null || inMs === undefined ? null : new Date(Date.now() + Math.max(0, inMs));
}

/**
 * What the SQL benchmarks (event-retention, claim-exclusion) share: a migrated database of
 * their own on DATABASE_URL's server or an embedded PostgreSQL, dropped afterwards, and
 * statements run in a transaction that is rolled back (every round sees the same rows).
 */
import os from 'node:os';
import path from 'node:path';
import { createDatabase, createDb, dropDatabase, migrateToLatest, startEmbeddedPostgres, type Db } from '@hookpost/db';
import { log } from './common.js';

/** Runs `f` on a new migrated database named after `name`; drops it (and stops an embedded server) after. */
export async function withScratchDatabase<T>(name: string, settings: Record<string, string> | undefined, f: (db: Db) => Promise<T>): Promise<T> {
  let serverUrl = process.env.DATABASE_URL;
  const embedded = serverUrl ? undefined : await startEmbeddedPostgres({ dataDir: path.join(os.tmpdir(), 'hookpost-bench-pg'), onNotice: (l) => log(l) });
  serverUrl ??= (embedded as NonNullable<typeof embedded>).url;
  const dbName = `hookpost_bench_${name}_${process.pid}`;
  const url = await createDatabase(serverUrl, dbName);
  const db = createDb({ connectionString: url, poolMax: 2, applicationName: `hookpost-bench-${name}`, ...(settings ? { settings } : {}) });
  try {
    await migrateToLatest(db);
    return await f(db);
  } finally {
    await db.destroy();
    await dropDatabase(serverUrl, dbName);
    await embedded?.stop();
  }
}

/** Runs `f` in a transaction that is rolled back; returns what `f` returned. */
export async function rolledBack<T>(db: Db, f: (trx: Db) => Promise<T>): Promise<T> {
  const rollback = new Error('rollback');
  let value: T | undefined;
  await (db as ReturnType<typeof createDb>)
    .transaction()
    .execute(async (trx) => {
      value = await f(trx);
      throw rollback;
    })
    .catch((err: unknown) => {
      if (err !== rollback) throw err;
    });
  return value as T;
}

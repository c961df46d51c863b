import { Kysely, PostgresDialect, type Transaction } from 'kysely';
import pg from 'pg';
import type { Database } from './schema.js';

// int8 (counts, bigserial) as JS numbers: every value we store fits in 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number.parseInt(v, 10));

/** Anything a repository function can run on: the database or an open transaction. */
export type Db = Kysely<Database> | Transaction<Database>;

export interface CreateDbOptions {
  connectionString: string;
  poolMax?: number;
  applicationName?: string;
  onQueryError?: (error: unknown, sql: string) => void;
}

export function createDb(options: CreateDbOptions): Kysely<Database> {
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: options.poolMax ?? 10,
    application_name: options.applicationName ?? 'hookpost',
    idleTimeoutMillis: 30_000,
  });
  // An idle client erroring (server restart) must not crash the process.
  pool.on('error', () => undefined);
  return new Kysely<Database>({
    dialect: new PostgresDialect({ pool }),
    log: options.onQueryError
      ? (event) => {
          if (event.level === 'error') options.onQueryError?.(event.error, event.query.sql);
        }
      : undefined,
  });
}

/** Runs `fn` in a transaction, or directly when `db` already is one. */
export async function inTransaction<T>(db: Db, fn: (trx: Transaction<Database>) => Promise<T>): Promise<T> {
  if (db.isTransaction) return fn(db as Transaction<Database>);
  return db.transaction().execute(fn);
}

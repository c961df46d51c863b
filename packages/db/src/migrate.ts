import { Migrator, type Kysely, type Migration, type MigrationProvider, type MigrationResultSet } from 'kysely';
import { createDb } from './client.js';
import * as m0001 from './migrations/2026_11_22_0001_tenancy_and_webhooks.js';
import * as m0002 from './migrations/2026_11_22_0002_events_and_deliveries.js';
import * as m0003 from './migrations/2026_12_01_0003_virtual_polling.js';
import * as m0004 from './migrations/2026_12_01_0004_deliveries_drop_workspace_fk.js';
import * as m0005 from './migrations/2026_12_01_0005_queue_hot_path.js';
import * as m0006 from './migrations/2026_12_01_0006_deliveries_webhook_locks.js';
import * as m0007 from './migrations/2026_12_01_0007_time_ordered_ids.js';
import * as m0008 from './migrations/2026_12_02_0008_held_deliveries.js';
import * as m0009 from './migrations/2026_12_02_0009_deleted_webhooks.js';
import * as m0010 from './migrations/2026_12_03_0010_event_refs.js';
import * as m0011 from './migrations/2026_12_03_0011_stream_rerun.js';
import * as m0012 from './migrations/2026_12_04_0012_deliveries_webhook_due.js';
import * as m0013 from './migrations/2026_12_07_0013_stream_filters_hash.js';
import * as m0014 from './migrations/2026_12_07_0014_pending_webhook_step.js';
import * as m0015 from './migrations/2026_12_07_0015_attempts_unique.js';

/** Every migration, in order. Static imports: no runtime file scanning. */
export const MIGRATIONS: Record<string, Migration> = {
  '2026_11_22_0001_tenancy_and_webhooks': m0001,
  '2026_11_22_0002_events_and_deliveries': m0002,
  '2026_12_01_0003_virtual_polling': m0003,
  '2026_12_01_0004_deliveries_drop_workspace_fk': m0004,
  '2026_12_01_0005_queue_hot_path': m0005,
  '2026_12_01_0006_deliveries_webhook_locks': m0006,
  '2026_12_01_0007_time_ordered_ids': m0007,
  '2026_12_02_0008_held_deliveries': m0008,
  '2026_12_02_0009_deleted_webhooks': m0009,
  '2026_12_03_0010_event_refs': m0010,
  '2026_12_03_0011_stream_rerun': m0011,
  '2026_12_04_0012_deliveries_webhook_due': m0012,
  '2026_12_07_0013_stream_filters_hash': m0013,
  '2026_12_07_0014_pending_webhook_step': m0014,
  '2026_12_07_0015_attempts_unique': m0015,
};

const provider: MigrationProvider = { getMigrations: async () => MIGRATIONS };

export class MigrationError extends Error {
  constructor(readonly results: MigrationResultSet['results'], cause: unknown) {
    super(`migration failed: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'MigrationError';
  }
}

/**
 * Brings the schema to the latest version. Safe to call from several processes at
 * once: Kysely serialises migrators with an advisory lock.
 */
export async function migrateToLatest<T>(db: Kysely<T>): Promise<string[]> {
  const migrator = new Migrator({ db, provider, migrationTableName: 'hookpost_migrations', migrationLockTableName: 'hookpost_migrations_lock' });
  const { error, results } = await migrator.migrateToLatest();
  if (error) throw new MigrationError(results, error);
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}

/**
 * Migrates on a session of its own, closed afterwards: a long migration must not meet the
 * answer timeout of the pools that serve requests and deliveries (`answerTimeoutMs`).
 */
export async function migrateDatabase(connectionString: string, applicationName: string): Promise<string[]> {
  const db = createDb({ connectionString, poolMax: 1, applicationName });
  try {
    return await migrateToLatest(db);
  } finally {
    await db.destroy();
  }
}

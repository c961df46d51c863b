/**
 * Migration 0013 on a database that has streams: their `filters_key` (the canonical filters
 * text) becomes the hash pollStreams.filtersKey computes, so a webhook created after the
 * upgrade with the same filters joins its existing stream instead of making a second one
 * (which would poll the source twice and send the changes twice). And back down.
 */
import { randomBytes } from 'node:crypto';
import { createDatabase, createDb, dropDatabase, MIGRATIONS, pollStreams, type Database } from '@hookpost/db';
import { serverUrl } from '@hookpost/testkit';
import { Migrator, sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, expect, it } from 'vitest';

const name = `hookpost_m_${randomBytes(6).toString('hex')}`;
let db: Kysely<Database>;
let migrator: Migrator;
beforeAll(async () => {
  db = createDb({ connectionString: await createDatabase(serverUrl(), name), poolMax: 2, applicationName: 'hookpost-test' });
  migrator = new Migrator({ db, provider: { getMigrations: async () => MIGRATIONS }, migrationTableName: 'hookpost_migrations', migrationLockTableName: 'hookpost_migrations_lock' });
});
afterAll(async () => {
  await db?.destroy();
  await dropDatabase(serverUrl(), name);
});

const BEFORE = '2026_12_04_0012_deliveries_webhook_due';
const FILTERS: Record<string, string>[] = [{}, { owner_id: '42', stage: 'won' }, { 'ключ': 'значение "quoted"', a: 'b\\c' }];
/** The key as it was stored before 0013: the canonical text itself. */
const textKey = (f: Record<string, string>) => JSON.stringify(Object.fromEntries(Object.entries(f).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))));

it('rewrites each stream key to the hash filtersKey computes, and down again to the text', async () => {
  expect((await migrator.migrateTo(BEFORE)).error).toBeUndefined();
  const ws = await sql<{ id: string }>`insert into workspaces (name) values ('m') returning id`.execute(db);
  const env = await sql<{ id: string }>`insert into environments (workspace_id, name, is_default) values (${ws.rows[0]!.id}, 'Production', true) returning id`.execute(db);
  const conn = await sql<{ id: string }>`
    insert into connections (workspace_id, environment_id, integration_type) values (${ws.rows[0]!.id}, ${env.rows[0]!.id}, 'mockcrm') returning id`.execute(db);
  for (const f of FILTERS) {
    await sql`insert into poll_streams (workspace_id, environment_id, connection_id, object_type, filters, filters_key)
              values (${ws.rows[0]!.id}, ${env.rows[0]!.id}, ${conn.rows[0]!.id}, 'crm_contact', ${JSON.stringify(f)}::jsonb, ${textKey(f)})`.execute(db);
  }
  const keys = async () => (await db.selectFrom('poll_streams').select(['filters', 'filters_key']).execute()).map((r) => [JSON.stringify(r.filters), r.filters_key]);

  expect((await migrator.migrateToLatest()).error).toBeUndefined();
  const hashed = await keys();
  expect(hashed).toHaveLength(FILTERS.length);
  for (const [filters, key] of hashed) expect(key).toBe(pollStreams.filtersKey(JSON.parse(filters!) as Record<string, string>));

  // Filters only the hash can key (too long for the index as text): down keeps their hash.
  const long = Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`f${i}`, randomBytes(500).toString('hex')]));
  await sql`insert into poll_streams (workspace_id, environment_id, connection_id, object_type, filters, filters_key)
            values (${ws.rows[0]!.id}, ${env.rows[0]!.id}, ${conn.rows[0]!.id}, 'crm_contact', ${JSON.stringify(long)}::jsonb, ${pollStreams.filtersKey(long)})`.execute(db);
  expect((await migrator.migrateTo(BEFORE)).error).toBeUndefined();
  for (const [filters, key] of await keys()) {
    const f = JSON.parse(filters!) as Record<string, string>;
    expect(key).toBe(Object.keys(f).length === Object.keys(long).length ? pollStreams.filtersKey(f) : textKey(f));
  }
});

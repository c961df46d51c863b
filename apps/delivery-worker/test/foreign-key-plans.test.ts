/**
 * Foreign key checks stay on the referenced table's primary key however that table grows
 * (SESSION_SETTINGS in packages/db/src/client.ts). Postgres plans each check once per
 * session and keeps the plan (from its sixth check on): made while the parent was small
 * and analyzed, it is a sequential scan, and it stays one for every row checked after the
 * parent has grown.
 *
 * Each case first shows the hazard in a session with sequential scans allowed (the check
 * scans the parent once per row written), then that a session as Hookpost opens it
 * writes the same rows without a single scan of the parent. Scans are counted with
 * pg_stat_xact_user_tables, inside the writing transaction: no timing involved.
 */
import { connections, createDb, polling, workspaces, type Database, type Db } from '@hookpost/db';
import { createTestDatabase, insertPlainWebhook, type TestDatabase } from '@hookpost/testkit';
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let t: TestDatabase;
let scope: { workspaceId: string; environmentId: string };
let connectionId: string;
let streamId: string;
/** One session each: the cached check plans are per session. */
let hookpostSession: Kysely<Database>;
let scanningSession: Kysely<Database>;

beforeAll(async () => {
  t = await createTestDatabase();
  const { workspace, environment } = await workspaces.createWorkspace(t.db, 'fk-plans');
  scope = { workspaceId: workspace.id, environmentId: environment.id };
  const connection = await connections.insertConnection(t.db, {
    workspace_id: scope.workspaceId,
    environment_id: scope.environmentId,
    integration_type: 'mock',
    categories: [],
    permissions: [],
  });
  connectionId = connection.id;
  const stream = await sql<{ id: string }>`
    insert into poll_streams (workspace_id, environment_id, connection_id, object_type, filters_key)
    values (${scope.workspaceId}, ${scope.environmentId}, ${connectionId}, 'crm_contact', '{}') returning id
  `.execute(t.db);
  streamId = stream.rows[0]?.id as string;
  // The parents are tiny and analyzed, as on a new install that has run for a while.
  await sql`analyze poll_streams`.execute(t.db);
  await sql`analyze connections`.execute(t.db);
  hookpostSession = createDb({ connectionString: t.url, poolMax: 1, applicationName: 'hookpost-test-fk' });
  scanningSession = createDb({ connectionString: t.url, poolMax: 1, applicationName: 'hookpost-test-fk-seqscan', settings: { enable_seqscan: 'on' } });
  // Each session checks references now, while the parents are small: past its fifth
  // execution Postgres keeps one (generic) plan per check...
  for (const [name, db] of [['hookpost', hookpostSession], ['scanning', scanningSession]] as const) {
    await writePage(db, `warm_${name}`, 10); // new records: an existing one updated is not checked again
    for (let i = 0; i < 10; i++) await insertPlainWebhook(db, scope, `http://127.0.0.1:9/warm${i}`, { connectionId });
  }
  // ...then the parents grow, with no ANALYZE before the next writes.
  await sql`
    insert into poll_streams (workspace_id, environment_id, connection_id, object_type, filters_key)
    select ${scope.workspaceId}, ${scope.environmentId}, ${connectionId}, 'type_' || g, '{}' from generate_series(1, 3000) g
  `.execute(t.db);
  await sql`
    insert into connections (workspace_id, environment_id, integration_type, categories, permissions)
    select ${scope.workspaceId}, ${scope.environmentId}, 'mock_' || g, '{}', '{}' from generate_series(1, 3000) g
  `.execute(t.db);
});
afterAll(async () => {
  await hookpostSession?.destroy();
  await scanningSession?.destroy();
  await t?.drop();
});

/** Writes a source page's fingerprints as the poller does; returns the sequential scans of poll_streams it caused. */
async function writePage(db: Kysely<Database>, prefix: string, records: number): Promise<number> {
  return db.transaction().execute(async (trx) => {
    await polling.commitPage(trx, {
      streamId,
      deliveries: [],
      records: Array.from({ length: records }, (_, i) => ({ id: `${prefix}_${i}`, fingerprint: Buffer.from([i % 256]), deleted: false })),
      nextCursor: null,
      recordsSeen: records,
      changes: records,
      maxUpdatedAt: null,
    });
    return seqScansOf(trx, 'poll_streams');
  });
}

async function seqScansOf(trx: Db, table: string): Promise<number> {
  const r = await sql<{ n: number }>`select coalesce(seq_scan, 0)::int as n from pg_stat_xact_user_tables where relname = ${table}`.execute(trx);
  return r.rows[0]?.n ?? 0;
}

describe('foreign key checks after the referenced table grew', () => {
  it('a page of fingerprints checks its stream by primary key, not by scanning every stream per record', async () => {
    expect(await writePage(scanningSession, 'scan', 200)).toBeGreaterThanOrEqual(200);
    expect(await writePage(hookpostSession, 'hookpost', 200)).toBe(0);
  });

  it('a new webhook checks its connection by primary key', async () => {
    const created = (db: Kysely<Database>) =>
      db.transaction().execute(async (trx) => {
        for (let i = 0; i < 20; i++) await insertPlainWebhook(trx, scope, `http://127.0.0.1:9/w${i}`, { connectionId });
        return seqScansOf(trx, 'connections');
      });
    expect(await created(scanningSession)).toBeGreaterThanOrEqual(20);
    expect(await created(hookpostSession)).toBe(0);
  });
});

import { sql, type Kysely } from 'kysely';

// Frozen: never edit a migration that has shipped; add a new one.
//
// Deleting a webhook (or its connection) no longer deletes its deliveries and attempt log
// in the request's transaction: a busy webhook's history (DELIVERY_RETENTION_DAYS of it)
// can be millions of rows, which no request should wait for and DATABASE_QUERY_TIMEOUT_MS
// would cut off, so that the webhook could never be deleted. The delete records the
// webhook here and removes its row; the worker's retention pass deletes what it left, in
// batches, then the record (deliveries.purgeDeletedWebhook). Until then nothing reads
// those rows: every read of deliveries goes through a webhook that exists, and a worker
// that claims one drops it (deleteOrphanClaims).
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table deleted_webhooks (
      webhook_id uuid primary key,
      deleted_at timestamptz(3) not null default now()
    );
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    delete from delivery_attempts a using deleted_webhooks g where a.webhook_id = g.webhook_id;
    delete from deliveries d using deleted_webhooks g where d.webhook_id = g.webhook_id;
    drop table deleted_webhooks;
  `.execute(db);
}

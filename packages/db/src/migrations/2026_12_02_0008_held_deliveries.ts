import { sql, type Kysely } from 'kysely';

// Frozen: never edit a migration that has shipped; add a new one.
//
// Held deliveries (of a paused or disabled webhook) get their own index, and webhooks one
// on updated_at, for two statements that read few rows among many:
//
// - Resuming a webhook puts its held deliveries back in the queue (releaseHeld). Through
//   deliveries_webhook that read every delivery the webhook ever had, sent ones included:
//   a webhook with a year of history walked millions of rows to find the few held.
// - The lease reaper also requeues the held deliveries of webhooks resumed in the last
//   minutes (requeueHeldOfResumed): a worker or an ingest that decided "held" from the
//   webhook's state just before a concurrent resume committed can write it after the
//   resume's own statement ran, and nothing else would ever send it.
//
// Only rows entering 'held' are added to deliveries_held; the queue's hot path (pending ->
// delivering -> succeeded) never touches it. Its status updates were already not HOT
// (status is in the predicates of deliveries_due and deliveries_leased).
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create index deliveries_held on deliveries (webhook_id) where status = 'held';
    create index webhooks_updated on webhooks (updated_at);
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    drop index deliveries_held;
    drop index webhooks_updated;
  `.execute(db);
}

import { sql, type Kysely } from 'kysely';

// Frozen: never edit a migration that has shipped; add a new one.
//
// Each webhook's pending deliveries in due order, for the claim of a worker that leaves
// out the webhooks of its full lanes (deliveries.claimDue). Through deliveries_due alone
// such a claim read every due row of the webhooks left out before it reached anyone
// else's: one slow endpoint with 300,000 due rows made every claim take ~169 ms, and so
// delayed every healthy endpoint's deliveries (docs/performance.md). With this index the
// claim, once its read of the due index finds the front taken by webhooks it leaves out,
// steps from webhook to webhook instead (one index descent each) and takes each one's due
// rows from its own range.
//
// Only pending rows are in it, as in deliveries_due: a delivery adds one entry when it is
// inserted or becomes pending again; the claim's and the completion's updates add none.
// Built without CONCURRENTLY (migrations run in one transaction): on a large deliveries
// table it blocks writes to it while it is built, which reads the whole table.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`create index deliveries_webhook_due on deliveries (webhook_id, next_attempt_at) where status = 'pending'`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop index deliveries_webhook_due`.execute(db);
}

import { sql, type Kysely } from 'kysely';

// Frozen: never edit a migration that has shipped; add a new one.
//
// deliveries.webhook_id → webhooks goes. Its check ran once per inserted delivery row, as a
// query that each pooled session prepares once and keeps: when that happened while the
// webhooks table was small and analyzed (a new install, a quiet workspace), the kept plan
// is a sequential scan, and it stays one after the table grows, until an ANALYZE of
// webhooks invalidates it. In the bench (PG 17), one event fanned out to 10,000 webhooks
// created just before committed in 3.1–3.6 s on such a session instead of 0.14–0.23 s: the
// check scanned all 10,000 webhooks for each of the 10,000 rows. A two-table reproduction
// on PG 15 (10,000 child rows, parent analyzed at one row): 3.0 s on a session that had
// checked before the parent grew, 0.1 s on a fresh one. A fan-out to 100,000 webhooks
// would hold its transaction for minutes.
//
// What the key did, the statements that insert deliveries now do themselves, once per
// webhook per statement instead of once per row and with their own plans: they lock the
// webhooks they insert for FOR KEY SHARE (in id order) and insert only for those still
// there, and deleting a webhook or a connection locks its webhooks FOR UPDATE and then
// deletes their deliveries and attempt log explicitly (repositories/deliveries.ts,
// webhooks.ts, connections.ts). A delete therefore waits for inserts in flight and removes
// what they added; an insert that starts after a delete skips the deleted webhook.
//
// During a rolling upgrade, an API still on the old code deletes a webhook without its
// deliveries (it relied on the cascade). A worker that claims such a delivery finds its
// webhook gone and deletes it (deliveries.deleteOrphanClaims), so nothing is left cycling.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table deliveries drop constraint if exists deliveries_webhook_id_fkey`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    delete from deliveries d where not exists (select 1 from webhooks w where w.id = d.webhook_id);
    alter table deliveries
      add constraint deliveries_webhook_id_fkey foreign key (webhook_id) references webhooks(id) on delete cascade;
  `.execute(db);
}

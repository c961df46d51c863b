import { sql, type Kysely } from 'kysely';

// Frozen: never edit a migration that has shipped; add a new one.
//
// Event retention deletes an old event once no delivery refers to it. Without an index on
// deliveries.event_id (0005 dropped it: three index writes per delivery, none HOT), each
// check was a scan of deliveries: a batch of 5,000 events cost a full scan, ~2 s at 3.3 M
// deliveries, and a pass grew with the square of the traffic. The event now counts the
// deliveries that refer to it: set by the ingest statement (its fan-out), raised by a replay
// that copies one of them, lowered by every delete of deliveries; retention deletes old
// events whose count is 0.
//
// NULL: not counted. Every event stored before this migration, and any an API still on the
// older code stores during a rolling upgrade, is NULL; retention counts such an event's
// deliveries (one scan of deliveries per batch, as before, only for those) when it is old
// enough to be deleted, with the event locked so that no replay races the count. So the
// migration is a catalog change only: no rewrite, no lock held for long.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table events add column refs integer`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table events drop column refs`.execute(db);
}

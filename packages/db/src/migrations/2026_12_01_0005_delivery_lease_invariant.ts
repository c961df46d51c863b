import { sql, type Kysely } from 'kysely';

// Frozen: never edit a migration that has shipped; add a new one.
//
// A delivery carries a lease holder only while it is being delivered. The worker's
// completion and release statements select their rows by `leased_by` alone (by primary
// key plus that column), instead of also naming `status = 'delivering'`: that condition
// let the planner pick the partial index deliveries_leased, which in a busy queue holds
// tens of thousands of dead entries (each claim adds one, each completion kills it), and
// a completion of 128 rows took ~15 ms walking them. The constraint keeps the shortcut
// sound.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    alter table deliveries
      add constraint deliveries_leased_only_while_delivering check (leased_by is null or status = 'delivering')
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table deliveries drop constraint deliveries_leased_only_while_delivering`.execute(db);
}

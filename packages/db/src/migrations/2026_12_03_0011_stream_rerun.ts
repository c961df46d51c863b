import { sql, type Kysely } from 'kysely';

// Frozen: never edit a migration that has shipped; add a new one.
//
// A run asked for while a stream's run is in progress (a trigger, a resume, a new
// include_all webhook) was lost: the stream was already due, so the request left its
// next_run_at as it was, and the run's end then wrote the next scheduled time over it. The
// request is now also kept here while a run is in progress, and the run's end schedules the
// next run no later than it. Catalog change only.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table poll_streams add column rerun_at timestamptz(3)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table poll_streams drop column rerun_at`.execute(db);
}

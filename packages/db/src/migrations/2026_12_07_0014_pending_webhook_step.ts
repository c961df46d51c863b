import { sql, type Kysely } from 'kysely';

// Frozen: never edit a migration that has shipped; add a new one.
//
// One step of a claim's walk over the webhooks with pending deliveries: the first such
// webhook above `after`, with its earliest pending due time, from deliveries_webhook_due.
// As a function because its plan must not depend on the queue's statistics: inlined in the
// claim (a prepared statement, one generic plan), it was planned while the queue was empty
// (after each ANALYZE too) as a read of deliveries_due sorting every pending row by webhook:
// 7 ms a step behind a 1,400-row backlog, growing with it. Here sorts are off, so the only
// plan is the index's own order, one descent. (A function with SET clauses is not inlined.)
// ROWS 1: with the default estimate of 1,000 rows a call, the claim's recursion was costed
// at millions of rows, and the JIT compiled it at every claim (~0.6 s).
export async function up(db: Kysely<unknown>): Promise<void> {
  await queueReadFunction(
    'hookpost_pending_webhook_after(after uuid)',
    'webhook_id uuid, next_attempt_at timestamptz',
    1,
    `select d.webhook_id, d.next_attempt_at from deliveries d
      where d.status = 'pending' and d.webhook_id > after
      order by d.webhook_id, d.next_attempt_at
      limit 1`,
  ).execute(db);
  // A webhook's earliest due rows, from its range of deliveries_webhook_due, for the same
  // reason. Its webhook is a range of one (>= and <=), not an equality: an equality makes the
  // webhook part of the order redundant, and deliveries_due, in due order, then served it with
  // no sort, walking past every other webhook's due rows (20,000 behind a backlog).
  await queueReadFunction(
    'hookpost_due_of_webhook(webhook uuid, n integer)',
    'id uuid, next_attempt_at timestamptz',
    32,
    `select d.id, d.next_attempt_at from deliveries d
      where d.status = 'pending' and d.webhook_id >= webhook and d.webhook_id <= webhook and d.next_attempt_at <= now()
      order by d.webhook_id, d.next_attempt_at
      limit n`,
  ).execute(db);
}

/** A read of the queue as a SQL function planned on its own: sorts and table scans off, `rows` its estimate of rows a call. */
function queueReadFunction(signature: string, columns: string, rows: number, body: string) {
  return sql.raw(`
    create function ${signature}
    returns table (${columns})
    language sql stable
    rows ${rows}
    set enable_sort = off
    set enable_seqscan = off
    set enable_bitmapscan = off
    as $$ ${body} $$`);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop function hookpost_due_of_webhook(uuid, integer)`.execute(db);
  await sql`drop function hookpost_pending_webhook_after(uuid)`.execute(db);
}

/**
 * Event retention's check for deliveries still referring to an old event, measured as SQL:
 * the statement used before migration 0010 (`not exists` over deliveries, which have no
 * index on event_id) against the count the event now keeps (`events.refs`), in one run, on
 * the same database: BENCH_RETENTION_DELIVERIES live deliveries (default 1,000,000) and
 * BENCH_RETENTION_OLD_EVENTS old events no delivery refers to (default 20,000), deleted in
 * retention's batches of 5,000. The old statement runs in a transaction that is rolled back.
 *
 *   node bench/dist/event-retention.js      (DATABASE_URL, or an embedded PostgreSQL)
 */
import { events, firstIdAt, workspaces, type Db } from '@hookpost/db';
import { sql } from 'kysely';
import { envInt, log } from './common.js';
import { rolledBack, withScratchDatabase } from './scratch-db.js';

const BATCH = 5000;

async function main(): Promise<void> {
  const live = envInt('BENCH_RETENTION_DELIVERIES', 1_000_000, 1);
  const old = envInt('BENCH_RETENTION_OLD_EVENTS', 20_000, 1);
  await withScratchDatabase('retention', undefined, async (db) => {
    const { workspace, environment } = await workspaces.createWorkspace(db, 'retention');
    const webhook = await sql<{ id: string }>`
      insert into webhooks (id, workspace_id, environment_id, origin, hook_url, secret_encrypted)
      values (hookpost_uuid_v7(), ${workspace.id}, ${environment.id}, 'hookpost', 'http://127.0.0.1:9/', '\\x00') returning id`.execute(db);
    log(`setting up ${live} live deliveries and ${old} old events`);
    // Live: recent events, one finished delivery each (within the retention age).
    await sql`insert into events (id, workspace_id, environment_id, type, data, refs)
              select hookpost_uuid_v7(), ${workspace.id}, ${environment.id}, 'record:created', '{}', 1 from generate_series(1, ${live})`.execute(db);
    await sql`insert into deliveries (id, workspace_id, webhook_id, event_id, kind, status)
              select hookpost_uuid_v7(), workspace_id, ${webhook.rows[0]?.id}, id, 'event', 'succeeded' from events`.execute(db);
    // Old: made 70 days ago (time-ordered ids of that day), their deliveries already deleted.
    const oldAt = new Date(Date.now() - 70 * 86_400_000);
    await sql`insert into events (id, workspace_id, environment_id, type, data, refs, created_at)
      select (substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-7' || substr(r, 16, 3) || '-8' || substr(r, 21, 3) || '-' || substr(r, 25, 12))::uuid,
             ${workspace.id}, ${environment.id}, 'record:created', '{}', 0, ${oldAt}::timestamptz
      from (select lpad(to_hex((extract(epoch from ${oldAt}::timestamptz) * 1000)::bigint + g), 12, '0') as h, gen_random_uuid()::text as r
            from generate_series(1, ${old}) g) x`.execute(db);
    await sql`vacuum analyze`.execute(db);
    const cutoff = new Date(Date.now() - 60 * 86_400_000);

    const before = await timed(() => deleteWithoutCounts(db, cutoff));
    const now = await timed(async () => {
      let after: string | null = null;
      let deleted = 0;
      for (;;) {
        const b: events.EventRetentionBatch = await events.deleteOldEvents(db, cutoff, BATCH, after);
        deleted += b.deleted;
        if (b.scanned < BATCH || b.lastId === null) return deleted;
        after = b.lastId;
      }
    });
    if (before.value !== old || now.value !== old) throw new Error(`deleted ${before.value} and ${now.value}, expected ${old} each`);
    const batches = Math.ceil(old / BATCH);
    const row = (label: string, ms: number) => `| ${label.padEnd(40)} | ${ms.toFixed(0).padStart(8)} | ${(ms / batches).toFixed(1).padStart(9)} |`;
    const lines = [
      `\nEvent retention: ${old} old events, ${live} live deliveries, batches of ${BATCH}`,
      `| ${'check'.padEnd(40)} | ${'total ms'.padStart(8)} | ${'ms/batch'.padStart(9)} |`,
      `|${'-'.repeat(42)}|${'-'.repeat(10)}|${'-'.repeat(11)}|`,
      row('not exists over deliveries (before 0010)', before.ms),
      row('events.refs = 0', now.ms),
      `ratio: ${(before.ms / now.ms).toFixed(1)}x`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  });
}

/** Retention's statements before migration 0010, in a transaction rolled back; returns how many it deleted. */
async function deleteWithoutCounts(db: Db, cutoff: Date): Promise<number> {
  const unreferenced = sql`not exists (select 1 from deliveries d where d.event_id = e.id)`;
  return rolledBack(db, async (trx) => {
    let deleted = 0;
    for (;;) {
      const locked = await sql<{ id: string }>`
        select e.id from events e where e.id < ${firstIdAt(cutoff)}::uuid and e.created_at < ${cutoff} and ${unreferenced}
        order by e.id limit ${BATCH} for update skip locked`.execute(trx);
      if (locked.rows.length === 0) break;
      const r = await sql`delete from events e where e.id = any(${locked.rows.map((x) => x.id)}::uuid[]) and ${unreferenced}`.execute(trx);
      deleted += Number(r.numAffectedRows ?? 0);
      if (locked.rows.length < BATCH) break;
    }
    return deleted;
  });
}

async function timed<T>(f: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const t0 = performance.now();
  const value = await f();
  return { value, ms: performance.now() - t0 };
}

main().catch((err: unknown) => {
  process.stderr.write(`${String((err as Error)?.stack ?? err)}\n`);
  process.exit(1);
});

/**
 * How a poll run ends (polling.completeRun, failRun), on the database alone: the next run's
 * time honours a run asked for while this one was in progress (trigger, resume, a new
 * include_all webhook), and the high-water mark keeps to the source's times without ever
 * passing the run's start (a record dated in the future held it there, and every later
 * change was listed from after it, and lost).
 */
import { polling, pollStreams, type PollStreamRow } from '@hookpost/db';
import { createPlainSetup, type TestDatabase } from '@hookpost/testkit';
import { sql } from 'kysely';
import { afterAll, beforeAll, expect, it } from 'vitest';

let t: TestDatabase;
let scope: { workspaceId: string; environmentId: string };
let connectionId: string;
let webhookId: string;
beforeAll(async () => {
  ({ t, scope, webhookId } = await createPlainSetup('poll-run-ends'));
  const c = await sql<{ id: string }>`
    insert into connections (workspace_id, environment_id, integration_type) values (${scope.workspaceId}, ${scope.environmentId}, 'mockcrm') returning id`.execute(t.db);
  connectionId = c.rows[0]!.id;
});
afterAll(async () => t?.drop());

const HOUR = 3_600_000;

/** A stream (a filter of its own), last run an hour ago, due now, and its run started. */
async function runningStream(hwm: Date | null): Promise<PollStreamRow> {
  const key = `{"n":"${Math.random()}"}`;
  const s = await sql<{ id: string }>`
    insert into poll_streams (workspace_id, environment_id, connection_id, object_type, filters, filters_key, next_run_at, high_water_mark)
    values (${scope.workspaceId}, ${scope.environmentId}, ${connectionId}, 'crm_contact', ${key}::jsonb, ${key}, now(), ${hwm})
    returning id`.execute(t.db);
  const stream = await t.db.selectFrom('poll_streams').selectAll().where('id', '=', s.rows[0]!.id).executeTakeFirstOrThrow();
  return polling.startRun(t.db, stream, 30_000, false);
}
/** The run fails with a read error (a 502), to be resumed; its retry is due in `inMs`. */
const failResumable = (streamId: string, inMs: number) =>
  polling.failRun(t.db, streamId, {
    errorClass: 'read',
    error: 'the source answered 502',
    nextRunAt: new Date(Date.now() + inMs),
    resume: true,
    countsAgainstWebhooks: true,
    failureThreshold: 5,
    pauseAfterSeconds: 3600,
  });
const streamRow = (id: string) => t.db.selectFrom('poll_streams').selectAll().where('id', '=', id).executeTakeFirstOrThrow();

it('a run asked for during a run (trigger, resume) is the next run, not lost under the next scheduled time', async () => {
  const run = await runningStream(new Date(Date.now() - HOUR));
  await pollStreams.scheduleStream(t.db, run.id, 'now');
  await polling.completeRun(t.db, run.id, new Date(Date.now() + HOUR));
  const after = await streamRow(run.id);
  expect(after.next_run_at!.getTime()).toBeLessThan(Date.now() + 1000);
  expect(after.rerun_at).toBeNull();
  // Without a request, the next scheduled time stands.
  const quiet = await runningStream(new Date(Date.now() - HOUR));
  await polling.completeRun(t.db, quiet.id, new Date(Date.now() + HOUR));
  expect((await streamRow(quiet.id)).next_run_at!.getTime()).toBeGreaterThan(Date.now() + HOUR - 60_000);
});

it('a failed run also runs again as asked during it', async () => {
  const run = await runningStream(new Date(Date.now() - HOUR));
  await pollStreams.scheduleStream(t.db, run.id, 'now');
  await failResumable(run.id, HOUR);
  expect((await streamRow(run.id)).next_run_at!.getTime()).toBeLessThan(Date.now() + 1000);
});

it('the high-water mark never passes the run\'s start: a record dated 2099 does not hide later changes', async () => {
  const run = await runningStream(new Date(Date.now() - HOUR));
  await polling.completeRun(t.db, run.id, new Date(Date.now() + HOUR), {
    final: { pages: 1, records: 1, changes: 0, maxUpdatedAt: new Date('2099-01-01T00:00:00Z') },
  });
  const after = await streamRow(run.id);
  expect(after.high_water_mark!.getTime()).toBe(run.run_started_at!.getTime());
});

it('the high-water mark is the source\'s latest time when that is earlier, and none when the source had nothing', async () => {
  const seen = new Date(Date.now() - 10 * 60_000);
  const run = await runningStream(null);
  await polling.completeRun(t.db, run.id, new Date(Date.now() + HOUR), { final: { pages: 1, records: 1, changes: 0, maxUpdatedAt: seen } });
  expect((await streamRow(run.id)).high_water_mark!.getTime()).toBe(seen.getTime());
  // Nothing listed: no mark (not the database's now, which a source whose clock is behind would miss changes after).
  const empty = await runningStream(null);
  await polling.completeRun(t.db, empty.id, new Date(Date.now() + HOUR));
  expect((await streamRow(empty.id)).high_water_mark).toBeNull();
});

it('a run asked for during a run that fails and resumes is kept for the run after the resumed one', async () => {
  const run = await runningStream(new Date(Date.now() - HOUR));
  await pollStreams.scheduleStream(t.db, run.id, 'now');
  await failResumable(run.id, 60_000);
  // The resumed run (it keeps its mode and cursor) ends: the request made during the first still stands.
  const resumed = await polling.startRun(t.db, await streamRow(run.id), 30_000, false);
  expect(resumed.run_mode).not.toBeNull();
  await polling.completeRun(t.db, run.id, new Date(Date.now() + HOUR));
  expect((await streamRow(run.id)).next_run_at!.getTime()).toBeLessThan(Date.now() + 1000);
});

it('a webhook still waiting for its initial sync when a run ends (it came during it) makes the next run now', async () => {
  const run = await runningStream(new Date(Date.now() - HOUR));
  await sql`update webhooks set stream_id = ${run.id}, initial_sync = 'pending' where id = ${webhookId}`.execute(t.db);
  await polling.completeRun(t.db, run.id, new Date(Date.now() + HOUR));
  expect((await streamRow(run.id)).next_run_at!.getTime()).toBeLessThan(Date.now() + 1000);
  await sql`update webhooks set stream_id = null, initial_sync = null where id = ${webhookId}`.execute(t.db);
});

it('a trigger while a page commits waits for the page, never deadlocks with it (the stream\'s row first, then the lease)', async () => {
  const run = await runningStream(new Date(Date.now() - HOUR));
  await sql`insert into connection_polls (connection_id, leased_by, lease_until) values (${connectionId}, 'worker-a', now() + interval '1 minute')
            on conflict (connection_id) do update set leased_by = excluded.leased_by, lease_until = excluded.lease_until`.execute(t.db);
  let triggered: Promise<void> | undefined;
  const page = t.db.transaction().execute(async (trx) => {
    await polling.lockStream(trx, run.id);
    expect(await polling.renewLease(trx, connectionId, 'worker-a', 60_000)).toBe(true);
    triggered = pollStreams.scheduleStream(t.db, run.id, 'now'); // the API, on another session
    await new Promise((r) => setTimeout(r, 200));
    await polling.commitPage(trx, { streamId: run.id, deliveries: [], records: [], nextCursor: 'c2', recordsSeen: 0, changes: 0, maxUpdatedAt: null });
  });
  await page;
  await triggered;
  expect((await streamRow(run.id)).rerun_at).not.toBeNull();
});

it('a connection released while a transaction makes one of its streams due keeps that due time (not the one read before it committed)', async () => {
  const c = await sql<{ id: string }>`
    insert into connections (workspace_id, environment_id, integration_type) values (${scope.workspaceId}, ${scope.environmentId}, 'mockcrm') returning id`.execute(t.db);
  const conn = c.rows[0]!.id;
  const s = await sql<{ id: string }>`
    insert into poll_streams (workspace_id, environment_id, connection_id, object_type, filters, filters_key, next_run_at)
    values (${scope.workspaceId}, ${scope.environmentId}, ${conn}, 'crm_contact', '{}'::jsonb, 'k', now() + interval '1 hour') returning id`.execute(t.db);
  await sql`insert into connection_polls (connection_id, next_due_at, leased_by, lease_until) values (${conn}, now() + interval '1 hour', 'worker-a', now() + interval '1 minute')`.execute(t.db);
  let released: Promise<void> | undefined;
  await t.db.transaction().execute(async (trx) => {
    await pollStreams.scheduleStream(trx, s.rows[0]!.id, 'now'); // a resume, an include_all webhook: the API
    released = polling.releaseConnection(t.db, conn, 'worker-a', { lastRequestAt: null }); // the worker, meanwhile
    for (let i = 0; i < 500; i++) {
      const waiting = await sql<{ n: number }>`
        select count(*)::int as n from pg_stat_activity
        where datname = current_database() and wait_event_type = 'Lock' and pg_backend_pid() = any(pg_blocking_pids(pid))`.execute(trx);
      if ((waiting.rows[0]?.n ?? 0) > 0) break;
      await new Promise((r) => setTimeout(r, 10));
    }
  });
  await released;
  const row = await sql<{ next_due_at: Date; leased_by: string | null }>`select next_due_at, leased_by from connection_polls where connection_id = ${conn}`.execute(t.db);
  expect(row.rows[0]?.leased_by).toBeNull();
  expect(row.rows[0]!.next_due_at.getTime()).toBeLessThan(Date.now() + 60_000);
});

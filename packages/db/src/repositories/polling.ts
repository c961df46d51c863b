import { sql } from 'kysely';
import { inTransaction, type Db } from '../client.js';
import { afterDbWait, msUntil } from '../db-clock.js';
import type { PollStreamRow, RunTrigger, SourceFailureClass } from '../schema.js';
import { holdPending, insertDeliveries, type NewDelivery } from './deliveries.js';

/**
 * The worker's side of virtual webhooks: claiming connections to poll (one poll at a
 * time per connection, across workers), the streams due on them, the per-page commit
 * of deliveries + fingerprints + progress, and how a run ends.
 */

export interface ClaimedConnection {
  connection_id: string;
  last_request_at: Date | null;
}

/** Leases up to `limit` connections with a due stream; SKIP LOCKED, so workers never share one. */
export async function claimConnections(db: Db, owner: string, limit: number, leaseMs: number): Promise<ClaimedConnection[]> {
  const r = await sql<ClaimedConnection>`
    update connection_polls cp
    set lease_until = now() + ${leaseMs} * interval '1 millisecond', leased_by = ${owner}
    from (
      select connection_id from connection_polls
      where claimable_at <= now()
      order by claimable_at
      limit ${limit}
      for update skip locked
    ) due
    where cp.connection_id = due.connection_id
    returning cp.connection_id, cp.last_request_at
  `.execute(db);
  return r.rows;
}

/**
 * When the next connection becomes claimable (due, not throttled, not leased), on this
 * process's clock, or null. Measured as a wait on the database's clock (claims compare with
 * its now()): a worker whose clock ran ahead found nothing claimable at the time it computed
 * and asked again every 100 ms until the database caught up.
 */
export async function nextClaimableAt(db: Db): Promise<Date | null> {
  const r = await sql<{ in_ms: number | null }>`
    select ${msUntil(sql`min(claimable_at)`)} as in_ms from connection_polls where claimable_at is not null
  `.execute(db);
  return afterDbWait(r.rows[0]?.in_ms);
}

/**
 * Locks a stream's row for the rest of the caller's transaction: a run's writes take it before
 * the connection's (renewLease), in the order scheduleStream takes them, or a trigger arriving
 * mid-page deadlocked with the page's commit.
 */
export async function lockStream(db: Db, streamId: string): Promise<void> {
  await sql`select id from poll_streams where id = ${streamId} for no key update`.execute(db);
}

/** Extends a lease this worker holds; false when it lost it (expired and taken). */
export async function renewLease(db: Db, connectionId: string, owner: string, leaseMs: number): Promise<boolean> {
  const r = await sql`
    update connection_polls set lease_until = now() + ${leaseMs} * interval '1 millisecond'
    where connection_id = ${connectionId} and leased_by = ${owner}
  `.execute(db);
  return Number(r.numAffectedRows ?? 0) === 1;
}

/** Gives a connection back: next due time from its streams, and a wait imposed by the source. */
export async function releaseConnection(
  db: Db,
  connectionId: string,
  owner: string,
  o: { lastRequestAt: Date | null; notBefore?: Date | undefined },
): Promise<void> {
  // The row first, then the due time read in a statement of its own: in one statement, a
  // release waiting for the row behind a trigger's transaction (which makes a stream due now
  // and the connection with it) wrote the due time it had read before that commit over it,
  // and the triggered run waited for the connection's next due time.
  await inTransaction(db, async (trx) => {
    await sql`select 1 from connection_polls where connection_id = ${connectionId} for update`.execute(trx);
    await sql`
      update connection_polls set lease_until = null, leased_by = null,
        last_request_at = coalesce(${o.lastRequestAt}::timestamptz, last_request_at),
        not_before = coalesce(${o.notBefore ?? null}::timestamptz, not_before),
        next_due_at = (select min(next_run_at) from poll_streams where connection_id = ${connectionId})
      where connection_id = ${connectionId} and leased_by = ${owner}
    `.execute(trx);
  });
}

export interface ConnectionSource {
  id: string;
  workspace_id: string;
  environment_id: string;
  source_adapter: string;
  auth_encrypted: Buffer | null;
  is_healthy: boolean;
  is_paused: boolean;
}

export async function connectionSource(db: Db, connectionId: string): Promise<ConnectionSource | undefined> {
  return db
    .selectFrom('connections')
    .select(['id', 'workspace_id', 'environment_id', 'source_adapter', 'auth_encrypted', 'is_healthy', 'is_paused'])
    .where('id', '=', connectionId)
    .executeTakeFirst();
}

/** The connection's credentials were refused (or accepted again). */
export async function setConnectionHealth(db: Db, connectionId: string, healthy: boolean): Promise<void> {
  await sql`
    update connections set is_healthy = ${healthy},
      last_healthy_at = case when ${healthy} then now() else last_healthy_at end,
      last_unhealthy_at = case when ${healthy} then last_unhealthy_at else now() end
    where id = ${connectionId} and is_healthy <> ${healthy}
  `.execute(db);
}

/** Streams of a connection that are due (or have a run to resume), oldest due first. */
export async function dueStreams(db: Db, connectionId: string): Promise<PollStreamRow[]> {
  return db
    .selectFrom('poll_streams')
    .selectAll()
    .where('connection_id', '=', connectionId)
    .where('next_run_at', '<=', sql<Date>`now()`)
    .orderBy('next_run_at')
    .execute();
}

/** A virtual webhook as a poll sees it. */
export interface StreamMember {
  id: string;
  workspace_id: string;
  event_types: string[];
  page_max_limit: number | null;
  interval_minutes: number | null;
  is_active: boolean;
  is_paused: boolean;
  initial_sync: 'pending' | 'running' | null;
  fields: string | null;
  unhealthy_reason: string | null;
}

export async function streamMembers(db: Db, streamId: string): Promise<StreamMember[]> {
  return db
    .selectFrom('webhooks')
    .select(['id', 'workspace_id', 'event_types', 'page_max_limit', 'interval_minutes', 'is_active', 'is_paused', 'initial_sync', 'fields', 'unhealthy_reason'])
    .where('stream_id', '=', streamId)
    .execute();
}

/** No active webhook: the stream sleeps until one comes back (resume, new webhook). */
export async function setDormant(db: Db, streamId: string): Promise<void> {
  await db.updateTable('poll_streams').set({ next_run_at: null }).where('id', '=', streamId).execute();
}

/** A stream whose last webhook went away is deleted (shared with the API side). */
export { dropIfUnused as dropStream } from './poll-streams.js';

/**
 * Starts (or resumes) the stream's run. A fresh run is `full` (every record) when a
 * webhook waits for its initial sync (those webhooks become `running`) or the stream
 * has never completed a run; else incremental from the high-water mark minus the
 * overlap. Returns the stream as the run sees it.
 */
export async function startRun(db: Db, stream: PollStreamRow, overlapMs: number, initialPending: boolean): Promise<PollStreamRow> {
  if (stream.run_mode !== null) {
    // Resumed: after a source's Retry-After or a lost lease, the same run goes on (its id, start
    // and schedule kept: it got a new id, a second `started`, and the first never ended); after
    // a failed run (which ended it, run_id null), a new run resumes the listing.
    return db
      .updateTable('poll_streams')
      .set({
        run_id: sql<string>`coalesce(run_id, gen_random_uuid())`,
        run_started_at: sql<Date>`coalesce(run_started_at, now())`,
        run_scheduled_at: sql<Date>`coalesce(run_scheduled_at, ${stream.next_run_at})`,
      })
      .where('id', '=', stream.id)
      .returningAll()
      .executeTakeFirstOrThrow();
  }
  const initial = !initialPending ? [] : await db
    .updateTable('webhooks')
    .set({ initial_sync: 'running' })
    .where('stream_id', '=', stream.id)
    .where('initial_sync', '=', 'pending')
    .where('is_active', '=', true)
    .where('is_paused', '=', false)
    .returning('id')
    .execute();
  // A stream's first run lists everything once, silently (fingerprints only), so that a
  // record touched later without a real change is recognised as unchanged.
  const full = initial.length > 0 || stream.high_water_mark === null;
  const trigger: RunTrigger = initial.length > 0 ? 'initial' : stream.manual_requested ? 'manual' : 'schedule';
  const since = full ? null : new Date((stream.high_water_mark ?? stream.baseline_at).getTime() - overlapMs);
  return db
    .updateTable('poll_streams')
    .set({
      run_id: sql<string>`gen_random_uuid()`,
      run_started_at: sql<Date>`now()`,
      run_scheduled_at: stream.next_run_at,
      run_trigger: trigger,
      run_mode: full ? 'full' : 'incremental',
      run_since: since,
      run_cursor: null,
      run_pages: 0,
      run_records: 0,
      run_changes: 0,
      run_deliveries: 0,
      run_max_updated_at: null,
      manual_requested: false,
    })
    .where('id', '=', stream.id)
    .returningAll()
    .executeTakeFirstOrThrow();
}

export interface StoredFingerprint {
  fingerprint: Buffer;
  deleted: boolean;
}

export async function loadFingerprints(db: Db, streamId: string, recordIds: readonly string[]): Promise<Map<string, StoredFingerprint>> {
  const out = new Map<string, StoredFingerprint>();
  if (recordIds.length === 0) return out;
  const rows = await sql<{ record_id: string; fingerprint: Buffer; deleted: boolean }>`
    select record_id, fingerprint, deleted from poll_records where stream_id = ${streamId} and record_id = any(${recordIds}::text[])
  `.execute(db);
  for (const r of rows.rows) out.set(r.record_id, { fingerprint: r.fingerprint, deleted: r.deleted });
  return out;
}

/** A delivery a source page makes (always of kind `virtual`). */
export type PageDelivery = Omit<NewDelivery, 'kind'>;

export interface PageCommit {
  streamId: string;
  deliveries: readonly PageDelivery[];
  /** Fingerprints that changed (or are new). */
  records: readonly { id: string; fingerprint: Buffer; deleted: boolean }[];
  nextCursor: string | null;
  recordsSeen: number;
  changes: number;
  maxUpdatedAt: Date | null;
}

/**
 * One source page, in one (durable) transaction: its deliveries, the fingerprints they
 * follow from, and the run's progress. A crash before commit re-reads the page; after
 * it, nothing of the page is sent twice. Call it in a transaction.
 */
export async function commitPage(db: Db, c: PageCommit): Promise<void> {
  // The poller's pool commits asynchronously (its other writes are redone after a crash);
  // deliveries and the fingerprints that suppress re-sending them must be durable.
  await sql`set local synchronous_commit = on`.execute(db);
  await insertDeliveries(db, c.deliveries.map((d) => ({ ...d, kind: 'virtual' as const })));
  if (c.records.length > 0) {
    await sql`
      insert into poll_records (stream_id, record_id, fingerprint, deleted)
      select ${c.streamId}::uuid, r.id, r.fp, r.del
      from unnest(${c.records.map((r) => r.id)}::text[], ${c.records.map((r) => r.fingerprint)}::bytea[], ${c.records.map((r) => r.deleted)}::boolean[]) as r(id, fp, del)
      on conflict (stream_id, record_id) do update set fingerprint = excluded.fingerprint, deleted = excluded.deleted
    `.execute(db);
  }
  await sql`
    update poll_streams set run_cursor = ${c.nextCursor}, run_pages = run_pages + 1,
      run_records = run_records + ${c.recordsSeen}, run_changes = run_changes + ${c.changes},
      run_deliveries = run_deliveries + ${c.deliveries.length},
      run_max_updated_at = greatest(run_max_updated_at, ${c.maxUpdatedAt}::timestamptz)
    where id = ${c.streamId}
  `.execute(db);
}

/**
 * The run record written when a run ends, as a data-modifying CTE reading the stream's
 * row (`old`, locked) before the statement resets it.
 */
function runRecord(status: 'completed' | 'failed', f: FinalPage, error: string | null, errorClass: SourceFailureClass | null) {
  return sql`
    insert into poll_runs (id, stream_id, trigger, status, scheduled_at, started_at, pages, records_seen, changes, deliveries, error, error_class)
    select coalesce(run_id, gen_random_uuid()), id, coalesce(run_trigger, 'schedule'), ${status}, coalesce(run_scheduled_at, run_started_at, now()),
           coalesce(run_started_at, now()), run_pages + ${f.pages}, run_records + ${f.records}, run_changes + ${f.changes}, run_deliveries,
           ${error}, ${errorClass}
    from old`;
}

/**
 * A webhook of the stream (`old`) waits for its initial sync: the run that just ended was a
 * resumed one (which starts none) or began before the webhook came, so the next runs at once.
 */
const PENDING_INITIAL_SYNC = sql<boolean>`exists (select 1 from webhooks w where w.stream_id = old.id and w.initial_sync = 'pending' and w.is_active and not w.is_paused)`;

const NO_FINAL_PAGE: FinalPage = { pages: 0, records: 0, changes: 0, maxUpdatedAt: null };

/** Progress of a last page that had nothing to write, folded into the run's completion. */
export interface FinalPage {
  pages: number;
  records: number;
  changes: number;
  maxUpdatedAt: Date | null;
}

/**
 * A run finished: record it and move the high-water mark and schedule the next run (one
 * statement); end initial syncs and give back health the source had taken away, when
 * there is any to end or give back.
 */
export async function completeRun(
  db: Db,
  streamId: string,
  nextRunAt: Date,
  /**
   * `restoreHealth`: the source works again, so what its failures did to the stream's webhooks
   * is undone, and only that: a webhook whose endpoint fails too stays unhealthy (its own
   * streak at `deliveryFailureThreshold` or more), and that streak and its start are kept
   * (they were reset: an endpoint answering 500 showed healthy, its pause clock started over).
   */
  o: { final?: FinalPage; endInitialSync?: boolean; restoreHealth?: { deliveryFailureThreshold: number } } = {},
): Promise<void> {
  const f = o.final ?? NO_FINAL_PAGE;
  await sql`
    with old as (select * from poll_streams where id = ${streamId} for update),
    run as (${runRecord('completed', f, null, null)})
    update poll_streams s set
      -- The source's own times (not the database's: a source whose clock is behind had its
      -- changes after baseline_at listed from too late), never past this run's start on the
      -- database's clock: one record dated in the future (2099, a clock that jumped) held the
      -- mark there, and every later change was listed from after it, and lost. None seen yet:
      -- no mark, and the next run lists everything again.
      high_water_mark = case when greatest(old.high_water_mark, old.run_max_updated_at, ${f.maxUpdatedAt}::timestamptz) is not null
        then least(greatest(old.high_water_mark, old.run_max_updated_at, ${f.maxUpdatedAt}::timestamptz), coalesce(old.run_started_at, now())) end,
      run_id = null, run_started_at = null, run_scheduled_at = null, run_trigger = null, run_mode = null, run_since = null, run_cursor = null,
      run_pages = 0, run_records = 0, run_changes = 0, run_deliveries = 0, run_max_updated_at = null,
      consecutive_failures = 0, failing_since = null, last_error = null, last_error_class = null,
      next_run_at = case when ${PENDING_INITIAL_SYNC} then now() else least(${nextRunAt}::timestamptz, old.rerun_at) end, rerun_at = null
    from old where s.id = old.id
  `.execute(db);
  if (o.endInitialSync) await sql`update webhooks set initial_sync = null where stream_id = ${streamId} and initial_sync = 'running'`.execute(db);
  if (o.restoreHealth) {
    await sql`
      update webhooks set is_healthy = consecutive_failures < ${o.restoreHealth.deliveryFailureThreshold}, checked_at = now(), unhealthy_reason = null
      where stream_id = ${streamId} and unhealthy_reason like 'source:%'
    `.execute(db);
  }
}

export interface RunFailure {
  errorClass: SourceFailureClass;
  error: string;
  nextRunAt: Date;
  /** Keep the run's page cursor so the next attempt resumes it (false: start over). */
  resume: boolean;
  /** Counts toward the webhooks' health (refused credentials mark the connection instead). */
  countsAgainstWebhooks: boolean;
  failureThreshold: number;
  pauseAfterSeconds: number;
}

/**
 * A run failed: record it and schedule the next try. Repeated failures mark the
 * stream's webhooks unhealthy with the reason; failing for `pauseAfterSeconds` pauses
 * them (their queued deliveries are held). Returns the webhooks newly paused.
 */
export async function failRun(db: Db, streamId: string, f: RunFailure): Promise<{ unhealthy: string[]; paused: string[] }> {
  const keep = f.resume;
  const error = f.error.slice(0, 2000);
  const s = await sql<{ consecutive_failures: number; failing_seconds: number }>`
    with old as (select * from poll_streams where id = ${streamId} for update),
    run as (${runRecord('failed', NO_FINAL_PAGE, error, f.errorClass)})
    update poll_streams s set
      run_id = null, run_started_at = null, run_scheduled_at = null, run_pages = 0, run_records = 0, run_changes = 0, run_deliveries = 0,
      run_trigger = case when ${keep} then old.run_trigger else null end,
      run_mode = case when ${keep} then old.run_mode else null end,
      run_since = case when ${keep} then old.run_since else null end,
      run_cursor = case when ${keep} then old.run_cursor else null end,
      run_max_updated_at = case when ${keep} then old.run_max_updated_at else null end,
      consecutive_failures = old.consecutive_failures + case when ${f.countsAgainstWebhooks} then 1 else 0 end,
      failing_since = coalesce(old.failing_since, now()),
      last_error = ${error}, last_error_class = ${f.errorClass},
      -- A resumed run keeps the request for the run after it (rerun_at stays with the run).
      next_run_at = least(${f.nextRunAt}::timestamptz, old.rerun_at),
      rerun_at = case when ${keep} then old.rerun_at else null end
    from old where s.id = old.id
    returning s.consecutive_failures, extract(epoch from now() - s.failing_since)::float8 as failing_seconds
  `.execute(db);
  if (!keep) await sql`update webhooks set initial_sync = 'pending' where stream_id = ${streamId} and initial_sync = 'running'`.execute(db);
  const state = s.rows[0];
  if (!state || !f.countsAgainstWebhooks || state.consecutive_failures < f.failureThreshold) return { unhealthy: [], paused: [] };
  const reason = `source:${f.errorClass}: ${f.error}`.slice(0, 500);
  const pause = state.failing_seconds >= f.pauseAfterSeconds;
  const changed = await sql<{ id: string; paused_now: boolean; unhealthy_now: boolean }>`
    update webhooks w set is_healthy = false, checked_at = now(), unhealthy_reason = ${reason},
      is_paused = w.is_paused or ${pause}
    from (select id, is_paused, is_healthy from webhooks where stream_id = ${streamId} and is_active order by id for update) old
    where w.id = old.id
    returning w.id, (not old.is_paused and w.is_paused) as paused_now, old.is_healthy as unhealthy_now
  `.execute(db);
  const paused = changed.rows.filter((r) => r.paused_now).map((r) => r.id);
  await holdPending(db, paused);
  return { unhealthy: changed.rows.filter((r) => r.unhealthy_now).map((r) => r.id), paused };
}

/**
 * Whether any webhook of this workspace + environment listens to `sync_job_run:*`
 * events (so a poll publishes them only when someone listens).
 */
export async function hasRunSubscribers(db: Db, workspaceId: string, environmentId: string): Promise<boolean> {
  const r = await sql<{ one: number }>`
    select 1 as one from webhooks
    where workspace_id = ${workspaceId} and environment_id = ${environmentId} and is_active and not is_paused
      and (cardinality(event_types) = 0 or event_types && array['sync_job_run:started', 'sync_job_run:completed', 'sync_job_run:failed', 'sync_job_run:rate_limited']::text[])
    limit 1
  `.execute(db);
  return r.rows.length > 0;
}

/** Deletes finished runs older than `before`, at most `batch` at a time; returns how many. */
export async function deleteOldRuns(db: Db, before: Date, batch = 5000): Promise<number> {
  const r = await sql`
    delete from poll_runs where id = any(array(select id from poll_runs where finished_at < ${before} limit ${batch}))
  `.execute(db);
  return Number(r.numAffectedRows ?? 0);
}

import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import type { Db } from '../client.js';
import type { PollRunRow, WebhookRow } from '../schema.js';

/**
 * A filters map's key: webhooks with equal filters share a stream. The SHA-256 (hex) of its
 * canonical text (sorted keys), not the text, which is as long as the filters allow (50 ×
 * 1,000 characters): past ~2.7 KB the stream's unique index refused the row, a 500 for the
 * webhook's create (migration 0013 rewrote the keys stored before).
 */
export function filtersKey(filters: Record<string, string>): string {
  const canonical = JSON.stringify(Object.fromEntries(Object.entries(filters).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))));
  return createHash('sha256').update(canonical, 'utf8').digest('hex');
}

/**
 * Makes a stream due no later than `at` (a date, or `now`), and its connection with it,
 * and wakes the pollers (one statement). A stream already due sooner keeps its time.
 */
export async function scheduleStream(db: Db, streamId: string, at: Date | 'now'): Promise<void> {
  const when = at === 'now' ? sql`now()` : sql`${at}::timestamptz`;
  await sql`
    with s as (
      -- During a run the stream is already due and its end writes the next time: the request
      -- is kept in rerun_at too, for that end to honour (completeRun, failRun).
      update poll_streams set next_run_at = least(coalesce(next_run_at, ${when}), ${when}),
        rerun_at = case when run_id is not null then least(coalesce(rerun_at, ${when}), ${when}) else rerun_at end
      where id = ${streamId}
      returning connection_id, next_run_at
    ),
    c as (
      insert into connection_polls (connection_id, next_due_at)
      select connection_id, next_run_at from s
      on conflict (connection_id) do update
        set next_due_at = least(coalesce(connection_polls.next_due_at, excluded.next_due_at), excluded.next_due_at)
    )
    select pg_notify('hookpost_runs', ${streamId})
  `.execute(db);
}

/** Deletes a stream nobody uses any more (its fingerprints and runs go with it). */
export async function dropIfUnused(db: Db, streamId: string): Promise<void> {
  await sql`delete from poll_streams s where s.id = ${streamId} and not exists (select 1 from webhooks w where w.stream_id = s.id)`.execute(db);
}

/**
 * Puts a webhook (as it now is) in the stream its connection + object_type + filters
 * name (creating the stream), or takes it out when it is no longer a virtual webhook.
 * Call it in the transaction that changed the webhook. A new stream first runs one interval from now
 * (changes from creation on are news); an `include_all` webhook, or a dormant stream
 * that gets an active webhook back, makes its stream due at once (as does `runNow`:
 * a resume continues from the stored cursor straight away).
 */
/** The webhook columns stream membership depends on. */
export type StreamableWebhook = Pick<
  WebhookRow,
  'id' | 'workspace_id' | 'environment_id' | 'connection_id' | 'object_type' | 'filters' | 'webhook_type' | 'interval_minutes' | 'stream_id' | 'initial_sync' | 'is_active' | 'is_paused' | 'hook_url'
>;

export async function syncWebhookStream(
  db: Db,
  w: StreamableWebhook,
  defaultIntervalMinutes: number,
  /**
   * `restarted`: the webhook was stopped (paused, disabled) and runs again, its health made
   * fresh: so is the stream's failure streak, or the next failed run paused it again at once
   * (the streak, shared by the stream's webhooks, was still past the threshold and the pause).
   */
  o: { runNow?: boolean; restarted?: boolean } = {},
): Promise<void> {
  const intervalMs = (w.interval_minutes ?? defaultIntervalMinutes) * 60_000;
  const pollable = w.webhook_type === 'virtual' && w.connection_id !== null && w.object_type !== null && w.hook_url !== null;
  let streamId: string | null = null;
  let created = false;
  let nextRunAt: Date | null = null;
  if (pollable && w.connection_id !== null && w.object_type !== null) {
    const row = await sql<{ id: string; created: boolean; next_run_at: Date | null }>`
      insert into poll_streams (workspace_id, environment_id, connection_id, object_type, filters, filters_key, next_run_at)
      values (${w.workspace_id}, ${w.environment_id}, ${w.connection_id}, ${w.object_type}, ${JSON.stringify(w.filters)}::jsonb,
              ${filtersKey(w.filters)}, now() + ${intervalMs} * interval '1 millisecond')
      on conflict (connection_id, object_type, filters_key) do update set environment_id = excluded.environment_id
      returning id, (xmax = 0) as created, next_run_at
    `.execute(db);
    const s = row.rows[0];
    if (!s) throw new Error('stream upsert returned nothing');
    streamId = s.id;
    created = s.created;
    nextRunAt = s.next_run_at;
  }
  // A webhook moved to another stream (its object_type or filters changed) in the middle of
  // its initial sync starts it over there: continued, it got the rest of that stream's run
  // (1 of 30 records, say) and then INITIAL-COMPLETE.
  const restartInitial = w.stream_id !== streamId && streamId !== null && w.initial_sync === 'running';
  const initialSync = restartInitial ? 'pending' : w.initial_sync;
  if (w.stream_id !== streamId) {
    await db
      .updateTable('webhooks')
      .set({ stream_id: streamId, ...(restartInitial ? { initial_sync: 'pending' as const } : {}) })
      .where('id', '=', w.id)
      .execute();
  }
  if (w.stream_id !== null && w.stream_id !== streamId) await dropIfUnused(db, w.stream_id);
  if (streamId === null) return;
  if (o.restarted) await db.updateTable('poll_streams').set({ consecutive_failures: 0, failing_since: null }).where('id', '=', streamId).execute();

  const active = w.is_active && !w.is_paused;
  if (active && (o.runNow || initialSync === 'pending' || nextRunAt === null)) await scheduleStream(db, streamId, 'now');
  else if (created || active) await scheduleStream(db, streamId, new Date(Date.now() + intervalMs));
}

/**
 * Trigger: the webhook's stream runs now (recorded as a manual run). False when the
 * webhook polls nothing (`stream_id` null: not virtual, or no source).
 */
export async function requestRun(db: Db, streamId: string | null): Promise<boolean> {
  if (!streamId) return false;
  await db.updateTable('poll_streams').set({ manual_requested: true }).where('id', '=', streamId).execute();
  await scheduleStream(db, streamId, 'now');
  return true;
}

/**
 * New credentials or a resumed connection: its streams are polled again at once. Those whose
 * last run the source refused (401/403) are due now: a failed run's next one is an interval
 * away (60 minutes by default), and new credentials waited that long to be used.
 */
export async function retryConnection(db: Db, connectionId: string): Promise<void> {
  await sql`
    update poll_streams set next_run_at = now()
    where connection_id = ${connectionId} and last_error_class = 'auth' and next_run_at is not null and next_run_at > now()
  `.execute(db);
  await sql`
    update connection_polls set not_before = null,
      next_due_at = (select min(next_run_at) from poll_streams where connection_id = ${connectionId})
    where connection_id = ${connectionId}
  `.execute(db);
  await sql`select pg_notify('hookpost_runs', ${connectionId})`.execute(db);
}

/** A run as a webhook shows it: finished runs, and the one in progress. */
export type WebhookRun = Pick<PollRunRow, 'id' | 'trigger' | 'scheduled_at' | 'started_at' | 'pages' | 'records_seen' | 'changes' | 'deliveries' | 'error' | 'error_class'> & {
  status: 'running' | 'completed' | 'failed';
  finished_at: Date | null;
};

/**
 * The newest `perWebhook` runs of each webhook's stream since the webhook was created,
 * newest first, including a run in progress.
 */
export async function recentRuns(db: Db, webhookIds: readonly string[], perWebhook = 10): Promise<Map<string, WebhookRun[]>> {
  const byWebhook = new Map<string, WebhookRun[]>();
  if (webhookIds.length === 0) return byWebhook;
  const rows = await sql<WebhookRun & { webhook_id: string }>`
    select w.id as webhook_id, r.*
    from webhooks w
    join poll_streams s on s.id = w.stream_id
    cross join lateral (
      select coalesce(s.run_id, s.id)::text as id, s.run_trigger as trigger, 'running' as status, s.run_scheduled_at as scheduled_at,
             s.run_started_at as started_at, null::timestamptz as finished_at, s.run_pages as pages, s.run_records as records_seen,
             s.run_changes as changes, s.run_deliveries as deliveries, null as error, null as error_class
      where s.run_started_at is not null
      union all
      (select r.id::text, r.trigger, r.status, r.scheduled_at, r.started_at, r.finished_at, r.pages, r.records_seen,
              r.changes, r.deliveries, r.error, r.error_class
       from poll_runs r where r.stream_id = s.id and r.started_at >= w.created_at - interval '1 second'
       order by r.started_at desc limit ${perWebhook})
    ) r
    where w.id = any(${webhookIds}::uuid[])
    order by r.started_at desc
  `.execute(db);
  for (const { webhook_id, ...run } of rows.rows) {
    const list = byWebhook.get(webhook_id) ?? [];
    if (list.length < perWebhook) list.push(run);
    byWebhook.set(webhook_id, list);
  }
  return byWebhook;
}
